"""Warm token binds answered without the database round trip.

A service account's hosts bind with the same token many times a second. After
the full check accepted a token (the token row read, bcrypt or the verifier's
cache, expiry, the account enabled, the failed-bind counters of the address
clean, the permissions loaded), the decision is kept under

    (account name, client address, HMAC-SHA256(process key, presented value))

stamped with both change counters read *before* that check. It is used again
only while both counters are unchanged (no account, group, grant or token was
written anywhere, and no bind failed anywhere) and until ``reusable_until``:
the token's expiry, or when its last use is due to be written again. Anything
else goes through the full check. Refusals are never kept. People's passwords
are never kept either: an HMAC of a low-entropy password held in memory would be
cheaper to attack than its bcrypt hash, whereas a token is random.

The HMAC key is random per process and never leaves it. Reactor thread only.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from ldapsrv.auth.binding import BindOutcome
from ldapsrv.store.changes import Counters

DEFAULT_MAX_ENTRIES = 10_000


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class _Kept:
    counters: Counters
    outcome: BindOutcome
    until: float  # POSIX seconds


class BindCache:
    def __init__(
        self,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._max_entries = max_entries
        # POSIX seconds now: time.time() itself unless a test brought its own clock
        # (datetime.now() costs more than the rest of a kept bind's lookup).
        self._seconds: Callable[[], float] = (
            time.time if clock is utcnow else (lambda: clock().timestamp())
        )
        self._key = secrets.token_bytes(32)
        self._kept: OrderedDict[tuple[str, str, bytes], _Kept] = OrderedDict()
        self.hits = 0

    def _cache_key(
        self, name: str, address: str | None, presented: bytes
    ) -> tuple[str, str, bytes]:
        digest = hmac.digest(self._key, presented, "sha256")  # one-shot: no HMAC object
        return (name.casefold(), address or "", digest)

    def get(
        self, name: str, address: str | None, presented: bytes, counters: Counters
    ) -> BindOutcome | None:
        key = self._cache_key(name, address, presented)
        kept = self._kept.get(key)
        if kept is None:
            return None
        if kept.counters != counters or self._seconds() >= kept.until:
            del self._kept[key]
            return None
        self._kept.move_to_end(key)
        self.hits += 1
        return kept.outcome

    def put(
        self,
        name: str,
        address: str | None,
        presented: bytes,
        counters: Counters,
        outcome: BindOutcome,
    ) -> None:
        """Keep an accepted decision the authenticator marked reusable."""
        if not outcome.accepted or outcome.reusable_until is None:
            return
        key = self._cache_key(name, address, presented)
        self._kept[key] = _Kept(counters, outcome, outcome.reusable_until.timestamp())
        self._kept.move_to_end(key)
        while len(self._kept) > self._max_entries:
            self._kept.popitem(last=False)

    def __len__(self) -> int:
        return len(self._kept)
