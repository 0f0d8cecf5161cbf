"""The caches of issue 5, piece by piece: no sockets, no server.

``ByteBoundedLRU`` and ``AnswerCapture`` (what a search answer may keep),
``BindCache`` (warm token binds), ``PooledCounters`` batching and
``SqliteCounters`` on a real migrated file (how the change counters are read),
``split_keyed`` (one statement per filter shape) and the single bcrypt that
concurrent checks of one token value share (``TokenVerifier``).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import bcrypt
import pytest
from token_fakes import T0, FakeClock, FakeTokenStore, new_token
from twisted.internet.defer import Deferred

from ldapsrv.auth.binding import BindOutcome
from ldapsrv.auth.tokens import TokenVerifier, issue_token
from ldapsrv.caching.binds import BindCache
from ldapsrv.caching.counters import PooledCounters, SqliteCounters, counter_source
from ldapsrv.caching.lru import ByteBoundedLRU
from ldapsrv.caching.search_results import (
    ANSWER_OVERHEAD,
    ENTRY_OVERHEAD,
    AnswerCapture,
    CachedAnswer,
    SearchResultCache,
)
from ldapsrv.directory.predicates import (
    AllOf,
    AnyOf,
    FieldEquals,
    FieldPresent,
    HasMember,
    Negation,
)
from ldapsrv.directory.records import TokenRecord
from ldapsrv.store.changes import Counters
from ldapsrv.store.engine import make_engine
from ldapsrv.store.keyed import KeyedLookup, split_keyed
from ldapsrv.store.schema_version import upgrade

# ------------------------------------------------------------------ ByteBoundedLRU


def test_a_value_stamped_with_another_counter_is_a_miss_and_is_dropped() -> None:
    lru: ByteBoundedLRU[str] = ByteBoundedLRU(1000)
    lru.put("k", 7, "answer", 10)
    assert lru.get("k", 7) == "answer"
    assert lru.get("k", 8) is None
    assert len(lru) == 0 and lru.bytes == 0
    # Dropped, not merely hidden: the old counter no longer finds it either.
    assert lru.get("k", 7) is None
    assert (lru.hits, lru.misses) == (1, 2)


def test_eviction_drops_the_least_recently_used_until_the_bytes_fit() -> None:
    lru: ByteBoundedLRU[str] = ByteBoundedLRU(1000)
    lru.put("a", 1, "A", 250)
    lru.put("b", 1, "B", 250)
    lru.put("c", 1, "C", 250)
    lru.put("d", 1, "D", 250)
    assert lru.bytes == 1000 and len(lru) == 4
    assert lru.get("a", 1) == "A"  # a is now the most recently used
    lru.put("e", 1, "E", 200)  # 1200 bytes: b (least recently used) must go
    assert lru.get("b", 1) is None
    assert [lru.get(k, 1) for k in "acde"] == ["A", "C", "D", "E"]
    assert lru.bytes == 950
    lru.put("f", 1, "F", 250)  # 1200 again: a (used longest ago now) goes
    assert lru.get("a", 1) is None
    assert lru.bytes == 950 and len(lru) == 4


def test_replacing_a_key_counts_its_bytes_once() -> None:
    lru: ByteBoundedLRU[str] = ByteBoundedLRU(1000)
    lru.put("k", 1, "old", 200)
    lru.put("k", 2, "new", 100)
    assert lru.bytes == 100 and len(lru) == 1
    assert lru.get("k", 2) == "new"


def test_a_value_larger_than_a_quarter_of_the_budget_is_never_kept() -> None:
    lru: ByteBoundedLRU[str] = ByteBoundedLRU(1000)
    lru.put("small", 1, "s", 100)
    lru.put("big", 1, "b", 251)
    assert lru.get("big", 1) is None
    assert lru.get("small", 1) == "s"  # and it pushed nothing out
    assert lru.bytes == 100
    lru.put("edge", 1, "e", 250)  # exactly a quarter is kept
    assert lru.get("edge", 1) == "e"


# ------------------------------------------------------------------ AnswerCapture


def test_a_capture_stops_keeping_entries_once_over_its_budget() -> None:
    entry = b"x" * 100
    per_entry = len(entry) + ENTRY_OVERHEAD
    budget = ANSWER_OVERHEAD + 3 * per_entry
    capture = AnswerCapture(budget)
    for _ in range(3):
        capture.add(entry)
    assert capture.entries == [entry] * 3
    assert capture.size == budget
    capture.add(entry)
    assert capture.entries is None
    capture.add(b"y")  # later entries are streamed and forgotten as well
    assert capture.entries is None


def test_an_answer_whose_capture_overflowed_is_not_stored() -> None:
    cache = SearchResultCache(4 * 4096)  # answers up to 4096 bytes
    over = cache.capture()
    for _ in range(40):
        over.add(b"z" * 100)
    assert over.entries is None
    cache.put("key", 1, over, CachedAnswer((), 0))
    assert cache.get("key", 1) is None

    kept = cache.capture()
    kept.add(b"entry")
    answer = CachedAnswer(tuple(kept.entries or ()), 0)
    cache.put("key", 1, kept, answer)
    assert cache.get("key", 1) == answer
    assert cache.get("key", 2) is None
    assert cache.stats()["answers"] == 0


# ------------------------------------------------------------------ BindCache

TOKEN = b"ldsrv_AAAAAAAAAAAA_" + b"s" * 43
OTHER_TOKEN = b"ldsrv_AAAAAAAAAAAA_" + b"t" * 43
C0 = Counters(directory=5, throttle=2)


def accepted(until: datetime | None = T0 + timedelta(seconds=60)) -> BindOutcome:
    return BindOutcome("nas", "", "token nas-backup", reusable_until=until)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def binds(clock: FakeClock) -> BindCache:
    cache = BindCache(clock=clock)
    cache.put("nas", "192.0.2.7", TOKEN, C0, accepted())
    return cache


def test_a_kept_bind_is_answered_for_the_same_name_any_case_address_and_token(
    binds: BindCache,
) -> None:
    assert binds.get("nas", "192.0.2.7", TOKEN, C0) == accepted()
    assert binds.get("NAS", "192.0.2.7", TOKEN, C0) == accepted()
    assert binds.hits == 2


@pytest.mark.parametrize(
    ("name", "address", "token"),
    [
        ("nas2", "192.0.2.7", TOKEN),
        ("nas", "192.0.2.8", TOKEN),
        ("nas", None, TOKEN),
        ("nas", "192.0.2.7", OTHER_TOKEN),
    ],
)
def test_another_name_address_or_token_misses(
    binds: BindCache, name: str, address: str | None, token: bytes
) -> None:
    assert binds.get(name, address, token, C0) is None
    assert binds.get("nas", "192.0.2.7", TOKEN, C0) is not None  # the kept one stays


@pytest.mark.parametrize("changed", [Counters(6, 2), Counters(5, 3)], ids=["directory", "throttle"])
def test_a_change_of_either_counter_misses_and_drops_the_entry(
    binds: BindCache, changed: Counters
) -> None:
    assert binds.get("nas", "192.0.2.7", TOKEN, changed) is None
    assert len(binds) == 0
    assert binds.get("nas", "192.0.2.7", TOKEN, C0) is None


def test_a_kept_bind_expires_at_its_reusable_until(binds: BindCache, clock: FakeClock) -> None:
    clock.advance(timedelta(seconds=59))
    assert binds.get("nas", "192.0.2.7", TOKEN, C0) is not None
    clock.advance(timedelta(seconds=1))  # exactly reusable_until: no longer
    assert binds.get("nas", "192.0.2.7", TOKEN, C0) is None
    assert len(binds) == 0


def test_refusals_and_outcomes_without_reusable_until_are_not_kept(clock: FakeClock) -> None:
    cache = BindCache(clock=clock)
    refused = BindOutcome(None, "wrong token secret", "token nas-backup")
    refused_with_until = replace(refused, reusable_until=T0 + timedelta(seconds=60))
    cache.put("nas", "192.0.2.7", TOKEN, C0, refused)
    cache.put("nas", "192.0.2.8", TOKEN, C0, refused_with_until)
    cache.put("nas", "192.0.2.9", TOKEN, C0, accepted(until=None))
    assert len(cache) == 0
    for address in ("192.0.2.7", "192.0.2.8", "192.0.2.9"):
        assert cache.get("nas", address, TOKEN, C0) is None


def test_the_least_recently_used_bind_goes_beyond_max_entries(clock: FakeClock) -> None:
    cache = BindCache(max_entries=2, clock=clock)
    cache.put("a", "192.0.2.1", TOKEN, C0, accepted())
    cache.put("b", "192.0.2.1", TOKEN, C0, accepted())
    assert cache.get("a", "192.0.2.1", TOKEN, C0) is not None  # b is now the oldest
    cache.put("c", "192.0.2.1", TOKEN, C0, accepted())
    assert len(cache) == 2
    assert cache.get("b", "192.0.2.1", TOKEN, C0) is None
    assert cache.get("a", "192.0.2.1", TOKEN, C0) is not None
    assert cache.get("c", "192.0.2.1", TOKEN, C0) is not None


# ------------------------------------------------------------------ PooledCounters


class ManualPool:
    """A ``run_blocking`` whose reads finish only when the test fires them."""

    def __init__(self) -> None:
        self.reads: list[Deferred[Any]] = []

    def __call__(self, fn: Callable[..., Any], *args: Any) -> Deferred[Any]:
        read: Deferred[Any] = Deferred()
        self.reads.append(read)
        return read


def fired(d: Any) -> list[Any]:
    """What ``d`` fired with so far (empty while it has not)."""
    assert isinstance(d, Deferred)
    out: list[Any] = []
    d.addCallback(out.append)
    return out


def test_callers_arriving_during_a_read_share_the_next_read_not_the_one_in_flight() -> None:
    pool = ManualPool()
    counters = PooledCounters(None, pool)  # type: ignore[arg-type,unused-ignore]  # never run
    first = fired(counters.current())
    assert len(pool.reads) == 1
    second = fired(counters.current())
    third = fired(counters.current())
    assert len(pool.reads) == 1  # no second read while one is in flight

    pool.reads[0].callback(Counters(1, 0))
    assert first == [Counters(1, 0)]
    assert second == [] and third == []  # they arrived after that read started
    assert len(pool.reads) == 2  # ... so one new read serves both
    fourth = fired(counters.current())
    assert len(pool.reads) == 2

    pool.reads[1].callback(Counters(2, 0))
    assert second == [Counters(2, 0)] and third == [Counters(2, 0)]
    assert fourth == []
    assert len(pool.reads) == 3
    pool.reads[2].callback(Counters(3, 1))
    assert fourth == [Counters(3, 1)]
    assert len(pool.reads) == 3  # nobody waiting: no further read

    fifth = fired(counters.current())  # idle: a read starts at once
    assert len(pool.reads) == 4
    pool.reads[3].callback(Counters(3, 1))
    assert fifth == [Counters(3, 1)]


def test_a_failed_read_answers_none_and_the_next_caller_reads_again() -> None:
    pool = ManualPool()
    counters = PooledCounters(None, pool)  # type: ignore[arg-type,unused-ignore]
    first = fired(counters.current())
    waiting = fired(counters.current())
    pool.reads[0].errback(RuntimeError("database gone"))
    assert first == [None]
    assert len(pool.reads) == 2
    pool.reads[1].errback(RuntimeError("still gone"))
    assert waiting == [None]
    later = fired(counters.current())
    pool.reads[2].callback(Counters(4, 0))
    assert later == [Counters(4, 0)]


# ------------------------------------------------------------------ SqliteCounters


@pytest.fixture
def sqlite_file(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "ldapsrv.db"
    upgrade(f"sqlite:///{path}")
    yield path


def bump_directory(path: Path, times: int = 1) -> None:
    """A write committed by another connection (as another server would)."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        for _ in range(times):
            conn.execute("BEGIN IMMEDIATE")
            updated = conn.execute(
                "UPDATE change_counters SET value = value + 1 WHERE name = 'directory'"
            ).rowcount
            if updated == 0:
                conn.execute("INSERT INTO change_counters (name, value) VALUES ('directory', 1)")
            conn.execute("COMMIT")
    finally:
        conn.close()


