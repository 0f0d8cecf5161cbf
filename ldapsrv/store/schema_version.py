"""Schema versions: upgrade a database, and refuse to serve an outdated one.

Alembic is configured in code (no alembic.ini at run time): the migrations
ship inside the package and ``upgrade`` hands Alembic an open connection. A
server checks the revision at start-up with ``check_schema`` rather than
migrating silently, because several servers may share one database and a
schema change is an admin's decision (``ldapsrv db upgrade``).
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text
from sqlalchemy.engine import Connection

from ldapsrv.errors import SchemaOutdated
from ldapsrv.store.engine import WRITE_OPTION, backend_name, make_engine, mapped_errors

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

_LOCK_NAME = "ldapsrv_schema_upgrade"
_PG_LOCK_KEY = 0x6C646170  # "ldap": any constant, shared by every ldapsrv


def alembic_config() -> Config:
    """An Alembic Config pointing at the packaged migrations."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def head_revision() -> str:
    """The revision this code needs the database to be at."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - the package always ships 0001
        raise RuntimeError(f"no migrations found in {MIGRATIONS_DIR}")
    return head


def current_revision(engine: Engine) -> str | None:
    """The database's revision, or None for an empty database."""
    with mapped_errors(), engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def _upgrade_on(conn: Connection) -> None:
    config = alembic_config()
    config.attributes["connection"] = conn
    command.upgrade(config, "head")


def upgrade(url: str) -> str:
    """Bring the database at ``url`` to the head revision and return it.

    Works on an empty database and on one at any older revision; running it
    again is a no-op. Concurrent upgrades by several servers are serialised
    (an advisory lock on PostgreSQL and MariaDB, the write lock on SQLite).
    """
    engine = make_engine(url, pool_size=1)
    backend = backend_name(engine)
    try:
        with mapped_errors(), engine.connect() as conn:
            if backend == "sqlite":
                # Batch migrations rebuild tables (copy, drop, rename); with
                # foreign keys on, dropping the old table would cascade-delete
                # memberships. The pragma only works outside a transaction.
                conn.connection.dbapi_connection.execute(  # type: ignore[union-attr]
                    "PRAGMA foreign_keys = OFF"
                )
            conn.execution_options(**{WRITE_OPTION: True})
            if backend == "mysql":
                # DDL commits implicitly on MariaDB, so the lock is per session.
                conn.execute(text("SELECT GET_LOCK(:name, 300)"), {"name": _LOCK_NAME})
                conn.commit()
            try:
                with conn.begin():
                    if backend == "postgresql":
                        conn.execute(
                            text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY}
                        )
                    _upgrade_on(conn)
                    if backend == "sqlite":
                        broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                        if broken:
                            raise RuntimeError(
                                f"migration left dangling foreign keys: {broken[:5]!r}"
                            )
            finally:
                if backend == "mysql":
                    conn.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": _LOCK_NAME})
                    conn.commit()
        revision = current_revision(engine)
    finally:
        engine.dispose()
    if revision is None:  # pragma: no cover - command.upgrade always stamps
        raise RuntimeError("upgrade finished without a schema revision")
    return revision


def check_schema(engine: Engine) -> None:
    """Raise SchemaOutdated unless the database is at this code's head revision."""
    revision = current_revision(engine)
    head = head_revision()
    if revision == head:
        return
    if revision is not None:
        known = {
            script.revision
            for script in ScriptDirectory.from_config(alembic_config()).walk_revisions()
        }
        if revision not in known:
            raise SchemaOutdated(
                f"database schema is at revision {revision}, which this ldapsrv does not know"
                f" (it needs {head}): the database was upgraded by a newer ldapsrv"
            )
    shown = revision if revision is not None else "none (empty database)"
    raise SchemaOutdated(
        f"database schema is at revision {shown}, this ldapsrv needs {head}:"
        ' run "ldapsrv db upgrade"'
    )
