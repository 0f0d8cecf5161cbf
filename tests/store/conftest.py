"""Fixtures for store tests, each parametrized over SQLite, PostgreSQL and MariaDB.

``database_url``: a new database at head revision for this test alone, dropped
afterwards. For tests that touch the schema or need several engines.

``engine``/``directory``: a database shared by the test module and emptied
before each test. Creating and migrating a database costs 0.07-0.1 s per
test on each backend (measured; over 30 s for this suite), emptying one a few
milliseconds: data tests start from the same clean state either way.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine

from ldapsrv.store.directory import SqlDirectory
from ldapsrv.store.engine import make_engine

from .dbs import KINDS, Kind, empty_database, fresh_database, skip_unless_available

UID_RANGE = (10000, 19999)
GID_RANGE = (20000, 29999)


@pytest.fixture(params=KINDS)
def database_kind(request: pytest.FixtureRequest) -> Kind:
    """The backend under test; skipped (or failed under LDAPSRV_REQUIRE_ALL=1)
    when its server URL is not configured."""
    kind: Kind = request.param
    skip_unless_available(kind)
    return kind


@pytest.fixture
def database_url(database_kind: Kind) -> Iterator[str]:
    with fresh_database(database_kind) as url:
        yield url


@pytest.fixture(scope="module", params=KINDS)
def store_kind(request: pytest.FixtureRequest) -> Kind:
    """The backend of the module-shared database (same skip rules)."""
    kind: Kind = request.param
    skip_unless_available(kind)
    return kind


@pytest.fixture(scope="module")
def shared_database_url(store_kind: Kind) -> Iterator[str]:
    with fresh_database(store_kind) as url:
        yield url


@pytest.fixture
def engine(shared_database_url: str) -> Iterator[Engine]:
    """An engine on the module's database, emptied of all data first."""
    engine = make_engine(shared_database_url)
    try:
        empty_database(engine)
        yield engine
    finally:
        engine.dispose()


class TickingClock:
    """A clock that moves one second per reading, so every write is "later"
    than the one before without sleeping."""

    def __init__(self) -> None:
        self.now = datetime(2024, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@pytest.fixture
def clock() -> TickingClock:
    return TickingClock()


@pytest.fixture
def directory(engine: Engine, clock: TickingClock) -> SqlDirectory:
    return SqlDirectory(engine, uid_range=UID_RANGE, gid_range=GID_RANGE, clock=clock)