def test_sqlite_counters_read_zero_before_any_write_and_see_a_commit_at_once(
    sqlite_file: Path,
) -> None:
    counters = SqliteCounters(sqlite_file)
    try:
        assert counters.current() == Counters(0, 0)
        bump_directory(sqlite_file)
        assert counters.current() == Counters(1, 0)
        bump_directory(sqlite_file, 2)
        assert counters.current() == Counters(3, 0)
    finally:
        counters.close()


def test_sqlite_counters_see_a_write_made_through_the_store_engine(sqlite_file: Path) -> None:
    from ldapsrv.store.directory import NewUser, SqlDirectory

    engine = make_engine(f"sqlite:///{sqlite_file}")
    counters = SqliteCounters(sqlite_file)
    try:
        before = counters.current()
        assert isinstance(before, Counters)
        SqlDirectory(engine, uid_range=(10000, 19999), gid_range=(20000, 29999)).create_user(
            NewUser("alice")
        )
        assert counters.current() == Counters(before.directory + 1, before.throttle)
    finally:
        counters.close()
        engine.dispose()


def test_sqlite_counters_answer_none_for_an_unreadable_file(tmp_path: Path) -> None:
    missing = tmp_path / "not-there.db"
    counters = SqliteCounters(missing)
    assert counters.current() is None
    counters.close()


