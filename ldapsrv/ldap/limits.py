"""Per-connection and per-process limits: who may connect, and who is closed.

Three jobs, each with its own small class, none doing I/O on its own:

- :class:`ConnectionTracker` admits or refuses a new connection against the
  total and per-address caps, logs a refusal at most once per address and
  interval (a flood must not become a log flood), and knows every live
  connection so that a shutdown can drain them.
- :class:`ConnectionWatch` closes a connection that stopped talking: no
  complete request and no progress on its replies for ``idle_timeout``, or a
  request whose first byte arrived ``pdu_timeout`` ago and is still incomplete.
- :class:`IdentityLimits` maps an account name to its own search size and time
  limits (``[limits.identity_limits.NAME]``).

Everything is read from the current settings when it is needed, so a reload
(SIGHUP) applies to connections that are already open.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from twisted.internet.defer import Deferred

log = logging.getLogger("ldapsrv.limits")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: A refused address is logged again after this many seconds at the earliest.
REFUSAL_LOG_INTERVAL = 60.0


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """The ``[limits]`` settings about connections; 0 means "no limit" for each."""

    max_connections: int = 4096
    max_connections_per_address: int = 256
    per_address_exempt: tuple[Network, ...] = ()
    max_outstanding_operations: int = 64
    idle_timeout: float = 300.0
    pdu_timeout: float = 30.0

    def exempt(self, host: str | None) -> bool:
        """Whether ``host`` escapes the per-address cap (``per_address_exempt``)."""
        if host is None or not self.per_address_exempt:
            return False
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self.per_address_exempt)


@dataclass(frozen=True, slots=True)
class SearchLimit:
    """One identity's own search limits (0 = no limit), replacing ``[limits]``'s."""

    size_limit: int
    time_limit: int


@dataclass(frozen=True, slots=True)
class IdentityLimits:
    """Account name (any case) -> its own search limits."""

    by_name: tuple[tuple[str, SearchLimit], ...] = ()
    _index: dict[str, SearchLimit] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", {n.lower(): v for n, v in self.by_name})

    @classmethod
    def of(cls, mapping: Mapping[str, SearchLimit]) -> IdentityLimits:
        return cls(tuple(sorted(mapping.items())))

    def get(self, name: str | None) -> SearchLimit | None:
        return None if name is None else self._index.get(name.lower())


class TrackedConnection(Protocol):
    """What the tracker needs from a connection."""

    peer_host: str | None

    def begin_shutdown(self) -> None:
        """Finish the operations in flight, then say goodbye and close."""

    def force_close(self) -> None:
        """Say goodbye now, abandoning whatever is in flight."""


class ConnectionTracker:
    """Counts live connections (total and per address) and admits new ones."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._live: set[TrackedConnection] = set()
        self._per_address: dict[str | None, int] = {}
        self._last_refusal_log: dict[tuple[str | None, str], float] = {}
        self._emptied: list[Deferred[None]] = []

    def __len__(self) -> int:
        return len(self._live)

    @property
    def live(self) -> frozenset[TrackedConnection]:
        return frozenset(self._live)

    def count(self, host: str | None) -> int:
        return self._per_address.get(host, 0)

    def admit(self, conn: TrackedConnection, limits: ConnectionLimits) -> str | None:
        """Register ``conn``; or return why it is refused (and do not register it)."""
        host = conn.peer_host
        reason = None
        if limits.max_connections and len(self._live) >= limits.max_connections:
            reason = f"the server has reached its limit of {limits.max_connections} connections"
        elif (
            limits.max_connections_per_address
            and self.count(host) >= limits.max_connections_per_address
            and not limits.exempt(host)
        ):
            reason = (
                f"too many connections from {host} "
                f"(limit {limits.max_connections_per_address} per address)"
            )
        if reason is not None:
            self._log_refusal(host, reason)
            return reason
        self._live.add(conn)
        self._per_address[host] = self.count(host) + 1
        return None

    def release(self, conn: TrackedConnection) -> None:
        if conn not in self._live:
            return
        self._live.discard(conn)
        host = conn.peer_host
        left = self.count(host) - 1
        if left > 0:
            self._per_address[host] = left
        else:
            self._per_address.pop(host, None)
        if not self._live:
            emptied, self._emptied = self._emptied, []
            for d in emptied:
                d.callback(None)

    def _log_refusal(self, host: str | None, reason: str) -> None:
        now = self._clock()
        key = (host, reason)
        last = self._last_refusal_log.get(key)
        if last is not None and now - last < REFUSAL_LOG_INTERVAL:
            return
        if len(self._last_refusal_log) > 10_000:  # forget old addresses, bounded memory
            self._last_refusal_log = {
                k: t for k, t in self._last_refusal_log.items() if now - t < REFUSAL_LOG_INTERVAL
            }
        self._last_refusal_log[key] = now
        log.warning(
            "refusing connections from %s: %s (logged once per %g s)",
            host,
            reason,
            REFUSAL_LOG_INTERVAL,
        )

    def shutdown(self, reactor: Any, grace: float) -> Deferred[None]:
        """Let every connection finish what it is doing within ``grace`` seconds,
        then close the rest; fires when all are gone (or 5 s after the forced close)."""
        done: Deferred[None] = Deferred()
        if not self._live:
            done.callback(None)
            return done
        log.info("shutting down: %d connection(s) get up to %g s to finish", len(self._live), grace)
        self._emptied.append(done)
        for conn in list(self._live):
            conn.begin_shutdown()

        def force() -> None:
            if done.called:
                return
            log.warning("grace period over: closing %d connection(s)", len(self._live))
            for conn in list(self._live):
                conn.force_close()
            reactor.callLater(5.0, give_up)

        def give_up() -> None:
            if not done.called:
                self._emptied.remove(done)
                done.callback(None)

        timer = reactor.callLater(grace, force)
        done.addBoth(lambda result: timer.cancel() if timer.active() else None)
        return done


