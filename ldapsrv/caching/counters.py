"""Reading the change counters from the reactor thread, once per operation.

``SqliteCounters`` reads them on its own read-only connection to the database
file, synchronously: a one-row read of a WAL database costs microseconds and
never waits for a writer. Between commits it does not even read: every commit
rewrites the WAL index header in the ``-shm`` file (its change counter goes up),
so while those 48 bytes are what they were at the last read, so are the
counters. Looking at them costs no system call and keeps the GIL, where a query
hands it to whichever pool thread wants it. ``PooledCounters`` (PostgreSQL, MariaDB, in-memory
SQLite) reads them in the thread pool, and lets every operation that arrives
while a read is in flight share the next read. An operation is only ever
answered from a read that *started* after it arrived, so what it sees is never
older than its own arrival.
"""

from __future__ import annotations

import logging
import mmap
import os
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


#: Bytes of the WAL index header's first copy (SQLite's file format, "WAL-Index Format").
WAL_INDEX_HEADER_BYTES = 48


class WalIndexHeader:
    """The first copy of a WAL database's index header, mapped read-only.

    Only ever opened while a connection of ours has the database's WAL open: SQLite
    truncates the ``-shm`` file only when no connection holds it, so the mapping
    cannot lose its page under us."""

    def __init__(self, shm: Path) -> None:
        fd = os.open(shm, os.O_RDONLY | os.O_CLOEXEC)
        try:
            if os.fstat(fd).st_size < WAL_INDEX_HEADER_BYTES:
                raise OSError(f"{shm} holds no WAL index header yet")
            self._map = mmap.mmap(fd, WAL_INDEX_HEADER_BYTES, access=mmap.ACCESS_READ)
        finally:
            os.close(fd)

    def read(self) -> bytes:
        return self._map[:WAL_INDEX_HEADER_BYTES]

    def close(self) -> None:
        self._map.close()


class SqliteCounters:
    """Counters of a SQLite file, read on the reactor thread (no busy wait: a
    read that finds the file locked answers None and the operation goes to the
    database the normal way)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._conn: sqlite3.Connection | None = None
        self._header: WalIndexHeader | None = None
        self._header_tried = False
        #: The WAL index header as it was just before the last read, and that read.
        self._seen: bytes | None = None
        self._last: Counters | None = None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            uri = f"{self._path.resolve().as_uri()}?mode=ro"
            conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout = 0")
            self._conn = conn
        return self._conn

    def current(self) -> Current:
        # The header is looked at before the read, so the counters kept with it
        # are never older than it: a commit after this look changes the header
        # and the next call reads again.
        seen = None if self._header is None else self._header.read()
        if seen is not None and seen == self._seen:
            return self._last
        try:
            rows = self._connection().execute(READ_SQL).fetchall()
        except sqlite3.Error as exc:
            log.debug("change counters unreadable, answering from the database: %s", exc)
            self.close()
            return None
        counters = counters_from_rows(rows)
        if not self._header_tried:
            self._header_tried = True
            self._header = self._open_header()
        self._seen, self._last = seen, counters
        return counters

    def _open_header(self) -> WalIndexHeader | None:
        """The header of the WAL our connection now has open (None: not in WAL
        mode, or no ``-shm`` file: every call reads). A database leaves WAL mode
        only with no other connection open, so not while ours is."""
        try:
            mode = self._connection().execute("PRAGMA journal_mode").fetchone()
            if mode is None or str(mode[0]).lower() != "wal":
                return None
            return WalIndexHeader(self._path.with_name(self._path.name + "-shm"))
        except (OSError, ValueError, sqlite3.Error) as exc:
            log.debug("no WAL index header to watch, reading the counters every time: %s", exc)
            return None

    def close(self) -> None:
        if self._header is not None:
            self._header.close()
            self._header = None
        self._header_tried = False
        self._seen = self._last = None
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