def test_counter_source_reads_a_sqlite_file_directly_and_anything_else_in_the_pool(
    sqlite_file: Path,
) -> None:
    on_file = make_engine(f"sqlite:///{sqlite_file}")
    in_memory = make_engine("sqlite://")
    try:
        direct = counter_source(on_file, ManualPool())
        assert isinstance(direct, SqliteCounters)
        direct.close()
        assert isinstance(counter_source(in_memory, ManualPool()), PooledCounters)
    finally:
        on_file.dispose()
        in_memory.dispose()


# ------------------------------------------------------------------ split_keyed


def test_the_name_equality_is_taken_out_of_a_nested_conjunction() -> None:
    gid = FieldEquals("gid_number", 20000)
    mail = FieldPresent("mail")
    pred = AllOf((gid, AllOf((FieldEquals("name", "Alice"), mail))))
    assert split_keyed(pred, ("name",)) == KeyedLookup("name", "Alice", AllOf((gid, mail)))


def test_a_lone_name_equality_leaves_an_empty_conjunction() -> None:
    assert split_keyed(FieldEquals("name", "bob"), ("name",)) == KeyedLookup(
        "name", "bob", AllOf(())
    )


def test_the_first_name_test_is_taken_and_the_others_stay_in_the_rest() -> None:
    pred = AllOf((FieldEquals("name", "a"), FieldEquals("name", "b")))
    assert split_keyed(pred, ("name",)) == KeyedLookup(
        "name", "a", AllOf((FieldEquals("name", "b"),))
    )


