"""Bumping and reading the change counters (see ``change_models``).

``engine.run`` bumps the counters a write transaction names, inside that
transaction, after its work: the new value becomes visible exactly when the
change does. Concurrent writers serialise on the counter row (PostgreSQL and
MariaDB row locks, SQLite's single writer), so no two commits share a value.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection

from ldapsrv.store.change_models import change_counters

DIRECTORY = "directory"
"""Accounts, groups, memberships, tokens, grants: what LDAP answers and binds read."""
THROTTLE = "throttle"
"""Failed-bind counters: what decides whether a bind is refused before any check."""


class Counters(NamedTuple):
    """The change counters at one moment (a tuple: compared at C speed, and every
    kept answer and bind is compared with the current ones)."""

    directory: int
    throttle: int


_BUMPS = {
    name: update(change_counters)
    .where(change_counters.c.name == name)
    .values(value=change_counters.c.value + 1)
    for name in (DIRECTORY, THROTTLE)
}
_READ = select(change_counters.c.name, change_counters.c.value)
READ_SQL = "SELECT name, value FROM change_counters"
"""The same read as plain SQL, for a driver connection that bypasses SQLAlchemy."""


def bump(conn: Connection, names: Iterable[str]) -> None:
    """Add one to each named counter (creating it at 1 the first time)."""
    for name in names:
        if conn.execute(_BUMPS[name]).rowcount == 0:
            # Two first writers racing here collide on the primary key; engine.run
            # retries the loser, whose UPDATE then finds the row.
            conn.execute(insert(change_counters).values(name=name, value=1))


def counters_from_rows(rows: Iterable[tuple[str, int]]) -> Counters:
    values = {name: int(value) for name, value in rows}
    return Counters(values.get(DIRECTORY, 0), values.get(THROTTLE, 0))


def read_counters(conn: Connection) -> Counters:
    return counters_from_rows((row[0], row[1]) for row in conn.execute(_READ))
