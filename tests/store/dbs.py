"""Clean databases for tests, on each backend the suite can reach.

SQLite needs nothing; PostgreSQL and MariaDB come from server URLs in the
environment (``LDAPSRV_TEST_POSTGRESQL_URL``, ``LDAPSRV_TEST_MARIADB_URL``),
on which each test gets a database of its own, created and dropped around it.
End-to-end tests import ``fresh_database`` from here to run a server on a
clean store.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from sqlalchemy import Engine, create_engine, delete, insert, text
from sqlalchemy.engine import make_url

import ldapsrv.store
from ldapsrv.store.models import Base, id_allocators
from ldapsrv.store.schema_version import upgrade

Kind = Literal["sqlite", "postgresql", "mariadb"]
KINDS: tuple[Kind, ...] = ("sqlite", "postgresql", "mariadb")

URL_VARIABLES: dict[Kind, str] = {
    "postgresql": "LDAPSRV_TEST_POSTGRESQL_URL",
    "mariadb": "LDAPSRV_TEST_MARIADB_URL",
}
REQUIRE_ALL_VARIABLE = "LDAPSRV_REQUIRE_ALL"


def server_url(kind: Kind) -> str | None:
    """The configured server URL for ``kind`` (None for SQLite or when unset)."""
    variable = URL_VARIABLES.get(kind)
    return os.environ.get(variable) or None if variable else None


def missing_reason(kind: Kind) -> str | None:
    """Why ``kind`` cannot be tested here, or None if it can."""
    if kind == "sqlite" or server_url(kind):
        return None
    return f"{kind} not configured: set {URL_VARIABLES[kind]} to a server URL"


def require_all() -> bool:
    """True when a missing backend must fail the suite rather than skip (CI)."""
    return os.environ.get(REQUIRE_ALL_VARIABLE, "") == "1"


def skip_unless_available(kind: Kind) -> None:
    """Skip the current test when ``kind`` is not configured (fail instead
    under LDAPSRV_REQUIRE_ALL=1, so CI cannot silently test less)."""
    import pytest

    reason = missing_reason(kind)
    if reason is None:
        return
    if require_all():
        pytest.fail(f"{REQUIRE_ALL_VARIABLE}=1 but {reason}")
    pytest.skip(reason)


def load_all_tables() -> None:
    """Import every module of ``ldapsrv.store`` so ``Base.metadata`` holds every
    table: some are declared next to the code that uses them, not in models.py."""
    for module in pkgutil.iter_modules(ldapsrv.store.__path__):
        importlib.import_module(f"ldapsrv.store.{module.name}")


def empty_database(engine: Engine) -> None:
    """Delete every row and restart the uid/gid counters, keeping the schema:
    the state ``ldapsrv db upgrade`` leaves behind, minus its cost."""
    load_all_tables()
    with engine.begin() as conn:
        # Children before parents, every table the models know (later issues'
        # tables included), so no test inherits another's rows.
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(delete(table))
        conn.execute(
            insert(id_allocators),
            [{"name": "uid", "next_value": 0}, {"name": "gid", "next_value": 0}],
        )


@contextmanager
def fresh_database(kind: Kind, *, migrate: bool = True) -> Iterator[str]:
    """A URL to a new, empty database of ``kind`` that is removed afterwards.

    With ``migrate`` the schema is brought to head first (``ldapsrv db upgrade``).
    """
    if kind == "sqlite":
        directory = Path(tempfile.mkdtemp(prefix="ldapsrv-test-"))
        try:
            url = f"sqlite:///{directory / 'ldapsrv.db'}"
            if migrate:
                upgrade(url)
            yield url
        finally:
            shutil.rmtree(directory, ignore_errors=True)
        return

    base = server_url(kind)
    if base is None:
        raise RuntimeError(missing_reason(kind))
    name = f"ldapsrv_t_{secrets.token_hex(6)}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            if kind == "postgresql":
                conn.execute(text(f'CREATE DATABASE "{name}"'))
            else:
                conn.execute(
                    text(
                        f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin"
                    )
                )
        url = make_url(base).set(database=name).render_as_string(hide_password=False)
        try:
            if migrate:
                upgrade(url)
            yield url
        finally:
            with admin.connect() as conn:
                if kind == "postgresql":
                    # FORCE: a test that leaked a connection must not leak a database.
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                else:
                    conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
    finally:
        admin.dispose()