@pytest.mark.parametrize(
    "pred",
    [
        AllOf((FieldEquals("name", "alice", case_exact=True), FieldPresent("mail"))),
        AllOf((FieldEquals("name", 10000), FieldPresent("mail"))),
        AllOf((FieldEquals("name", "al\x00ice"), FieldPresent("mail"))),
        AllOf((FieldEquals("mail", "alice@example.org"), FieldPresent("name"))),
        AnyOf((FieldEquals("name", "alice"), FieldEquals("name", "bob"))),
        Negation(FieldEquals("name", "alice")),
        AllOf((Negation(FieldEquals("name", "alice")),)),
        AllOf((AnyOf((FieldEquals("name", "alice"),)), FieldPresent("mail"))),
    ],
    ids=[
        "case-exact",
        "not-a-string",
        "nul",
        "another-field",
        "disjunction",
        "negation",
        "negation-inside",
        "inside-a-disjunction",
    ],
)
def test_what_is_not_a_plain_case_insensitive_name_equality_is_left_alone(pred: Any) -> None:
    assert split_keyed(pred, ("name", "member")) is None


def test_a_member_test_is_taken_out_for_groups_with_its_viewer() -> None:
    gid = FieldPresent("gid_number")
    pred = AllOf((gid, HasMember("Bob", visible_to="sssd")))
    assert split_keyed(pred, ("name", "member")) == KeyedLookup(
        "member", "Bob", AllOf((gid,)), "sssd"
    )
    assert split_keyed(pred, ("name",)) is None  # accounts have no member test
    assert split_keyed(HasMember("bob\x00"), ("member",)) is None


def test_a_name_equality_is_not_taken_when_only_members_are_asked_for() -> None:
    assert split_keyed(AllOf((FieldEquals("name", "ops"),)), ("member",)) is None


# ------------------------------------------------------------------ TokenVerifier

COST = 4
THREADS = 8


class SlowCountingCheckpw:
    """bcrypt.checkpw, counted, and slow enough that concurrent callers overlap."""

    def __init__(self, delay: float) -> None:
        self.calls = 0
        self._delay = delay
        self._lock = threading.Lock()
        self._real = bcrypt.checkpw

    def __call__(self, password: bytes, hashed: bytes) -> bool:
        with self._lock:
            self.calls += 1
        time.sleep(self._delay)
        return self._real(password, hashed)


