"""Online backup and restore of a SQLite store.

``backup`` copies the live database with SQLite's online backup API in one step:
the copy is one consistent snapshot (a single read transaction), taken while
servers keep serving and writing (WAL readers block nobody). The copy is written
to a temporary file next to the target, made self-contained (no WAL), checked to
hold an ldapsrv schema, then renamed into place with mode 0600.

``restore`` refuses while a server holds the control socket lock (unless forced),
refuses a file that is not an ldapsrv backup or whose schema is newer than this
code, and copies the backup into the store with the same API, so the target never
exists half-written.

PostgreSQL and MariaDB have their own tools (``pg_dump``, ``mariadb-dump``);
``dump_instructions`` says how.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from ldapsrv.errors import DomainError
from ldapsrv.store.engine import backend_name

REVISION_TABLE = "alembic_version"


class BackupError(DomainError):
    """A backup or restore that cannot be done; the message says why."""


@dataclass(frozen=True)
class BackupInfo:
    path: Path
    revision: str
    size: int


def sqlite_path(url: str) -> Path:
    """The file behind a ``sqlite:///PATH`` URL; BackupError for other backends."""
    if backend_name(url) != "sqlite":
        raise BackupError(dump_instructions(url))
    database = make_url(url).database
    if not database or database == ":memory:":
        raise BackupError("an in-memory SQLite database cannot be backed up")
    return Path(database)


def dump_instructions(url: str) -> str:
    """How to back up and restore a server database with its own tools."""
    parsed = make_url(url)
    backend = backend_name(url)
    host = parsed.host or "localhost"
    user = parsed.username or "USER"
    name = parsed.database or "DATABASE"
    if backend == "postgresql":
        port = f" -p {parsed.port}" if parsed.port else ""
        return (
            "ldapsrv db backup/restore handle SQLite only; for PostgreSQL use its own tools:\n"
            f"  backup:  pg_dump -h {host}{port} -U {user} -Fc -f ldapsrv.dump {name}\n"
            f"  restore: pg_restore -h {host}{port} -U {user} -d {name} --clean --if-exists"
            " ldapsrv.dump\n"
            "  (pg_dump takes a consistent snapshot while servers keep running; stop the\n"
            "  servers before a restore, run 'ldapsrv db status' after it)"
        )
    port = f" -P {parsed.port}" if parsed.port else ""
    return (
        "ldapsrv db backup/restore handle SQLite only; for MariaDB use its own tools:\n"
        f"  backup:  mariadb-dump -h {host}{port} -u {user} -p --single-transaction"
        f" --routines {name} > ldapsrv.sql\n"
        f"  restore: mariadb -h {host}{port} -u {user} -p {name} < ldapsrv.sql\n"
        "  (--single-transaction takes a consistent InnoDB snapshot while servers keep\n"
        "  running; stop the servers before a restore, run 'ldapsrv db status' after it)"
    )


def _revision(conn: sqlite3.Connection, what: str) -> str:
    try:
        row = conn.execute(f"SELECT version_num FROM {REVISION_TABLE}").fetchone()
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{what} is not an ldapsrv SQLite database: {exc}") from None
    if row is None:
        raise BackupError(f"{what} has no schema revision: not an ldapsrv database")
    return str(row[0])


def _connect_read_only(path: Path, what: str) -> sqlite3.Connection:
    if not path.is_file():
        raise BackupError(f"{what} {path} does not exist")
    try:
        return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    except sqlite3.Error as exc:
        raise BackupError(f"cannot open {what} {path}: {exc}") from None


def _temporary_next_to(target: Path) -> Path:
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        temporary.unlink()
    # Created owner-only before SQLite writes a byte of the copy into it.
    os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    return temporary


def backup(url: str, target: Path, *, overwrite: bool = False) -> BackupInfo:
    """Copy the SQLite store at ``url`` to ``target`` (mode 0600), consistently,
    while servers may be running."""
    source_path = sqlite_path(url)
    target = target.resolve()
    if target.exists() and not overwrite:
        raise BackupError(f"{target} exists: choose another path or pass --force")
    if target == source_path.resolve():
        raise BackupError("the backup cannot overwrite the database itself")
    source = _connect_read_only(source_path, "database")
    temporary = _temporary_next_to(target)
    try:
        destination = sqlite3.connect(temporary)
        try:
            source.backup(destination)  # pages=-1: one step, one snapshot
            destination.execute("PRAGMA journal_mode = DELETE")
            revision = _revision(destination, "the copy")
            check = destination.execute("PRAGMA quick_check").fetchone()
            if check is None or check[0] != "ok":
                raise BackupError(f"the copy failed its integrity check: {check}")
        finally:
            destination.close()
        os.chmod(temporary, 0o600)
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        raise
    finally:
        source.close()
    return BackupInfo(target, revision, target.stat().st_size)


def server_holds_lock(control_socket: Path) -> bool:
    """True while an ``ldapsrv serve`` process owns ``control_socket``'s lock file."""
    lock = control_socket.with_name(control_socket.name + ".lock")
    try:
        fd = os.open(lock, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops a lock we may have taken
    return False


def restore(
    url: str,
    source: Path,
    *,
    known_revisions: set[str],
    control_socket: Path | None,
    force: bool = False,
) -> BackupInfo:
    """Replace the SQLite store at ``url`` with the backup at ``source``.

    ``known_revisions``: the schema revisions this code can run on or upgrade from.
    """
    target_path = sqlite_path(url)
    if control_socket is not None and not force and server_holds_lock(control_socket):
        raise BackupError(
            f"a server is running (it holds {control_socket}.lock): stop it first, "
            "or pass --force to restore under it"
        )
    backup_conn = _connect_read_only(source.resolve(), "backup")
    try:
        revision = _revision(backup_conn, f"backup {source}")
        if revision not in known_revisions:
            raise BackupError(
                f"backup {source} is at schema revision {revision}, which this ldapsrv does "
                "not know: restore it with the ldapsrv version that made it"
            )
        check = backup_conn.execute("PRAGMA quick_check").fetchone()
        if check is None or check[0] != "ok":
            raise BackupError(f"backup {source} failed its integrity check: {check}")
        target_path.parent.mkdir(parents=True, exist_ok=True)
        if not target_path.exists():
            os.close(os.open(target_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        destination = sqlite3.connect(target_path, timeout=10)
        try:
            # One write transaction: readers see the old store or the new one.
            backup_conn.backup(destination)
            destination.execute("PRAGMA journal_mode = WAL")
        finally:
            destination.close()
    finally:
        backup_conn.close()
    return BackupInfo(target_path, revision, target_path.stat().st_size)
