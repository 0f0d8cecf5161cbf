"""Search answers kept as encoded bytes, ready to be sent again.

A cached answer is what the client received for one search request (or one page
of a paged search): each SearchResultEntry as its encoded protocolOp, and the
result that ended it. Only the message ID differs from one answer to the next,
and it lives in the LDAPMessage envelope, outside what is kept.

The key is everything the answer depends on: who asks (the bound account, which
the SQL visibility rules take by name, and whether state attributes are shown),
the base, scope, filter, requested attributes, typesOnly and the effective size
limit; for a page also the page size and the position it starts from. The value
is stamped with the ``directory`` counter read before the search read anything.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

from twisted.internet.defer import Deferred

from ldapsrv.caching.lru import ByteBoundedLRU

ENTRY_OVERHEAD = 64
"""Bytes a kept entry costs beyond its encoding (the bytes object, its slot)."""
ANSWER_OVERHEAD = 512
"""Bytes an answer costs beyond its entries (key, record, LRU slot)."""


@dataclass(frozen=True, slots=True)
class Position:
    """Where a page starts or the next page would start (a search ``Cursor``)."""

    source: int
    after_id: int
    returned: int


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    entries: tuple[bytes, ...]  # encoded SearchResultEntry protocolOps, in order
    code: int
    message: str = ""
    matched: str = ""
    next_page: Position | None = None  # a page with more to come: where it resumes
    size: int = 0  # bytes it holds (as counted against the cache's budget)


class AnswerCapture:
    """Collects a search's entries while they are sent, up to a byte budget."""

    def __init__(self, max_bytes: int) -> None:
        self._max_bytes = max_bytes
        self.entries: list[bytes] | None = []
        self.size = ANSWER_OVERHEAD

    def add(self, encoded: bytes) -> None:
        if self.entries is None:
            return
        self.size += len(encoded) + ENTRY_OVERHEAD
        if self.size > self._max_bytes:
            self.entries = None  # too large to keep: stream it and forget it
        else:
            self.entries.append(encoded)


class SearchResultCache:
    """Answers by key and counter, and who is computing which answer right now.

    When many clients ask the same question at once (a fleet enumerating after a
    change, a login storm for one person), the first one computes the answer and
    the others wait for it (``claim``/``finished``) and replay it, instead of each
    running the same SQL: the waiters read the counter after the first one did
    and found it unchanged, so its answer is as fresh as theirs would be.
    """

    def __init__(self, max_bytes: int) -> None:
        self._lru: ByteBoundedLRU[CachedAnswer] = ByteBoundedLRU(max_bytes)
        self._computing: dict[tuple[Hashable, int], list[Deferred[None]]] = {}

    @property
    def max_answer_bytes(self) -> int:
        return self._lru.max_bytes // 4

    def capture(self) -> AnswerCapture:
        return AnswerCapture(self.max_answer_bytes)

    def get(self, key: Hashable, directory_counter: int) -> CachedAnswer | None:
        return self._lru.get(key, directory_counter)

    def claim(self, key: Hashable, directory_counter: int) -> Deferred[None] | None:
        """None: the caller computes this answer and must call ``finished`` after,
        whatever happens. Otherwise a Deferred that fires when the caller already
        computing it has finished (then ``get`` has the answer, unless it could
        not be kept: compute it then)."""
        waiters = self._computing.get((key, directory_counter))
        if waiters is None:
            self._computing[(key, directory_counter)] = []
            return None
        waiting: Deferred[None] = Deferred()
        waiters.append(waiting)
        return waiting

    def finished(self, key: Hashable, directory_counter: int) -> None:
        for waiting in self._computing.pop((key, directory_counter), []):
            if not waiting.called:  # a waiter that gave up (timed out) is gone
                waiting.callback(None)

    def put(
        self, key: Hashable, directory_counter: int, capture: AnswerCapture, answer: CachedAnswer
    ) -> None:
        if capture.entries is not None:
            self._lru.put(key, directory_counter, answer, capture.size + len(answer.message))

    def stats(self) -> dict[str, int]:
        lru = self._lru
        return {"answers": len(lru), "bytes": lru.bytes, "hits": lru.hits, "misses": lru.misses}