@pytest.fixture
def slow_checkpw(monkeypatch: pytest.MonkeyPatch) -> SlowCountingCheckpw:
    counter = SlowCountingCheckpw(0.3)
    monkeypatch.setattr("ldapsrv.auth.tokens.bcrypt.checkpw", counter)
    return counter


def token_row() -> tuple[str, TokenRecord]:
    issued = issue_token(COST, None)
    record = FakeTokenStore().create_token(
        new_token(lookup_id=issued.lookup_id, secret_hash=issued.secret_hash)
    )
    return issued.value, record


def wrong_secret(value: str) -> bytes:
    last = "A" if value[-1] != "A" else "B"
    return (value[:-1] + last).encode()


def verify_concurrently(
    verifier: TokenVerifier, presented: bytes, record: TokenRecord, threads: int = THREADS
) -> list[bool]:
    start = threading.Barrier(threads)
    results: list[bool] = []
    lock = threading.Lock()

    def check() -> None:
        start.wait(timeout=10)
        ok = verifier.verify(presented, record)
        with lock:
            results.append(ok)

    workers = [threading.Thread(target=check) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
        assert not worker.is_alive(), "a verification hung"
    return results


def test_concurrent_checks_of_one_value_share_a_single_bcrypt(
    slow_checkpw: SlowCountingCheckpw,
) -> None:
    value, record = token_row()
    verifier = TokenVerifier(COST)
    results = verify_concurrently(verifier, value.encode(), record)
    assert results == [True] * THREADS
    assert slow_checkpw.calls == 1
    assert verifier.verify(value.encode(), record)  # remembered now: no bcrypt
    assert slow_checkpw.calls == 1


def test_concurrent_wrong_values_each_pay_their_own_bcrypt(
    slow_checkpw: SlowCountingCheckpw,
) -> None:
    value, record = token_row()
    verifier = TokenVerifier(COST)
    results = verify_concurrently(verifier, wrong_secret(value), record)
    assert results == [False] * THREADS
    assert slow_checkpw.calls == THREADS
    assert verifier.cached_entries() == 0


def test_a_wrong_value_pays_a_bcrypt_even_after_the_right_one_is_remembered(
    slow_checkpw: SlowCountingCheckpw,
) -> None:
    value, record = token_row()
    verifier = TokenVerifier(COST)
    assert verifier.verify(value.encode(), record)
    assert slow_checkpw.calls == 1
    assert not verifier.verify(wrong_secret(value), record)
    assert slow_checkpw.calls == 2


def test_sqlite_counters_between_commits_answer_from_the_wal_header_without_a_query(
    sqlite_file: Path,
) -> None:
    counters = SqliteCounters(sqlite_file)
    try:
        assert counters.current() == Counters(0, 0)
        assert counters.current() == Counters(0, 0)  # the header is now watched
        queries: list[str] = []
        conn = counters._conn
        assert conn is not None
        conn.set_trace_callback(queries.append)
        assert counters.current() == Counters(0, 0)
        assert queries == []
        bump_directory(sqlite_file)
        assert counters.current() == Counters(1, 0)
        assert len(queries) == 1
        assert counters.current() == Counters(1, 0)
        assert len(queries) == 1
    finally:
        counters.close()


def test_sqlite_counters_see_every_commit_of_a_busy_writer(sqlite_file: Path) -> None:
    """A writer commits while the reader looks: each look is at least as new as
    the last commit that finished before it."""
    counters = SqliteCounters(sqlite_file)
    done = threading.Event()
    committed = [0]

    def write() -> None:
        for _ in range(200):
            bump_directory(sqlite_file)
            committed[0] += 1
        done.set()

    writer = threading.Thread(target=write)
    try:
        writer.start()
        while not done.is_set():
            before = committed[0]
            now = counters.current()
            assert now is None or now.directory >= before
        writer.join()
        assert counters.current() == Counters(200, 0)
    finally:
        counters.close()


def test_sqlite_counters_of_a_rollback_journal_database_read_every_time(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    upgrade(f"sqlite:///{path}")
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = DELETE")
    conn.close()
    counters = SqliteCounters(path)
    try:
        assert counters.current() == Counters(0, 0)
        assert counters._header is None
        bump_directory(path)
        assert counters.current() == Counters(1, 0)
    finally:
        counters.close()
