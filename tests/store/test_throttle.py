"""Failed-bind counters in the store (``bind_failures``) on every backend: keys,
race-safe increments from two servers at once, windows, lock-outs shared
through the database, status and pruning."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, delete, func, select

from ldapsrv.auth.throttle import (
    BindThrottle,
    FailureCount,
    ThrottleKey,
    ThrottlePolicy,
    throttle_keys,
)
from ldapsrv.store.base import StoreBase
from ldapsrv.store.engine import make_engine
from ldapsrv.store.throttle import BindFailures, key_hash, printable_subject
from ldapsrv.store.throttle_models import bind_failures

T0 = datetime(2024, 6, 1, 12, 0, 0, 250000, tzinfo=UTC)
X = "svc-backup"
A = "203.0.113.7"
B = "198.51.100.20"


class Store(BindFailures, StoreBase):
    """Just the throttle mixin on an engine (SqlDirectory includes it)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._clock = lambda: T0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def store(engine: Engine) -> Iterator[Store]:
    with engine.begin() as conn:
        conn.execute(delete(bind_failures))
    yield Store(engine)


@pytest.fixture
def clock() -> Clock:  # overrides the ticking clock of conftest: time moves when told
    return Clock()


def plus_one(key: ThrottleKey, old: FailureCount | None) -> FailureCount:
    if old is None:
        return FailureCount(1, T0, T0)
    return FailureCount(old.failures + 1, old.first_failure_at, T0, old.locked_until)


# -- the counters ------------------------------------------------------------------------


def test_counts_come_back_for_the_keys_that_have_them(store):
    dn, _, pair = keys = throttle_keys(X, A)
    assert store.bind_failure_counts(keys) == {}
    assert store.record_bind_failures([dn, pair], plus_one) == {
        dn: FailureCount(1, T0, T0),
        pair: FailureCount(1, T0, T0),
    }
    store.record_bind_failures([pair], plus_one)
    counts = store.bind_failure_counts(keys)
    assert counts == {dn: FailureCount(1, T0, T0), pair: FailureCount(2, T0, T0)}
    assert counts[pair].last_failure_at.tzinfo is UTC  # aware UTC, microseconds kept
    assert store.bind_failure_counts([]) == {}


def test_kinds_do_not_share_counters(store):
    # An address that looks like a DN is another key.
    store.record_bind_failures([ThrottleKey("dn", "x", "x")], plus_one)
    assert store.bind_failure_counts([ThrottleKey("address", "x", "x")]) == {}


def test_hostile_bind_dns_are_stored_by_hash_with_a_printable_subject(store, engine):
    nasty = "uid=" + "é" * 5000 + "\x00\x1b[31m\udcff,dc=example"
    key = ThrottleKey("dn", nasty, nasty)
    store.record_bind_failures([key], plus_one)
    assert store.bind_failure_counts([key])[key].failures == 1
    with engine.connect() as conn:
        row = conn.execute(select(bind_failures)).one()
    assert row.key_hash == key_hash(key) and len(row.key_hash) == 64
    assert len(row.subject) == 255 and row.subject.endswith("...")
    assert "\x00" not in row.subject and "\x1b" not in row.subject
    assert printable_subject("a\x00b\udcffc") == "a?b?c"


def test_clear_removes_only_the_given_keys(store):
    dn, address, pair = keys = throttle_keys(X, A)
    store.record_bind_failures(keys, plus_one)
    store.clear_bind_failures([address, pair])
    assert list(store.bind_failure_counts(keys)) == [dn]
    store.clear_bind_failures([])


def test_locked_until_round_trips(store):
    key = throttle_keys(X, A)[2]
    until = T0 + timedelta(minutes=15)
    store.record_bind_failures([key], lambda k, old: FailureCount(10, T0, T0, until))
    assert store.bind_failure_counts([key])[key].locked_until == until


# -- two servers at once -------------------------------------------------------------------


@pytest.mark.parametrize("fresh", [True, False], ids=["first-failure", "existing-rows"])
def test_concurrent_failures_from_two_servers_all_count(shared_database_url, store, fresh):
    """Two engines (two servers), four threads each, failing the same keys at
    the same moment: every failure counts, whether the rows exist yet or not."""
    engines = [make_engine(shared_database_url) for _ in range(2)]
    throttles = [
        BindThrottle(Store(e), ThrottlePolicy(address_lockout_failures=10**6), lambda: T0)
        for e in engines
    ]
    if not fresh:
        throttles[0].failed(X, A)
    threads_per_server, rounds = 4, 10
    start = threading.Barrier(2 * threads_per_server)
    errors: list[BaseException] = []

    def attack(throttle: BindThrottle) -> None:
        try:
            start.wait()
            for _ in range(rounds):
                throttle.failed(X, A)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [
        threading.Thread(target=attack, args=(throttle,))
        for throttle in throttles
        for _ in range(threads_per_server)
    ]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        for e in engines:
            e.dispose()
    assert errors == []
    expected = 2 * threads_per_server * rounds + (0 if fresh else 1)
    counts = store.bind_failure_counts(throttle_keys(X, A))
    assert sorted(c.failures for c in counts.values()) == [expected] * 3
    with store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(bind_failures)).scalar() == 3


