"""Failed-bind throttling policy (ldapsrv.auth.throttle) over an in-memory store."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

import pytest

from ldapsrv.auth.throttle import (
    UNKNOWN_ADDRESS,
    BindThrottle,
    Decision,
    FailureCount,
    ListedFailure,
    ThrottleKey,
    ThrottlePolicy,
    normalise_address,
    throttle_keys,
)

T0 = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
X = "svc-backup"
A = "203.0.113.7"
B = "198.51.100.20"


class MemoryStore:
    """The ThrottleStore protocol in a dict, counting calls."""

    def __init__(self) -> None:
        self.rows: dict[ThrottleKey, FailureCount] = {}
        self.reads = 0
        self.writes = 0
        self.prunes: list[datetime] = []

    def bind_failure_counts(self, keys: Sequence[ThrottleKey]) -> dict[ThrottleKey, FailureCount]:
        self.reads += 1
        return {key: self.rows[key] for key in keys if key in self.rows}

    def record_bind_failures(
        self,
        keys: Sequence[ThrottleKey],
        bump: Callable[[ThrottleKey, FailureCount | None], FailureCount],
    ) -> dict[ThrottleKey, FailureCount]:
        self.writes += 1
        result = {}
        for key in keys:
            self.rows[key] = result[key] = bump(key, self.rows.get(key))
        return result

    def clear_bind_failures(self, keys: Sequence[ThrottleKey]) -> None:
        self.writes += 1
        for key in keys:
            self.rows.pop(key, None)

    def active_bind_failures(
        self, *, now: datetime, since: datetime, limit: int
    ) -> list[ListedFailure]:
        found = [
            ListedFailure(key.kind, key.subject, count)
            for key, count in self.rows.items()
            if count.last_failure_at > since or (count.locked_until or since) > now
        ]
        found.sort(key=lambda item: item.count.last_failure_at, reverse=True)
        return found[:limit]

    def prune_bind_failures(self, before: datetime) -> int:
        self.prunes.append(before)
        return 0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def throttle(store: MemoryStore, clock: Clock) -> BindThrottle:
    return BindThrottle(store, ThrottlePolicy(), clock)


def count(store: MemoryStore, kind: str, dn: str, address: str) -> int:
    dn_key, address_key, pair_key = throttle_keys(dn, address)
    key = {"dn": dn_key, "address": address_key, "pair": pair_key}[kind]
    row = store.rows.get(key)
    return 0 if row is None else row.failures


# -- the policy's arithmetic ---------------------------------------------------------------


def test_free_failures_cost_nothing_then_the_delay_doubles_up_to_the_cap():
    policy = ThrottlePolicy()
    delays = [policy.delay(pair=n, address=n, dn=0) for n in range(1, 13)]
    assert delays == [0, 0, 0, 0, 0, 0.5, 1, 2, 4, 8, 8, 8]


def test_the_larger_of_pair_and_address_counts():
    policy = ThrottlePolicy()
    assert policy.delay(pair=7, address=1, dn=0) == 1.0
    assert policy.delay(pair=1, address=8, dn=0) == 2.0


def test_the_dn_wide_part_is_smaller_and_the_total_is_capped():
    policy = ThrottlePolicy()
    assert [policy.dn_delay(n) for n in (20, 21, 22, 23, 24, 500)] == [0, 0.5, 1, 2, 2, 2]
    # A fresh address guessing a DN under a distributed attack is slowed too.
    assert policy.delay(pair=1, address=1, dn=1000) == 2.0
    assert policy.delay(pair=9, address=9, dn=1000) == 6.0  # 4 + 2
    assert policy.delay(pair=10, address=10, dn=1000) == 8.0  # 8 + 2, capped
    assert policy.delay(pair=10**9, address=10**9, dn=10**9) == 8.0


def test_policy_refuses_nonsense():
    with pytest.raises(ValueError, match="pair_lockout_failures"):
        ThrottlePolicy(pair_lockout_failures=0)
    with pytest.raises(ValueError, match="window"):
        ThrottlePolicy(window=timedelta(0))
    with pytest.raises(ValueError, match="base_delay"):
        ThrottlePolicy(base_delay=-1)


@pytest.mark.parametrize(
    ("given", "key"),
    [
        ("203.0.113.7", "203.0.113.7"),
        (" 203.0.113.7 ", "203.0.113.7"),
        ("::ffff:203.0.113.7", "203.0.113.7"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:bbbb::9", "2001:db8:1:2::/64"),
        ("::1", "::/64"),
        (None, UNKNOWN_ADDRESS),
        ("", UNKNOWN_ADDRESS),
        ("Some-Socket", "some-socket"),
    ],
)
def test_addresses_are_normalised(given, key):
    assert normalise_address(given) == key


def test_keys_are_case_insensitive_and_the_pair_key_is_unambiguous():
    assert throttle_keys(" SVC-Backup ", A) == throttle_keys("svc-backup", A)
    _, _, pair = throttle_keys("a b", A)
    assert pair.key == f"a b\x00{A}"
    assert pair.subject == f"a b from {A}"


# -- delays and lock-outs ------------------------------------------------------------------


def test_failures_are_delayed_exponentially_after_the_free_ones(throttle, clock):
    delays = []
    for _ in range(9):
        assert not throttle.before(X, A).refuse
        delays.append(throttle.failed(X, A))
        clock.advance(seconds=1)
    assert delays == [0, 0, 0, 0, 0, 0.5, 1, 2, 4]


def test_a_pair_locks_out_at_its_threshold_for_the_lockout_only(throttle, clock):
    for _ in range(10):
        throttle.failed(X, A)
        clock.advance(seconds=1)
    decision = throttle.before(X, A)
    assert decision.refuse
    assert f"binds as {X} from {A} locked out until" in decision.reason
    assert "after 10 failed binds" in decision.reason
    assert decision.locked_until == T0 + timedelta(seconds=9, minutes=15)
    # Only that pair: the same address may still try other DNs, other addresses this DN.
    assert not throttle.before("alice", A).refuse
    assert not throttle.before(X, B).refuse
    clock.now = decision.locked_until
    assert not throttle.before(X, A).refuse


def test_an_address_locks_out_whatever_dns_it_tries(throttle, clock):
    for n in range(50):
        assert not throttle.before(f"user{n}", A).refuse
        throttle.failed(f"user{n}", A)
        clock.advance(seconds=1)
    decision = throttle.before("somebody-new", A)
    assert decision.refuse
    assert f"client address {A} locked out" in decision.reason
    assert not throttle.before("somebody-new", B).refuse


def test_ipv6_neighbours_share_an_address_counter(throttle, clock):
    for n in range(50):
        throttle.failed(f"user{n}", f"2001:db8::{n + 1:x}")
    assert throttle.before("x", "2001:db8::ffff").refuse
    assert not throttle.before("x", "2001:db8:0:1::1").refuse


def test_failures_during_a_lockout_do_not_extend_it(throttle, clock, store):
    for _ in range(10):
        throttle.failed(X, A)
    pair = throttle_keys(X, A)[2]
    locked_until = store.rows[pair].locked_until
    assert locked_until == T0 + timedelta(minutes=15)
    # Other servers that had checked before the lock-out record more failures.
    for _ in range(100):
        clock.advance(seconds=5)
        throttle.failed(X, A)
    assert store.rows[pair].failures == 110
    assert store.rows[pair].locked_until == locked_until


def test_an_attacker_never_locks_the_account_out_for_others_nor_forever(throttle, clock, store):
    # 1,000 attempts from A on X, one a second (16.7 minutes), each refused or
    # failed: 10 failures, a 15-minute lock-out, then 10 more.
    refused = failed = 0
    for _ in range(1000):
        if throttle.before(X, A).refuse:
            refused += 1
        else:
            failed += 1
            throttle.failed(X, A)
        clock.advance(seconds=1)
    assert failed == 20 and refused == 980
    assert count(store, "pair", X, A) == 10  # the first ten had left the window
    # The service account's own host has not been failing: it is never refused.
    legit = throttle.before(X, B)
    assert not legit.refuse
    assert not legit.pending  # and its success costs no write
    writes = store.writes
    throttle.succeeded(X, B, legit)
    assert store.writes == writes
    # Once the (second) lock-out has passed, A may try again.
    locked_until = throttle.before(X, A).locked_until
    assert locked_until is not None and locked_until - clock.now < ThrottlePolicy().lockout
    clock.now = locked_until
    assert not throttle.before(X, A).refuse


def test_an_attacker_hammering_the_store_still_cannot_lock_out_forever(throttle, clock):
    # Even when every attempt is recorded as a failure (several servers that all
    # checked before the lock-out), the lock-out ends and others are never refused.
    for _ in range(1000):
        throttle.failed(X, A)
        clock.advance(seconds=0.5)
    assert not throttle.before(X, B).refuse
    clock.advance(minutes=16)
    assert not throttle.before(X, A).refuse


def test_counters_reset_after_a_quiet_window(throttle, clock, store):
    for _ in range(8):
        throttle.failed(X, A)
    clock.advance(minutes=15)
    assert throttle.failed(X, A) == 0
    assert count(store, "pair", X, A) == 1
    assert store.rows[throttle_keys(X, A)[2]].first_failure_at == clock.now


def test_a_counter_still_in_its_window_keeps_growing_and_keeps_its_start(throttle, clock, store):
    throttle.failed(X, A)
    clock.advance(minutes=14)
    throttle.failed(X, A)
    row = store.rows[throttle_keys(X, A)[2]]
    assert (row.failures, row.first_failure_at, row.last_failure_at) == (2, T0, clock.now)


def test_a_relapse_right_after_a_lockout_locks_again_when_the_window_is_longer():
    store, clock = MemoryStore(), Clock()
    policy = ThrottlePolicy(window=timedelta(hours=1), lockout=timedelta(minutes=5))
    throttle = BindThrottle(store, policy, clock)
    for _ in range(10):
        throttle.failed(X, A)
    clock.advance(minutes=5)
    assert not throttle.before(X, A).refuse
    throttle.failed(X, A)
    assert throttle.before(X, A).refuse


def test_a_distributed_attack_on_one_dn_is_slowed_but_not_refused(throttle, clock):
    delays = []
    for n in range(30):
        address = f"192.0.2.{n + 1}"
        assert not throttle.before(X, address).refuse
        delays.append(throttle.failed(X, address))
    assert delays[:20] == [0] * 20
    assert delays[20:24] == [0.5, 1, 2, 2]
    assert not throttle.before(X, "192.0.2.200").refuse


# -- success ---------------------------------------------------------------------------


def test_success_clears_pair_and_address_but_not_the_dn(throttle, store):
    for _ in range(7):
        throttle.failed(X, A)
    decision = throttle.before(X, A)
    assert decision == Decision(refuse=False, pending=True)
    throttle.succeeded(X, A, decision)
    assert count(store, "pair", X, A) == 0
    assert count(store, "address", X, A) == 0
    assert count(store, "dn", X, A) == 7
    assert throttle.failed(X, A) == 0


def test_success_without_a_decision_always_clears(throttle, store):
    throttle.failed(X, A)
    throttle.succeeded(X, A)
    assert count(store, "pair", X, A) == 0


def test_before_is_one_read_and_failed_one_write(throttle, store):
    throttle.before(X, A)
    assert store.reads == 1
    throttle.failed(X, A)
    assert store.writes == 1


# -- status and pruning -------------------------------------------------------------------


def test_status_lists_what_is_delayed_or_locked(throttle, clock):
    for _ in range(10):
        throttle.failed(X, A)  # pair locked, address delayed
    for _ in range(3):
        throttle.failed("alice", B)  # free: not listed
    entries = throttle.status()
    shown = [(e.kind, e.subject, e.failures, e.locked, e.delay) for e in entries]
    assert shown == [
        ("pair", f"{X} from {A}", 10, True, 8.0),
        ("address", A, 10, False, 8.0),
    ]
    assert entries[0].locked_until == T0 + timedelta(minutes=15)
    assert entries[0].first_failure_at == entries[0].last_failure_at == T0
    # The lock-out outlives the counters' window only as long as it lasts.
    clock.advance(minutes=15)
    assert throttle.status() == []


def test_status_shows_a_dn_under_distributed_attack(throttle):
    for n in range(21):
        throttle.failed(X, f"192.0.2.{n + 1}")
    [entry] = throttle.status()
    assert (entry.kind, entry.subject, entry.failures, entry.delay) == ("dn", X, 21, 0.5)


def test_pruning_runs_at_most_once_per_window(throttle, clock, store):
    throttle.failed(X, A)
    assert store.prunes == [T0 - timedelta(minutes=15)]
    clock.advance(minutes=10)
    throttle.failed(X, A)
    assert len(store.prunes) == 1
    clock.advance(minutes=5)
    throttle.failed(X, A)
    assert store.prunes[-1] == clock.now - timedelta(minutes=15)


def test_a_failing_prune_does_not_fail_the_bind(throttle, store, caplog):
    def broken(before: datetime) -> int:
        raise RuntimeError("database went away")

    store.prune_bind_failures = broken  # type: ignore[method-assign]
    assert throttle.failed(X, A) == 0
    assert "could not prune" in caplog.text
