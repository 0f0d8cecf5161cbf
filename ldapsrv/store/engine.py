"""Engines for SQLite, PostgreSQL and MariaDB, and the one way statements run.

``make_engine`` configures each backend so the same store code behaves the
same on all three. ``run`` executes one unit of work in one short transaction,
retries what a database asks to be retried (deadlocks, serialization failures,
a unique-key race with a concurrent writer) and turns operational failures into
``StoreUnavailable`` so callers above the store never see a driver exception.

A database that goes away must be noticed in seconds, not minutes: every backend
gets a connect timeout, PostgreSQL TCP keepalives and a TCP user timeout,
MariaDB read/write timeouts, every pool a pre-ping and a checkout timeout, and
SQLite a busy timeout after which a locked file is ``StoreBusy`` (LDAP busy).
Nothing is cached across a failure, so service resumes by itself with the
first statement that reaches the database again.
"""

from __future__ import annotations

import logging
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import (
    DBAPIError,
    IntegrityError,
    InterfaceError,
    OperationalError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.pool import ConnectionPoolEntry

from ldapsrv.errors import StoreBusy, StoreUnavailable
from ldapsrv.store.changes import DIRECTORY, bump

log = logging.getLogger(__name__)

T = TypeVar("T")

WITHOUT_CHANGE_COUNTERS = "ldapsrv_without_change_counters"
"""Engine execution option for a database below revision 0006, which has no
``change_counters`` table: writes then bump nothing. Only the migration tests
write to such a database; a server refuses to start on one (check_schema)."""

WRITE_OPTION = "ldapsrv_write"
"""Execution option marking a connection whose transaction will write. On
SQLite it makes the transaction start with ``BEGIN IMMEDIATE``."""

SQLITE_BUSY_TIMEOUT_MS = 2000
"""How long a SQLite statement waits for a lock another connection holds before
the operation answers busy. Writes take milliseconds, so only a stuck or foreign
lock (a backup tool, an admin's sqlite3 shell) waits this long."""
CONNECT_TIMEOUT_S = 3
POOL_TIMEOUT_S = 5
"""How long a thread waits for a pooled connection before answering unavailable."""
SOCKET_TIMEOUT_S = 30
"""A MariaDB/PostgreSQL peer that stops answering on an open connection (a host
that vanished without a reset) is given up on after this long."""

_SQLITE_BUSY_CODES = frozenset({5, 6})  # SQLITE_BUSY, SQLITE_LOCKED

_PG_RETRYABLE = frozenset({"40001", "40P01"})  # serialization_failure, deadlock_detected
_MYSQL_RETRYABLE = frozenset({1213, 1020})  # deadlock; record changed since last read


def backend_name(engine_or_url: Engine | URL | str) -> str:
    """``sqlite``, ``postgresql`` or ``mysql`` (MariaDB speaks the mysql dialect)."""
    if isinstance(engine_or_url, Engine):
        name = engine_or_url.dialect.name
    else:
        name = make_url(engine_or_url).get_backend_name()
    return "mysql" if name == "mariadb" else name


def _sqlite_lower(value: Any) -> Any:
    # SQLite's built-in lower() folds ASCII only; Python's folds all of Unicode,
    # which is what the other backends do and what case-insensitive LDAP
    # matching (caseIgnoreMatch) means for names like "Émile".
    return value.lower() if isinstance(value, str) else value


def _configure_sqlite(engine: Engine, *, in_memory: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, record: ConnectionPoolEntry) -> None:
        # Take transaction control away from the sqlite3 module (it would not
        # emit BEGIN before SELECTs, and never BEGIN IMMEDIATE); see _on_begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            if not in_memory:
                # WAL: readers never block the writer nor each other.
                cursor.execute("PRAGMA journal_mode = WAL")
                # NORMAL is durable across application crashes in WAL mode and
                # avoids an fsync per commit.
                cursor.execute("PRAGMA synchronous = NORMAL")
            # ON DELETE CASCADE on memberships needs this on every connection.
            cursor.execute("PRAGMA foreign_keys = ON")
            # LIKE is case-insensitive on SQLite by default; the filter compiler
            # lower()s both sides when it wants that, and needs LIKE to be
            # exact otherwise, as on PostgreSQL and MariaDB (binary collation).
            cursor.execute("PRAGMA case_sensitive_like = ON")
        finally:
            cursor.close()
        dbapi_connection.create_function("lower", 1, _sqlite_lower, deterministic=True)

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # A deferred BEGIN that later writes must upgrade its read lock to a
        # write lock, and two such transactions fail with "database is locked"
        # without waiting. BEGIN IMMEDIATE takes the write lock up front (and
        # waits busy_timeout for it), so concurrent writers, in this process
        # or another, queue up instead.
        if conn.get_execution_options().get(WRITE_OPTION):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")


def make_engine(url: str, *, pool_size: int = 8) -> Engine:
    """An Engine for ``url`` configured for the store.

    ``sqlite:///<path>`` (the default backend), ``postgresql+psycopg2://...`` or
    ``mysql+pymysql://...`` (MariaDB). ``pool_size`` should match the number of
    threads that run store calls; the pool may grow by as many again under bursts.
    """
    parsed = make_url(url)
    backend = backend_name(parsed)
    if backend == "sqlite":
        database = parsed.database or ""
        in_memory = database in ("", ":memory:") or "mode=memory" in str(parsed)
        kwargs: dict[str, Any] = {
            "connect_args": {
                "check_same_thread": False,
                "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000,
            }
        }
        if not in_memory:
            kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_timeout=POOL_TIMEOUT_S)
        engine = create_engine(parsed, **kwargs)
        _configure_sqlite(engine, in_memory=in_memory)
        return engine
    if backend == "postgresql":
        return create_engine(
            parsed,
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_pre_ping=True,
            pool_recycle=3600,
            pool_timeout=POOL_TIMEOUT_S,
            isolation_level="READ COMMITTED",
            connect_args={
                "connect_timeout": CONNECT_TIMEOUT_S,
                "application_name": "ldapsrv",
                # A server that vanished without closing the connection (host
                # down, network cut) is detected by the kernel in seconds.
                "keepalives": 1,
                "keepalives_idle": 10,
                "keepalives_interval": 3,
                "keepalives_count": 3,
                "tcp_user_timeout": SOCKET_TIMEOUT_S * 1000,
            },
        )
    if backend == "mysql":
        if "charset" not in parsed.query:
            # Without it pymysql may pick a 3-byte utf8 and mangle emoji and
            # other astral characters.
            parsed = parsed.update_query_dict({"charset": "utf8mb4"})
        return create_engine(
            parsed,
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_pre_ping=True,
            # Below MariaDB's default wait_timeout (8 h) so idle connections
            # are replaced before the server drops them.
            pool_recycle=3600,
            # Same visibility rules as PostgreSQL: each statement sees what
            # was committed before it, and InnoDB takes no gap locks.
            isolation_level="READ COMMITTED",
            pool_timeout=POOL_TIMEOUT_S,
            connect_args={
                "connect_timeout": CONNECT_TIMEOUT_S,
                "read_timeout": SOCKET_TIMEOUT_S,
                "write_timeout": SOCKET_TIMEOUT_S,
            },
        )
    raise ValueError(
        f"unsupported database URL scheme {parsed.drivername!r}: "
        "use sqlite:///PATH, postgresql+psycopg2://... or mysql+pymysql://..."
    )