def test_a_lockout_set_by_one_server_is_enforced_by_the_other(shared_database_url, store, clock):
    other_engine = make_engine(shared_database_url)
    try:
        one = BindThrottle(store, ThrottlePolicy(), clock)
        two = BindThrottle(Store(other_engine), ThrottlePolicy(), clock)
        for n in range(10):
            (one if n % 2 else two).failed(X, A)
        decision = two.before(X, A)
        assert decision.refuse and decision.locked_until == T0 + timedelta(minutes=15)
        assert not two.before(X, B).refuse
        # A success on one server clears what the other sees.
        one.succeeded("alice", A)
        assert two.before("alice", A) == one.before("alice", A)
    finally:
        other_engine.dispose()


# -- the policy on a real database ---------------------------------------------------------


def test_counters_reset_after_the_window_and_lockouts_end(store, clock):
    throttle = BindThrottle(store, ThrottlePolicy(), clock)
    delays = [throttle.failed(X, A) for _ in range(10)]
    assert delays == [0, 0, 0, 0, 0, 0.5, 1, 2, 4, 8]
    assert throttle.before(X, A).refuse
    assert not throttle.before(X, B).refuse
    clock.now += timedelta(minutes=15)
    assert not throttle.before(X, A).refuse
    assert throttle.failed(X, A) == 0
    counts = store.bind_failure_counts(throttle_keys(X, A))
    assert {c.failures for c in counts.values()} == {1}
    assert {c.first_failure_at for c in counts.values()} == {clock.now}


def test_success_clears_pair_and_address_but_keeps_the_dn(store, clock):
    throttle = BindThrottle(store, ThrottlePolicy(), clock)
    for _ in range(3):
        throttle.failed(X, A)
    decision = throttle.before(X, A)
    assert decision.pending
    throttle.succeeded(X, A, decision)
    dn = throttle_keys(X, A)[0]
    assert list(store.bind_failure_counts(throttle_keys(X, A))) == [dn]


def test_status_lists_locked_and_delayed_keys(store, clock):
    throttle = BindThrottle(store, ThrottlePolicy(), clock)
    for _ in range(10):
        throttle.failed(X, A)
    clock.now += timedelta(seconds=1)
    for _ in range(6):
        throttle.failed("alice", B)
    throttle.failed("carol", "192.0.2.1")  # free: not shown
    shown = [(e.kind, e.subject, e.failures, e.locked, e.delay) for e in throttle.status()]
    assert shown == [
        ("pair", f"{X} from {A}", 10, True, 8.0),
        ("address", A, 10, False, 8.0),
        ("address", B, 6, False, 0.5),
        ("pair", f"alice from {B}", 6, False, 0.5),
    ]
    later = clock.now + timedelta(minutes=15)
    assert throttle.status(later) == []


def test_active_failures_are_the_most_recent_first_and_limited(store):
    for n in range(5):
        at = T0 + timedelta(seconds=n)
        key = ThrottleKey("address", f"192.0.2.{n}", f"192.0.2.{n}")
        store.record_bind_failures([key], lambda k, old, at=at: FailureCount(1, at, at))
    listed = store.active_bind_failures(now=T0, since=T0, limit=3)
    assert [item.subject for item in listed] == ["192.0.2.4", "192.0.2.3", "192.0.2.2"]
    # A lock-out keeps an otherwise expired key listed.
    locked = ThrottleKey("pair", "x\x00y", "x from y")
    until = T0 + timedelta(hours=1)
    store.record_bind_failures([locked], lambda k, old: FailureCount(10, T0, T0, until))
    listed = store.active_bind_failures(
        now=T0 + timedelta(minutes=30), since=T0 + timedelta(minutes=15), limit=10
    )
    assert [item.subject for item in listed] == ["x from y"]


def test_prune_deletes_expired_counters_but_not_running_lockouts(store):
    old = ThrottleKey("address", "192.0.2.1", "192.0.2.1")
    recent = ThrottleKey("address", "192.0.2.2", "192.0.2.2")
    locked = ThrottleKey("pair", "x\x00192.0.2.3", "x from 192.0.2.3")
    later = T0 + timedelta(minutes=20)
    store.record_bind_failures([old], lambda k, o: FailureCount(3, T0, T0))
    store.record_bind_failures([recent], lambda k, o: FailureCount(3, T0, later))
    store.record_bind_failures(
        [locked], lambda k, o: FailureCount(10, T0, T0, T0 + timedelta(hours=1))
    )
    assert store.prune_bind_failures(T0 + timedelta(minutes=15)) == 1
    assert set(store.bind_failure_counts([old, recent, locked])) == {recent, locked}