class WatchedConnection(Protocol):
    """What the watch asks a connection, and tells it."""

    def is_busy(self) -> bool:
        """True while the server itself is working for the client (not idle)."""

    def idle_expired(self, seconds: float) -> None: ...

    def pdu_expired(self, seconds: float) -> None: ...


class ConnectionWatch:
    """One timer per connection for its idle and incomplete-request deadlines.

    The timer is not reset on every request: it fires at the earliest deadline it
    knew of, looks at the latest activity and sleeps again, so a busy connection
    costs no timer churn.
    """

    def __init__(
        self,
        clock: Any,  # IReactorTime
        limits: Callable[[], ConnectionLimits],
        conn: WatchedConnection,
    ) -> None:
        self._clock = clock
        self._limits = limits
        self._conn = conn
        self._last_activity: float = clock.seconds()
        self._partial_since: float | None = None
        self._call: Any = None
        self._schedule()

    def activity(self) -> None:
        """A complete request arrived, an operation finished or replies drained."""
        self._last_activity = self._clock.seconds()

    def partial(self, pending: bool, fresh: bool) -> None:
        """Whether part of a request is buffered; ``fresh``: a new request began."""
        if not pending:
            self._partial_since = None
            return
        if fresh or self._partial_since is None:
            self._partial_since = self._clock.seconds()
            self._schedule()

    def stop(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def _deadlines(self) -> tuple[float | None, float | None]:
        limits = self._limits()
        idle = self._last_activity + limits.idle_timeout if limits.idle_timeout else None
        pdu = (
            self._partial_since + limits.pdu_timeout
            if limits.pdu_timeout and self._partial_since is not None
            else None
        )
        return idle, pdu

    def _schedule(self) -> None:
        idle, pdu = self._deadlines()
        candidates = [t for t in (idle, pdu) if t is not None]
        if not candidates:
            # Both off (they may be switched on by a reload): look again later.
            candidates = [self._clock.seconds() + 60.0]
        when = min(candidates)
        delay = max(0.0, when - self._clock.seconds())
        if self._call is not None and self._call.active():
            if self._call.getTime() <= when:
                return
            self._call.cancel()
        self._call = self._clock.callLater(delay, self._check)

    def _check(self) -> None:
        self._call = None
        now = self._clock.seconds()
        idle, pdu = self._deadlines()
        limits = self._limits()
        if pdu is not None and now >= pdu:
            self._conn.pdu_expired(limits.pdu_timeout)
            return
        if idle is not None and now >= idle:
            if not self._conn.is_busy():
                self._conn.idle_expired(limits.idle_timeout)
                return
            self._last_activity = now  # working for the client is not idleness
        self._schedule()


def parse_networks(key: str, values: Iterable[object]) -> tuple[Network, ...]:
    """``["127.0.0.0/8", "::1"]`` -> networks; ValueError naming ``key`` otherwise."""
    networks = []
    for value in values:
        if not isinstance(value, str):
            raise ValueError(f'{key}: expected networks such as "10.0.0.0/8", got {value!r}')
        try:
            networks.append(ipaddress.ip_network(value, strict=False))
        except ValueError as exc:
            raise ValueError(f"{key}: {exc}") from None
    return tuple(networks)