def _error_code(exc: DBAPIError) -> str | int | None:
    orig = exc.orig
    pgcode = getattr(orig, "pgcode", None)
    if isinstance(pgcode, str):
        return pgcode
    args = getattr(orig, "args", ())
    if args and isinstance(args[0], int):
        return args[0]
    return None


def is_retryable(exc: BaseException) -> bool:
    """True for errors that mean "run the same transaction again": deadlocks
    and serialization failures. Nothing was committed."""
    if not isinstance(exc, DBAPIError):
        return False
    code = _error_code(exc)
    return code in _PG_RETRYABLE or code in _MYSQL_RETRYABLE


def is_unavailable(exc: BaseException) -> bool:
    """True for errors that say the database cannot serve us right now
    (refused, lost or timed-out connections, a locked SQLite file, a full
    pool), as opposed to a bug in a statement."""
    if isinstance(exc, PoolTimeoutError):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, OperationalError | InterfaceError)


def is_busy(exc: BaseException) -> bool:
    """True for a SQLite file locked by another connection beyond the busy timeout."""
    orig = getattr(exc, "orig", None)
    if not isinstance(orig, sqlite3.OperationalError):
        return False
    code = getattr(orig, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in _SQLITE_BUSY_CODES
    return "locked" in str(orig)


def unavailable(exc: BaseException) -> StoreUnavailable:
    """The StoreUnavailable (StoreBusy for a locked file) to raise for ``exc``,
    with the driver's reason."""
    orig = getattr(exc, "orig", None) or exc
    reason = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
    if is_busy(exc):
        return StoreBusy(f"database busy: {reason}")
    return StoreUnavailable(f"database unavailable: {reason}")


@contextmanager
def mapped_errors() -> Iterator[None]:
    """Turn operational database errors raised inside into StoreUnavailable."""
    try:
        yield
    except (DBAPIError, PoolTimeoutError) as exc:
        if is_unavailable(exc):
            raise unavailable(exc) from exc
        raise


class _SharedRead(threading.local):
    engine: Engine | None = None
    conn: Connection | None = None


_shared = _SharedRead()


@contextmanager
def shared_reads(engine: Engine) -> Iterator[None]:
    """Let the read-only ``run`` calls of this thread, inside the block, share one
    connection and one transaction.

    A bind asks four small questions (throttle counters, credentials, the token
    row, grants); one checkout, BEGIN and COMMIT for all of them instead of one
    each is most of what a warm bind costs. Writes inside the block still get
    their own transaction (``run(write=True)`` never uses the shared one), so
    a read snapshot here never turns into a write lock. Nested blocks reuse the
    outer one. Errors are mapped as in ``run`` but not retried: the block is one
    unit, and its caller (one bind) simply fails.
    """
    if _shared.conn is not None:
        yield
        return
    with mapped_errors(), engine.connect() as conn:
        conn.execution_options(**{WRITE_OPTION: False})
        with conn.begin():
            _shared.engine, _shared.conn = engine, conn
            try:
                yield
            finally:
                _shared.engine = _shared.conn = None


def run(
    engine: Engine,
    work: Callable[[Connection], T],
    *,
    write: bool,
    attempts: int = 6,
    changes: tuple[str, ...] = (DIRECTORY,),
) -> T:
    """Run ``work`` in one transaction and return its result.

    A write transaction also bumps the change counters named in ``changes``
    (by default ``directory``: any write may change what LDAP answers), so
    that caches validated against them drop what it changed. Bookkeeping
    writes that change no answer (audit lines alone, a token's last use) pass
    ``changes=()``; the failed-bind counters pass ``(THROTTLE,)``.

    The transaction commits when ``work`` returns and rolls back when it
    raises. It is retried (with a short randomised back-off) when the database
    reports a deadlock or serialization failure, when a write hits a unique
    or foreign-key violation (a concurrent writer got there first: the retry's
    own checks then see that writer's row and raise the right domain error, or
    allocate another number), and once when a read loses its connection. What
    still fails is raised: operational errors as StoreUnavailable, domain
    errors from ``work`` unchanged.
    """
    if not write and _shared.conn is not None and _shared.engine is engine:
        with mapped_errors():
            return work(_shared.conn)
    lost_connection_retries = 0 if write else 1
    attempt = 0
    while True:
        attempt += 1
        try:
            with engine.connect() as conn:
                conn.execution_options(**{WRITE_OPTION: write})
                with conn.begin():
                    result = work(conn)
                    if (
                        write
                        and changes
                        and not conn.get_execution_options().get(WITHOUT_CHANGE_COUNTERS)
                    ):
                        bump(conn, changes)
                    return result
        except IntegrityError as exc:
            if not write or attempt >= attempts:
                raise
            log.debug("integrity error, retrying (attempt %d): %s", attempt, exc.orig)
        except (DBAPIError, PoolTimeoutError) as exc:
            if is_retryable(exc):
                if attempt >= attempts:
                    raise StoreUnavailable(
                        f"database kept aborting the transaction after {attempt} attempts: "
                        f"{unavailable(exc).args[0].removeprefix('database unavailable: ')}"
                    ) from exc
                log.debug("retryable database error (attempt %d): %s", attempt, exc)
            elif (
                isinstance(exc, DBAPIError)
                and exc.connection_invalidated
                and lost_connection_retries > 0
            ):
                lost_connection_retries -= 1
                log.info("database connection lost during a read, retrying once")
                continue
            elif is_unavailable(exc):
                raise unavailable(exc) from exc
            else:
                raise
        time.sleep(random.uniform(0.005, 0.02) * attempt)
