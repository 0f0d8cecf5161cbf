"""Failed-bind throttling: exponential delays and lock-outs shared through the database.

Three counters move on every failed bind: one for the bind DN, one for the
client address and one for the (DN, address) pair. What they do:

* A failure is answered after a delay that doubles with every failure of the
  pair or of the address beyond ``free_failures`` (whichever is larger), plus a
  smaller DN-wide part so a guessing attack on one DN spread over many
  addresses is slowed too; never more than ``max_delay``.
* A pair that reaches ``pair_lockout_failures``, or an address that reaches
  ``address_lockout_failures`` (whatever DNs it tried), is refused for
  ``lockout`` without its password being checked.
* The DN counter alone never refuses anything: a service account attacked
  from elsewhere still binds from its own host, which has not been failing.
  Refused attempts are not counted, so a lock-out always ends ``lockout`` after
  the failure that set it, however long an attacker keeps trying.
* A counter with no failure for ``window`` starts again from zero. A success
  clears the pair and address counters; the DN counter only decays.

IPv6 clients are counted per /64 (what one host or LAN usually gets): counting
single addresses would let one machine rotate through 2^64 of them.

The counters live in the database (``ThrottleStore``; ``SqlDirectory``
implements it), so every server sharing it sees and enforces the same state.
Every method blocks (SQL): run them in the thread pool, never on the reactor.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal, Protocol

log = logging.getLogger(__name__)

KeyKind = Literal["dn", "address", "pair"]

MAX_COUNT = 1_000_000_000
"""Counters stop here (they are 32-bit INTEGER columns)."""

UNKNOWN_ADDRESS = "unknown"
"""The address key of clients whose address is not known (``address=None``)."""

STATUS_LIMIT = 1000
"""At most this many entries in ``status`` (the most recent first)."""


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class ThrottlePolicy:
    """How failed binds are slowed and refused. Times in seconds unless a timedelta."""

    free_failures: int = 5
    """Failures of a pair or an address answered without delay."""
    base_delay: float = 0.5
    """Delay after the first failure beyond ``free_failures``; doubles with each one."""
    max_delay: float = 8.0
    """No failure waits longer than this."""
    window: timedelta = timedelta(minutes=15)
    """A counter with no failure for this long starts again from zero."""
    address_lockout_failures: int = 50
    """An address with this many failures (any DNs) is refused for ``lockout``."""
    pair_lockout_failures: int = 10
    """A (DN, address) pair with this many failures is refused for ``lockout``."""
    lockout: timedelta = timedelta(minutes=15)
    """How long a lock-out lasts (refused attempts do not extend it)."""
    dn_free_failures: int = 20
    """Failures of one DN (from all addresses) before the DN-wide delay starts."""
    dn_max_delay: float = 2.0
    """Cap of the DN-wide part of the delay."""

    def __post_init__(self) -> None:
        for name in ("free_failures", "dn_free_failures"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        for name in ("address_lockout_failures", "pair_lockout_failures"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        for name in ("base_delay", "max_delay", "dn_max_delay"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0 seconds")
        if self.window <= timedelta(0):
            raise ValueError("window must be positive")
        if self.lockout <= timedelta(0):
            raise ValueError("lockout must be positive")

    def local_delay(self, failures: int) -> float:
        """The delay earned by a pair or address with ``failures`` failures."""
        excess = failures - self.free_failures
        if excess <= 0:
            return 0.0
        return min(self.max_delay, self.base_delay * 2.0 ** min(excess - 1, 60))

    def dn_delay(self, failures: int) -> float:
        """The DN-wide part of the delay for a DN with ``failures`` failures."""
        excess = failures - self.dn_free_failures
        if excess <= 0:
            return 0.0
        return min(self.dn_max_delay, self.max_delay, self.base_delay * 2.0 ** min(excess - 1, 60))

    def delay(self, *, pair: int, address: int, dn: int) -> float:
        """Seconds to wait before answering a failure, given the counts after it."""
        total = self.local_delay(max(pair, address)) + self.dn_delay(dn)
        return min(self.max_delay, total)

    def lock_after(self, kind: KeyKind) -> int | None:
        """The count at which a key of ``kind`` is locked out (None: never)."""
        if kind == "pair":
            return self.pair_lockout_failures
        if kind == "address":
            return self.address_lockout_failures
        return None


@dataclass(frozen=True, slots=True)
class ThrottleKey:
    """One counter: ``key`` is the normalised key (the store indexes its hash),
    ``subject`` what ``ldapsrv status`` shows."""

    kind: KeyKind
    key: str
    subject: str


@dataclass(frozen=True, slots=True)
class FailureCount:
    """A counter as stored."""

    failures: int
    first_failure_at: datetime
    last_failure_at: datetime
    locked_until: datetime | None = None


@dataclass(frozen=True, slots=True)
class ListedFailure:
    """A stored counter with what identifies it, as ``active_bind_failures`` lists it."""

    kind: KeyKind
    subject: str
    count: FailureCount


class ThrottleStore(Protocol):
    """What the throttle needs from the store. Blocking; ``SqlDirectory`` implements it.
    Raises StoreUnavailable when the database cannot answer."""

    def bind_failure_counts(self, keys: Sequence[ThrottleKey]) -> dict[ThrottleKey, FailureCount]:
        """The stored counters among ``keys`` (absent ones are left out): one query."""
        ...

    def record_bind_failures(
        self,
        keys: Sequence[ThrottleKey],
        bump: Callable[[ThrottleKey, FailureCount | None], FailureCount],
    ) -> dict[ThrottleKey, FailureCount]:
        """In one transaction, with the rows locked: replace each key's counter
        by ``bump(key, current)`` and return the new ones. ``bump`` may run
        again if the transaction is retried, so it must be a pure function."""
        ...

    def clear_bind_failures(self, keys: Sequence[ThrottleKey]) -> None:
        """Delete the counters of ``keys``."""
        ...

    def active_bind_failures(
        self, *, now: datetime, since: datetime, limit: int
    ) -> list[ListedFailure]:
        """Counters with a failure after ``since`` or locked beyond ``now``,
        the most recent first, at most ``limit``."""
        ...

    def prune_bind_failures(self, before: datetime) -> int:
        """Delete counters with no failure since ``before`` and no lock beyond it;
        return how many went."""
        ...


@dataclass(frozen=True, slots=True)
class Decision:
    """What ``BindThrottle.before`` says about a bind about to be checked."""

    refuse: bool
    reason: str = ""
    """Why it is refused, for the log (names the address or pair and the end of the lock-out)."""
    locked_until: datetime | None = None
    """When the lock-out that refuses it ends."""
    pending: bool = True
    """False when the pair and the address have no counter: a success then has
    nothing to clear and ``succeeded(..., decision)`` skips the write."""


ALLOW = Decision(refuse=False, pending=False)


@dataclass(frozen=True, slots=True)
class ThrottleEntry:
    """One line of ``ldapsrv status``: a key currently delayed or locked out."""

    kind: KeyKind
    subject: str
    failures: int
    first_failure_at: datetime
    last_failure_at: datetime
    locked_until: datetime | None
    delay: float
    """Seconds its failures are currently answered after (its own share)."""

    @property
    def locked(self) -> bool:
        return self.locked_until is not None


def normalise_dn(dn_key: str) -> str:
    """The DN counter's key: lower-cased, outer spaces stripped. Pass the
    account name the DN resolved to when there is one, so spellings of one DN
    share a counter."""
    return dn_key.strip().lower()


def normalise_address(address: str | None) -> str:
    """The address counter's key: the IPv4 address (also when IPv4-mapped), the
    IPv6 /64 network, or the text itself lower-cased when it is no IP address."""
    if address is None or not address.strip():
        return UNKNOWN_ADDRESS
    text = address.strip()
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return text.lower()
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def throttle_keys(dn_key: str, address: str | None) -> tuple[ThrottleKey, ThrottleKey, ThrottleKey]:
    """The (dn, address, pair) counters a bind of ``dn_key`` from ``address`` moves."""
    dn = normalise_dn(dn_key)
    where = normalise_address(address)
    return (
        ThrottleKey("dn", dn, dn),
        ThrottleKey("address", where, where),
        # NUL never occurs in an address, so the pair key is unambiguous.
        ThrottleKey("pair", f"{dn}\x00{where}", f"{dn} from {where}"),
    )


class BindThrottle:
    """Failed-bind throttling over a ``ThrottleStore``. Blocking: run in the thread pool.

    Per bind: ``before`` (one query); if it refuses, answer without checking
    the password. Otherwise check it, then call ``failed`` (one transaction;
    wait the delay it returns before answering) or ``succeeded``.
    """

    def __init__(
        self,
        store: ThrottleStore,
        policy: ThrottlePolicy | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.policy = policy or ThrottlePolicy()
        self.clock = clock
        self._pruned_at: datetime | None = None
        self._prune_lock = threading.Lock()

    def _now(self) -> datetime:
        return self.clock().astimezone(UTC)

    def _live(self, count: FailureCount | None, now: datetime) -> int:
        """The failures that still count at ``now`` (0 once the window passed)."""
        if count is None or count.last_failure_at <= now - self.policy.window:
            return 0
        return count.failures

    def before(self, dn_key: str, address: str | None) -> Decision:
        """Whether a bind of ``dn_key`` from ``address`` is refused outright."""
        now = self._now()
        _, where, pair = keys = throttle_keys(dn_key, address)
        counts = self.store.bind_failure_counts(keys)
        for key in (where, pair):
            count = counts.get(key)
            if count is not None and count.locked_until is not None and count.locked_until > now:
                what = (
                    f"client address {key.subject}"
                    if key.kind == "address"
                    else f"binds as {pair.subject}"
                )
                until = count.locked_until.strftime("%Y-%m-%dT%H:%M:%SZ")
                return Decision(
                    refuse=True,
                    reason=(f"{what} locked out until {until} after {count.failures} failed binds"),
                    locked_until=count.locked_until,
                )
        if where in counts or pair in counts:
            return Decision(refuse=False)
        return ALLOW

    def _bump(self, key: ThrottleKey, old: FailureCount | None, now: datetime) -> FailureCount:
        live = self._live(old, now)
        locked = old.locked_until if old is not None else None
        if locked is not None and locked <= now:
            locked = None
        failures = min(live + 1, MAX_COUNT)
        first = old.first_failure_at if old is not None and live > 0 else now
        threshold = self.policy.lock_after(key.kind)
        # A lock-out already running is never extended: it ends ``lockout``
        # after the failure that set it, whatever happens meanwhile.
        if locked is None and threshold is not None and failures >= threshold:
            locked = now + self.policy.lockout
        return FailureCount(failures, first, now, locked)

    def failed(self, dn_key: str, address: str | None) -> float:
        """Record a failed bind; return the seconds to wait before answering it."""
        now = self._now()
        dn, where, pair = keys = throttle_keys(dn_key, address)
        counts = self.store.record_bind_failures(keys, lambda k, old: self._bump(k, old, now))
        self._maybe_prune(now)
        return self.policy.delay(
            pair=counts[pair].failures, address=counts[where].failures, dn=counts[dn].failures
        )

    def succeeded(self, dn_key: str, address: str | None, decision: Decision | None = None) -> None:
        """Clear the pair and address counters after a successful bind.

        Pass the ``Decision`` that ``before`` returned for this bind: when it
        saw no counters (the usual case), nothing is written."""
        if decision is not None and not decision.pending:
            return
        _, where, pair = throttle_keys(dn_key, address)
        self.store.clear_bind_failures((where, pair))

    def status(self, now: datetime | None = None) -> list[ThrottleEntry]:
        """The keys currently delayed or locked out: locked ones first, then by failures."""
        now = (now or self._now()).astimezone(UTC)
        listed = self.store.active_bind_failures(
            now=now, since=now - self.policy.window, limit=STATUS_LIMIT
        )
        entries = []
        for item in listed:
            count = item.count
            live = self._live(count, now)
            locked = count.locked_until if count.locked_until and count.locked_until > now else None
            if item.kind == "dn":
                delay = self.policy.dn_delay(live)
            else:
                delay = self.policy.local_delay(live)
            if locked is None and delay == 0.0:
                continue
            entries.append(
                ThrottleEntry(
                    kind=item.kind,
                    subject=item.subject,
                    failures=count.failures,
                    first_failure_at=count.first_failure_at,
                    last_failure_at=count.last_failure_at,
                    locked_until=locked,
                    delay=delay,
                )
            )
        entries.sort(key=lambda e: (e.locked_until is None, -e.failures, e.kind, e.subject))
        return entries

    def prune(self, now: datetime | None = None) -> int:
        """Delete counters that no longer count (expired and not locked)."""
        now = (now or self._now()).astimezone(UTC)
        return self.store.prune_bind_failures(now - self.policy.window)

    def _maybe_prune(self, now: datetime) -> None:
        # At most once per window per process, from a failure (the only thing
        # that adds rows); a failed prune is retried at the next window.
        with self._prune_lock:
            if self._pruned_at is not None and now - self._pruned_at < self.policy.window:
                return
            self._pruned_at = now
        try:
            self.prune(now)
        except Exception:  # pruning is housekeeping, never a bind error
            log.warning("could not prune expired bind-failure counters", exc_info=True)
