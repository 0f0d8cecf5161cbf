"""Request-rate limits: one token bucket per client address and per account.

In memory and per process (unlike the failed-authentication counters of
``ldapsrv.auth.throttle``, which live in the database): a rate limit protects
this server's CPU and thread pool, which is a per-process resource. A bucket
holds ``per_minute`` requests and refills at ``per_minute`` a minute, so a
quiet client may send a burst of a minute's worth at once. Runs on the reactor
thread only.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

MAX_KEYS = 100_000
"""Buckets kept at most; the least recently used go first (a full bucket is
the same as a forgotten one, so forgetting is safe for quiet clients)."""


class RateLimiter:
    def __init__(
        self, per_minute: int, clock: Callable[[], float], max_keys: int = MAX_KEYS
    ) -> None:
        if per_minute < 1:
            raise ValueError("per_minute must be at least 1")
        self._capacity = float(per_minute)
        self._rate = per_minute / 60.0  # tokens a second
        self._clock = clock
        self._max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, key: str) -> float | None:
        """Spend one request of ``key``: None when allowed, else the seconds to
        wait until one is available again (nothing is spent then)."""
        now = self._clock()
        tokens, last = self._buckets.get(key, (self._capacity, now))
        tokens = min(self._capacity, tokens + (now - last) * self._rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            self._buckets.move_to_end(key)
            return (1.0 - tokens) / self._rate
        self._buckets[key] = (tokens - 1.0, now)
        self._buckets.move_to_end(key)
        while len(self._buckets) > self._max_keys:
            self._buckets.popitem(last=False)
        return None
