"""What a load generator connection does: exchanges, operations, workloads.

An ``Exchange`` is one request with its expected answer (result code and, for a
search, the number of entries); an ``Op`` is what one latency sample measures
(one or more exchanges, optionally on a fresh connection); a ``Workload`` is the
setup every connection runs once plus the operations it cycles through.
All requests are encoded when the workload is built, never in the hot loop,
except the follow-up pages of a paged search, which carry the server's cookie.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.protocol import SUCCESS, search_request


@dataclass(frozen=True, slots=True)
class PagedSearch:
    """How to ask for the next page of a paged search (the cookie comes from the server)."""

    base: str
    scope: int
    filter: bytes
    attributes: tuple[str, ...]
    size: int

    def next_page(self, message_id: int, cookie: bytes) -> bytes:
        return search_request(
            message_id,
            self.base,
            self.scope,
            self.filter,
            self.attributes,
            page_size=self.size,
            cookie=cookie,
        )


@dataclass(frozen=True, slots=True)
class Exchange:
    """One request and what must come back: ``code`` in the final result and, for a
    search (``entries`` not None), exactly that many entries (over every page)."""

    request: bytes
    message_id: int
    entries: int | None = None
    code: int = SUCCESS
    paged: PagedSearch | None = None


@dataclass(frozen=True, slots=True)
class Op:
    """One measured operation. ``fresh_connection``: connect first, unbind and close
    after (connection churn); otherwise it runs on the connection's session."""

    exchanges: tuple[Exchange, ...]
    fresh_connection: bool = False


@dataclass(frozen=True)
class Workload:
    name: str
    ops: tuple[Op, ...]
    setup: tuple[Exchange, ...] = ()
    #: An unbind to send before closing a fresh connection.
    closing: bytes = b""
    notes: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.ops:
            raise ValueError(f"workload {self.name} has no operations")
