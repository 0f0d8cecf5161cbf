"""Engine set-up and the transaction runner: retries and StoreUnavailable."""

from __future__ import annotations

import sqlite3

import pytest
from sqlalchemy import event
from sqlalchemy.exc import IntegrityError, OperationalError

from ldapsrv.directory.predicates import TRUE
from ldapsrv.errors import StoreBusy, StoreUnavailable
from ldapsrv.store import engine as engine_module
from ldapsrv.store.directory import NewUser, SqlDirectory
from ldapsrv.store.engine import make_engine, run
from ldapsrv.store.schema_version import check_schema, upgrade


class _Orig(Exception):
    """Stands in for a driver exception carrying an error code."""

    def __init__(self, message: str, *, pgcode: str | None = None, errno: int | None = None):
        super().__init__(*([errno, message] if errno is not None else [message]))
        self.pgcode = pgcode


def _operational(pgcode: str | None = None, errno: int | None = None) -> OperationalError:
    return OperationalError("SELECT 1", {}, _Orig("boom", pgcode=pgcode, errno=errno))


@pytest.fixture
def sqlite_engine(tmp_path):
    url = f"sqlite:///{tmp_path / 'ldapsrv.db'}"
    upgrade(url)
    engine = make_engine(url)
    yield engine
    engine.dispose()


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg2://postgres@127.0.0.1:1/test",
        "mysql+pymysql://root@127.0.0.1:1/test",
    ],
)
def test_an_unreachable_server_is_store_unavailable(url):
    engine = make_engine(url)
    directory = SqlDirectory(engine, uid_range=(1, 10), gid_range=(1, 10))
    try:
        with pytest.raises(StoreUnavailable, match=r"^database unavailable: .*"):
            directory.search_users(TRUE, limit=1)
        with pytest.raises(StoreUnavailable):
            check_schema(engine)
    finally:
        engine.dispose()


