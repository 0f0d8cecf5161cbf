"""The ``ldapsrv`` command: argument parsing only, then hand over.

ldapsrv serve [--config FILE] [overrides]   run the server
ldapsrv db upgrade [--config FILE]          create or migrate the database schema
ldapsrv db backup PATH / db restore PATH    online copy of a SQLite store, and back
ldapsrv user ... / ldapsrv group ...        manage the directory over the control socket
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
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

    db = commands.add_parser("db", help="database schema")
    db_commands = db.add_subparsers(dest="db_command", metavar="ACTION")
    db_commands.required = True
    upgrade = db_commands.add_parser("upgrade", help="create or migrate the schema to this version")
    _config_args(upgrade)
    upgrade.add_argument("--database", metavar="URL", help="SQLAlchemy database URL")
    upgrade.add_argument("--data-dir", metavar="DIR", help="data directory (default SQLite file)")
    sample = db_commands.add_parser(
        "sample", help="add sample people and groups (prints their passwords once)"
    )
    _config_args(sample)
    sample.add_argument("--database", metavar="URL", help="SQLAlchemy database URL")
    sample.add_argument("--data-dir", metavar="DIR", help="data directory (default SQLite file)")
    status = db_commands.add_parser("status", help="show the schema revision")
    _config_args(status)
    status.add_argument("--database", metavar="URL", help="SQLAlchemy database URL")
    status.add_argument("--data-dir", metavar="DIR", help="data directory (default SQLite file)")

    _backup_commands(db_commands)
    add_admin_commands(commands)
    return parser


def _backup_commands(db_commands: Any) -> None:
    backup = db_commands.add_parser(
        "backup",
        help="copy the SQLite database while servers run (PostgreSQL/MariaDB: prints how)",
    )
    restore = db_commands.add_parser(
        "restore", help="replace the SQLite database with a backup (refused while serving)"
    )
    for command in (backup, restore):
        _config_args(command)
        command.add_argument("--database", metavar="URL", help="SQLAlchemy database URL")
        command.add_argument("--data-dir", metavar="DIR", help="data directory (SQLite file)")
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


def _setup_logging(level: str) -> None:
    from twisted.logger import (
        FilteringLogObserver,
        LogLevel,
        LogLevelFilterPredicate,
        globalLogBeginner,
        textFileLogObserver,
    )

    logging.basicConfig(
        level=getattr(logging, level.upper()),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)
    twisted_level = LogLevel.levelWithName("warn" if level == "warning" else level)
    predicate: Any = LogLevelFilterPredicate(defaultLogLevel=twisted_level)
    text: Any = textFileLogObserver(sys.stderr)
    observer: Any = FilteringLogObserver(text, [predicate])
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)


def _serve(config: Config) -> int:
    from twisted.internet import reactor as _reactor

    reactor: Any = _reactor

    from ldapsrv.service import StartupError, make_service

    _setup_logging(config.log_level)
    log = logging.getLogger("ldapsrv")
    try:
        built = make_service(config, reactor)
        built.service.startService()
    except StartupError as exc:
        print(f"ldapsrv: error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # a port in use, an unreadable file: say which
        print(f"ldapsrv: error: cannot start: {exc}", file=sys.stderr)
        return 1
    listeners = [
        f"ldap://{config.listen}" if config.listen else "",
        f"ldaps://{config.ldaps_listen}" if config.ldaps_listen else "",
    ]
    log.info(
        "ldapsrv ready: %s, base %s, control socket %s",
        " ".join(x for x in listeners if x),
        config.base_dn,
        config.control_socket,
    )
    reactor.addSystemEventTrigger("before", "shutdown", built.service.stopService)
    reactor.run()
    return 0


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
            return _sample(config, engine)
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


def _sample(config: Config, engine: Any) -> int:
    from ldapsrv.errors import SchemaOutdated
    from ldapsrv.sample import load_sample
    from ldapsrv.store.directory import SqlDirectory
    from ldapsrv.store.schema_version import check_schema

    try:
        check_schema(engine)
    except SchemaOutdated as exc:
        print(f"ldapsrv: error: {exc}", file=sys.stderr)
        return 1
    directory = SqlDirectory(
        engine,
        uid_range=config.uid_range,
        gid_range=config.gid_range,
        default_primary_group=config.default_primary_group,
        home_template=config.home_template,
        default_shell=config.default_shell,
    )
    load_sample(directory, config.bcrypt_cost, print)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in ("serve", "db"):
        # The database, its WAL files and the TLS keys hold secrets: owner-only.
        os.umask(0o077)
        try:
            config = _load(args)
        except ConfigError as exc:
            print(f"ldapsrv: error: configuration: {exc}", file=sys.stderr)
            return 2
        if args.command == "serve":
            return _serve(config)
        return _db(args, config)
    from ldapsrv.admin.cli import is_admin_command, run_admin_command

    if not is_admin_command(args):
        parser.error(f"unknown command {args.command}")
    return run_admin_command(args)


if __name__ == "__main__":
    sys.exit(main())
