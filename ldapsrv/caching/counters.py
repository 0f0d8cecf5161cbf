"""Reading the change counters from the reactor thread, once per operation.

``SqliteCounters`` reads them on its own read-only connection to the database
file, synchronously: a one-row read of a WAL database costs microseconds and
never waits for a writer. ``PooledCounters`` (PostgreSQL, MariaDB, in-memory
SQLite) reads them in the thread pool, and lets every operation that arrives
while a read is in flight share the next read. An operation is only ever
answered from a read that *started* after it arrived, so what it sees is never
older than its own arrival.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Engine
from twisted.internet.defer import Deferred

from ldapsrv.store.changes import READ_SQL, Counters, counters_from_rows, read_counters
from ldapsrv.store.engine import run

log = logging.getLogger(__name__)

Current = Counters | None | Deferred[Counters | None]
"""Counters now, None when they cannot be read (answer without the cache), or a
Deferred firing with one of those."""


class CounterSource(Protocol):
    def current(self) -> Current: ...

    def close(self) -> None: ...


async def read_current(source: CounterSource | None) -> Counters | None:
    if source is None:
        return None
    now = source.current()
    if isinstance(now, Deferred):
        return await now
    return now


class SqliteCounters:
    """Counters of a SQLite file, read on the reactor thread (no busy wait: a
    read that finds the file locked answers None and the operation goes to the
    database the normal way)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._conn: sqlite3.Connection | None = None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            uri = f"{self._path.resolve().as_uri()}?mode=ro"
            conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout = 0")
            self._conn = conn
        return self._conn

    def current(self) -> Current:
        try:
            rows = self._connection().execute(READ_SQL).fetchall()
        except sqlite3.Error as exc:
            log.debug("change counters unreadable, answering from the database: %s", exc)
            self.close()
            return None
        return counters_from_rows(rows)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class PooledCounters:
    """Counters read in the thread pool, one read shared by every operation
    that arrived before it started."""

    def __init__(self, engine: Engine, run_blocking: Callable[..., Deferred[Any]]) -> None:
        self._engine = engine
        self._run_blocking = run_blocking
        self._in_flight = False
        self._waiting: list[Deferred[Counters | None]] = []

    def _read(self) -> Counters:
        return run(self._engine, read_counters, write=False)

    def current(self) -> Current:
        waiter: Deferred[Counters | None] = Deferred()
        self._waiting.append(waiter)
        if not self._in_flight:
            self._start()
        return waiter

    def _start(self) -> None:
        waiters, self._waiting = self._waiting, []
        self._in_flight = True

        def finished(result: object) -> None:
            self._in_flight = False
            counters = result if isinstance(result, Counters) else None
            if counters is None:
                log.debug("change counters unreadable, answering from the database: %s", result)
            for waiter in waiters:
                waiter.callback(counters)
            if self._waiting:
                self._start()

        self._run_blocking(self._read).addBoth(finished)

    def close(self) -> None:
        pass


def counter_source(engine: Engine, run_blocking: Callable[..., Deferred[Any]]) -> CounterSource:
    """The cheapest correct way to read ``engine``'s counters."""
    url = engine.url
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        path = Path(url.database)
        if path.exists():
            return SqliteCounters(path)
    return PooledCounters(engine, run_blocking)