def test_a_sqlite_file_locked_by_another_writer_is_store_unavailable_after_the_timeout(
    sqlite_engine, monkeypatch
):
    monkeypatch.setattr(engine_module, "SQLITE_BUSY_TIMEOUT_MS", 100)
    url = str(sqlite_engine.url)
    locked_engine = make_engine(url)
    other = sqlite3.connect(sqlite_engine.url.database, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        directory = SqlDirectory(locked_engine, uid_range=(1, 10), gid_range=(1, 10))
        with pytest.raises(StoreUnavailable, match="locked"):
            directory.create_user(NewUser("alice"))
        # Readers are not blocked by a writer in WAL mode.
        assert directory.search_users(TRUE, limit=1) == []
    finally:
        other.execute("ROLLBACK")
        other.close()
        locked_engine.dispose()


def test_sqlite_write_transactions_begin_immediate_and_reads_deferred(sqlite_engine):
    seen: list[str] = []

    def record(conn, cursor, statement, *args):
        if statement.startswith("BEGIN"):
            seen.append(statement)

    event.listen(sqlite_engine, "before_cursor_execute", record)
    run(sqlite_engine, lambda conn: None, write=True)
    run(sqlite_engine, lambda conn: None, write=False)
    assert seen == ["BEGIN IMMEDIATE", "BEGIN"]


@pytest.mark.parametrize(
    "error",
    [_operational(pgcode="40001"), _operational(pgcode="40P01"), _operational(errno=1213)],
    ids=["pg-serialization", "pg-deadlock", "mariadb-deadlock"],
)
def test_deadlocks_and_serialization_failures_are_retried(sqlite_engine, error):
    calls = []

    def work(conn):
        calls.append(1)
        if len(calls) < 3:
            raise error
        return "done"

    assert run(sqlite_engine, work, write=True) == "done"
    assert len(calls) == 3


def test_retries_are_bounded_and_end_in_store_unavailable(sqlite_engine):
    calls = []

    def work(conn):
        calls.append(1)
        raise _operational(pgcode="40P01")

    with pytest.raises(StoreUnavailable, match="kept aborting the transaction after 3 attempts"):
        run(sqlite_engine, work, write=True, attempts=3)
    assert len(calls) == 3


def test_integrity_errors_are_retried_for_writes_only(sqlite_engine):
    def failing(conn):
        calls.append(1)
        raise IntegrityError("INSERT", {}, _Orig("UNIQUE constraint failed"))

    calls: list[int] = []
    with pytest.raises(IntegrityError):
        run(sqlite_engine, failing, write=True, attempts=2)
    assert len(calls) == 2
    calls.clear()
    with pytest.raises(IntegrityError):
        run(sqlite_engine, failing, write=False)
    assert len(calls) == 1


def test_a_read_that_loses_its_connection_is_retried_once(sqlite_engine):
    calls = []

    def work(conn):
        calls.append(1)
        error = _operational()
        error.connection_invalidated = True
        raise error

    with pytest.raises(StoreUnavailable):
        run(sqlite_engine, work, write=False)
    assert len(calls) == 2


def test_other_operational_errors_become_store_unavailable_without_retry(sqlite_engine):
    calls = []

    def work(conn):
        calls.append(1)
        raise _operational(errno=2013)  # MariaDB: lost connection during query

    with pytest.raises(StoreUnavailable, match="boom"):
        run(sqlite_engine, work, write=True)
    assert len(calls) == 1


def test_mariadb_urls_get_utf8mb4_unless_told_otherwise():
    engine = make_engine("mysql+pymysql://root@127.0.0.1:1/test")
    assert engine.url.query["charset"] == "utf8mb4"
    engine = make_engine("mysql+pymysql://root@127.0.0.1:1/test?charset=latin1")
    assert engine.url.query["charset"] == "latin1"


def test_unknown_url_schemes_are_refused_with_the_supported_ones():
    with pytest.raises(ValueError, match="use sqlite:///PATH"):
        make_engine("oracle://x@y/z")


def test_a_locked_sqlite_file_is_store_busy_not_just_unavailable(sqlite_engine, monkeypatch):
    monkeypatch.setattr(engine_module, "SQLITE_BUSY_TIMEOUT_MS", 100)
    locked_engine = make_engine(str(sqlite_engine.url))
    other = sqlite3.connect(sqlite_engine.url.database, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        directory = SqlDirectory(locked_engine, uid_range=(1, 10), gid_range=(1, 10))
        with pytest.raises(StoreBusy, match=r"^database busy: database is locked"):
            directory.create_user(NewUser("alice"))
    finally:
        other.execute("ROLLBACK")
        other.close()
        locked_engine.dispose()


def test_shared_reads_answer_a_threads_reads_in_one_transaction_and_writes_in_their_own(
    sqlite_engine,
):
    directory = SqlDirectory(sqlite_engine, uid_range=(1000, 2000), gid_range=(1000, 2000))
    begins: list[str] = []
    event.listen(sqlite_engine, "begin", lambda conn: begins.append("begin"))
    with engine_module.shared_reads(sqlite_engine):
        first = run(sqlite_engine, lambda conn: conn, write=False)
        second = run(sqlite_engine, lambda conn: conn, write=False)
        with engine_module.shared_reads(sqlite_engine):  # nested: the same transaction
            third = run(sqlite_engine, lambda conn: conn, write=False)
        assert first is second is third
        assert begins == ["begin"]
        # A write inside the block commits on its own and is visible afterwards.
        directory.create_user(NewUser(name="alice"))
        assert len(begins) == 2
    assert directory.get_user("alice").name == "alice"
    run(sqlite_engine, lambda conn: None, write=False)
    assert len(begins) == 4  # outside the block every run() is its own transaction again


def test_a_database_error_inside_shared_reads_is_store_unavailable(sqlite_engine):
    def broken(conn):
        raise OperationalError("SELECT 1", {}, sqlite3.OperationalError("disk I/O error"))

    with pytest.raises(StoreUnavailable), engine_module.shared_reads(sqlite_engine):
        run(sqlite_engine, broken, write=False)
