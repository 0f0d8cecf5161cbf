"""The ``ldapsrv`` command: argument parsing only, then hand over.

ldapsrv serve [--config FILE] [overrides]   run the server
ldapsrv db upgrade [--config FILE]          create or migrate the database schema
ldapsrv import FILE.ldif / import-csv FILE   move people and groups in from another server
ldapsrv export [-o FILE]                    people and groups as LDIF
ldapsrv completion bash|zsh                 shell completion script
ldapsrv db backup PATH / db restore PATH    online copy of a SQLite store, and back
ldapsrv user ... / ldapsrv group ...        manage the directory over the control socket
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ldapsrv import __version__
from ldapsrv.config import Config, ConfigError, load_config

SERVE_OVERRIDES = {
    "listen": "server.listen",
    "ldaps_listen": "server.ldaps_listen",
    "database": "database.url",
    "base_dn": "server.base_dn",
    "data_dir": "server.data_dir",
    "control_socket": "server.control_socket",
    "tls_cert": "tls.cert",
    "tls_key": "tls.key",
}


def _config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, metavar="FILE", help="TOML configuration file")


def build_parser() -> argparse.ArgumentParser:
    from ldapsrv.admin.cli import add_admin_commands
    from ldapsrv.cli_help import add_examples

    parser = argparse.ArgumentParser(
        prog="ldapsrv",
        description="LDAP directory server for people, groups and service accounts.",
    )
    parser.add_argument("--version", action="version", version=f"ldapsrv {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    serve = commands.add_parser("serve", help="run the LDAP server")
    _config_args(serve)
    serve.add_argument("--listen", metavar="HOST:PORT", help='plain LDAP + StartTLS ("" = off)')
    serve.add_argument("--ldaps-listen", metavar="HOST:PORT", help='LDAPS listener ("" = off)')
    serve.add_argument("--database", metavar="URL", help="SQLAlchemy database URL")
    serve.add_argument("--base-dn", metavar="DN", help="naming context, e.g. dc=example,dc=org")
    serve.add_argument("--data-dir", metavar="DIR", help="SQLite file, dev certificate, socket")
    serve.add_argument("--control-socket", metavar="PATH", help="admin control socket path")
    serve.add_argument("--tls-cert", metavar="FILE", help="PEM certificate (chain)")
    serve.add_argument("--tls-key", metavar="FILE", help="PEM private key")
    # Internal: how the supervisor starts its workers ([server] workers > 1).
    serve.add_argument("--worker-fds", help=argparse.SUPPRESS)

    db = commands.add_parser("db", help="database schema")
    db_commands = db.add_subparsers(dest="db_command", metavar="ACTION")
    db_commands.required = True
    upgrade = db_commands.add_parser("upgrade", help="create or migrate the schema to this version")
    _db_args(upgrade)
    sample = db_commands.add_parser(
        "sample", help="add sample people and groups (prints their passwords once)"
    )
    _db_args(sample)
    status = db_commands.add_parser("status", help="show the schema revision")
    _db_args(status)

    imports = commands.add_parser(
        "import",
        help="import people and groups from an LDIF export (OpenLDAP, lldap, 389-ds)",
        description="Import people, groups, memberships, uid/gid numbers and password hashes "
        "from LDIF, in one transaction (nothing is written if any entry is at fault). "
        "Re-running is idempotent; nothing is ever deleted.",
    )
    imports.add_argument(
        "file", type=Path, metavar="FILE", help="LDIF file (slapcat, ldapsearch -LLL); - for stdin"
    )
    imports.add_argument("--format", choices=("ldif", "csv"), default="ldif", help="file format")
    imports.add_argument("--base-dn", metavar="DN", help="import only entries under this DN")
    _import_args(imports)
    csv_import = commands.add_parser(
        "import-csv",
        help="import people and groups from a CSV spreadsheet",
        description="Columns (header row, any order): uid (required), display_name or cn, "
        "given_name, surname, mail, uid_number, gid_number, home_directory, login_shell, gecos, "
        "groups (names separated by ';'), password_hash ({SSHA}..., $6$...).",
    )
    csv_import.add_argument(
        "file", type=Path, metavar="FILE", help="CSV file with a header row; - for stdin"
    )
    _import_args(csv_import)
    export = commands.add_parser(
        "export", help="write people and groups as LDIF (no password hashes unless asked)"
    )
    _db_args(export)
    export.add_argument("-o", "--output", type=Path, metavar="FILE", help="file (default: stdout)")
    export.add_argument(
        "--with-password-hashes",
        action="store_true",
        help="include userPassword hashes (the file is then as secret as the database)",
    )
    export.add_argument("--base-dn", metavar="DN", help="naming context, e.g. dc=example,dc=org")
    completion = commands.add_parser("completion", help="print a shell completion script")
    completion.add_argument("shell", choices=("bash", "zsh"))

    _backup_commands(db_commands)
    add_admin_commands(commands)
    add_examples(parser)
    return parser


def _db_args(parser: argparse.ArgumentParser) -> None:
    _config_args(parser)
    parser.add_argument("--database", metavar="URL", help="SQLAlchemy database URL")
    parser.add_argument("--data-dir", metavar="DIR", help="data directory (default SQLite file)")


def _import_args(parser: argparse.ArgumentParser) -> None:
    _db_args(parser)
    parser.add_argument(
        "--dry-run", action="store_true", help="report what would change, write nothing"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="list unchanged entries too")


def _backup_commands(db_commands: Any) -> None:
    backup = db_commands.add_parser(
        "backup",
        help="copy the SQLite database while servers run (PostgreSQL/MariaDB: prints how)",
    )
    restore = db_commands.add_parser(
        "restore", help="replace the SQLite database with a backup (refused while serving)"
    )
    for command in (backup, restore):
        _db_args(command)
    backup.add_argument("path", type=Path, metavar="PATH", help="file to write (mode 0600)")
    backup.add_argument("--force", action="store_true", help="overwrite PATH if it exists")
    restore.add_argument("path", type=Path, metavar="PATH", help="a file 'db backup' wrote")
    restore.add_argument(
        "--control-socket", metavar="PATH", help="the server's control socket (to detect it)"
    )
    restore.add_argument(
        "--force", action="store_true", help="restore even while a server is running"
    )


def _load(args: argparse.Namespace) -> Config:
    overrides = {
        key: getattr(args, attr)
        for attr, key in SERVE_OVERRIDES.items()
        if getattr(args, attr, None) is not None
    }
    return load_config(args.config, overrides)


def _setup_logging(config: Config, with_pid: bool = False) -> Callable[[str], None]:
    """Log to stderr in ``[logging] format`` (with the process id when several
    processes share it); returns a function that changes the level (SIGHUP)."""
    from ldapsrv.observability.logformat import configure_logging, route_twisted_log

    configure_logging(config.log_level, config.log_format, config.access_log, with_pid=with_pid)
    set_twisted_level = route_twisted_log(config.log_level)

    def set_level(name: str) -> None:
        logging.getLogger().setLevel(getattr(logging, name.upper()))
        set_twisted_level(name)

    return set_level


def _serve(config: Config, args: argparse.Namespace, argv: Sequence[str]) -> int:
    from twisted.internet import reactor

    from ldapsrv.workers import worker_fds

    fds = worker_fds(args.worker_fds) if args.worker_fds else None
    if fds is None and config.workers > 1 and config.metrics_enabled:
        # Before anything imports prometheus_client; the workers inherit the variable.
        from ldapsrv.observability.multiproc import use_private_dir

        use_private_dir(config.data_dir)
    from ldapsrv.serving import serve

    set_level = _setup_logging(config, with_pid=fds is not None or config.workers > 1)
    return serve(
        config,
        reactor,
        load_config=lambda: _load(args),
        set_log_level=set_level,
        serve_argv=argv,  # what a supervisor passes on to its workers
        worker_fds=fds,
    )


def _db(args: argparse.Namespace, config: Config) -> int:
    from ldapsrv.errors import StoreUnavailable
    from ldapsrv.store.engine import make_engine
    from ldapsrv.store.schema_version import current_revision, head_revision, upgrade

    config.data_dir.mkdir(parents=True, exist_ok=True)
    if args.db_command in ("backup", "restore"):
        return _backup_or_restore(args, config)
    try:
        if args.db_command == "upgrade":
            revision = upgrade(config.database_url)
            print(f"database schema is at revision {revision}")
            return 0
        engine = make_engine(config.database_url)
        if args.db_command == "sample":
            return _sample(config)
        current = current_revision(engine)
        head = head_revision()
        print(f"database schema revision: {current or 'none (empty database)'}")
        print(f"this ldapsrv needs:       {head}")
        return 0 if current == head else 3
    except StoreUnavailable as exc:
        print(f"ldapsrv: error: cannot reach the database: {exc}", file=sys.stderr)
        return 1


def _backup_or_restore(args: argparse.Namespace, config: Config) -> int:
    from alembic.script import ScriptDirectory

    from ldapsrv.store import backup
    from ldapsrv.store.engine import backend_name
    from ldapsrv.store.schema_version import alembic_config

    if backend_name(config.database_url) != "sqlite":
        print(backup.dump_instructions(config.database_url), file=sys.stderr)
        return 2
    try:
        if args.db_command == "backup":
            info = backup.backup(config.database_url, args.path, overwrite=args.force)
            print(f"backed up to {info.path} ({info.size} bytes, schema revision {info.revision})")
            return 0
        known = {s.revision for s in ScriptDirectory.from_config(alembic_config()).walk_revisions()}
        info = backup.restore(
            config.database_url,
            args.path,
            known_revisions=known,
            control_socket=config.control_socket,
            force=args.force,
        )
    except backup.BackupError as exc:
        print(f"ldapsrv: error: {exc}", file=sys.stderr)
        return 1
    print(f"restored {info.path} from {args.path} (schema revision {info.revision})")
    print('run "ldapsrv db status" (and "ldapsrv db upgrade" if it asks) before serving')
    return 0


def _open_directory(config: Config) -> Any:
    """The SqlDirectory the configuration names, or an exit code after an error."""
    from ldapsrv.errors import SchemaOutdated, StoreUnavailable
    from ldapsrv.service import open_directory
    from ldapsrv.store.engine import make_engine
    from ldapsrv.store.schema_version import check_schema

    config.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        engine = make_engine(config.database_url)
        check_schema(engine)
    except (SchemaOutdated, StoreUnavailable) as exc:
        print(f"ldapsrv: error: {exc}", file=sys.stderr)
        return 1
    return open_directory(config, engine)


def _sample(config: Config) -> int:
    from ldapsrv.sample import load_sample

    directory = _open_directory(config)
    if isinstance(directory, int):
        return directory
    load_sample(directory, config.bcrypt_cost, print)
    return 0


def _migrate(args: argparse.Namespace, config: Config) -> int:
    from ldapsrv.errors import StoreUnavailable
    from ldapsrv.migration.commands import run_export, run_import

    directory = _open_directory(config)
    if isinstance(directory, int):
        return directory
    try:
        if args.command == "export":
            if args.output is None:
                return run_export(
                    directory,
                    config.base_dn,
                    sys.stdout,
                    with_password_hashes=args.with_password_hashes,
                )
            with args.output.open("w", encoding="utf-8") as out:
                return run_export(
                    directory, config.base_dn, out, with_password_hashes=args.with_password_hashes
                )
        fmt = "csv" if args.command == "import-csv" else args.format
        return run_import(
            directory,
            args.file,
            fmt=fmt,
            dry_run=args.dry_run,
            base_dn=getattr(args, "base_dn", None),
            say=print,
            verbose=args.verbose,
        )
    except StoreUnavailable as exc:
        print(f"ldapsrv: error: cannot reach the database: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"ldapsrv: error: {exc}", file=sys.stderr)
        return 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    if args.command == "completion":
        from ldapsrv.cli_help import bash_completion, zsh_completion

        script = bash_completion if args.shell == "bash" else zsh_completion
        print(script(parser), end="")
        return 0
    if args.command in ("serve", "db", "import", "import-csv", "export"):
        # The database, its WAL files and the TLS keys hold secrets: owner-only.
        os.umask(0o077)
        try:
            config = _load(args)
        except ConfigError as exc:
            print(f"ldapsrv: error: configuration: {exc}", file=sys.stderr)
            return 2
        if args.command == "serve":
            return _serve(config, args, argv)
        if args.command == "db":
            return _db(args, config)
        return _migrate(args, config)
    from ldapsrv.admin.cli import is_admin_command, run_admin_command

    if not is_admin_command(args):
        parser.error(f"unknown command {args.command}")
    return run_admin_command(args)


if __name__ == "__main__":
    sys.exit(main())
