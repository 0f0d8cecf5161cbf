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
    def __init__(self, max_bytes: int) -> None:
        self._lru: ByteBoundedLRU[CachedAnswer] = ByteBoundedLRU(max_bytes)

    @property
    def max_answer_bytes(self) -> int:
        return self._lru.max_bytes // 4

    def capture(self) -> AnswerCapture:
        return AnswerCapture(self.max_answer_bytes)

    def get(self, key: Hashable, directory_counter: int) -> CachedAnswer | None:
        return self._lru.get(key, directory_counter)

    def put(
        self, key: Hashable, directory_counter: int, capture: AnswerCapture, answer: CachedAnswer
    ) -> None:
        if capture.entries is not None:
            self._lru.put(key, directory_counter, answer, capture.size + len(answer.message))

    def stats(self) -> dict[str, int]:
        lru = self._lru
        return {"answers": len(lru), "bytes": lru.bytes, "hits": lru.hits, "misses": lru.misses}
