"""Running a search: plan, then stream entries batch by batch from the store.

Entries are read with keyset pagination (``id > last``, ``ORDER BY id``) in
batches, each batch in the thread pool, so a search over 100,000 entries never
holds them all and never runs SQL on the reactor thread. The position between
batches is a ``Cursor``, which is also what a paged-results cookie stands for.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from twisted.internet.defer import Deferred

from ldapsrv.blocking import Blocking
from ldapsrv.directory import predicates as p
from ldapsrv.directory.dit import Dit, Kind, SearchPlan, StaticEntry, StoredEntries
from ldapsrv.directory.dn import parse_dn
from ldapsrv.directory.entries import Entry, Renderer, static_attribute_map
from ldapsrv.directory.filtering import FilterResolver, evaluate
from ldapsrv.directory.filters import Filter
from ldapsrv.directory.ports import DirectoryReader
from ldapsrv.directory.records import GroupRecord, ServiceAccountRecord, UserRecord
from ldapsrv.directory.schema import Schema
from ldapsrv.directory.visibility import Viewer


@dataclass(slots=True)
class Cursor:
    """Where a search stands: the next source, and the last id sent from it."""

    source: int = 0
    after_id: int = 0
    returned: int = 0


class Stop(Enum):
    DONE = "done"  # every matching entry was sent
    LIMIT = "limit"  # stopped at max_entries with more matching entries left
    TIME = "time"  # the deadline passed
    CANCELLED = "cancelled"  # abandoned or the connection went away


@dataclass(slots=True)
class PreparedSearch:
    plan: SearchPlan
    filter: Filter
    predicates: dict[Kind, p.Predicate]
    renderer: Renderer
    visible_to: str | None = None


class SearchEngine:
    def __init__(
        self,
        dit: Dit,
        schema: Schema,
        reader: DirectoryReader,
        blocking: Blocking,
        batch_size: int,
        quick: Callable[[Kind, p.Predicate, str | None], bool] | None = None,
    ) -> None:
        self.dit = dit
        self.schema = schema
        self.resolver = FilterResolver(schema, dit)
        self.reader = reader
        self.blocking = blocking
        self.batch_size = batch_size
        #: Reads cheap and non-blocking enough to run on the calling (reactor) thread:
        #: a hop to the pool and back costs more than they do, and buys nothing under
        #: the GIL. None: every read goes to the pool.
        self.quick = quick

    def prepare(
        self, plan: SearchPlan, flt: Filter, renderer: Renderer, viewer: Viewer
    ) -> PreparedSearch:
        kinds = {s.kind for s in plan.sources if isinstance(s, StoredEntries)}
        kinds.update(leaf.kind for leaf in plan.leaves)
        predicates = {k: viewer.restrict(k, self.resolver.resolve(flt, k)) for k in kinds}
        return PreparedSearch(plan, flt, predicates, renderer, viewer.visible_to)

    async def stream(
        self,
        search: PreparedSearch,
        cursor: Cursor,
        max_entries: int | None,
        emit: Callable[[Entry], None],
        cancelled: Callable[[], bool],
        deadline: float | None,
        writable: Callable[[], Deferred[None] | None] | None = None,
    ) -> Stop:
        """Send entries from ``cursor`` on, advancing it. With ``max_entries``,
        stop after that many and report LIMIT only if another entry matches.

        ``writable`` is the back-pressure gate: before each entry it returns None
        when the client keeps up, or a Deferred to wait for until it has read."""
        sent = 0
        sources = search.plan.sources
        while cursor.source < len(sources):
            if cancelled():
                return Stop.CANCELLED
            if deadline is not None and time.monotonic() > deadline:
                return Stop.TIME
            source = sources[cursor.source]
            if isinstance(source, StaticEntry):
                if self._static_matches(source, search.filter):
                    if max_entries is not None and sent >= max_entries:
                        return Stop.LIMIT
                    if writable is not None and await held_up(writable, cancelled):
                        return Stop.CANCELLED
                    emit(search.renderer.static(source))
                    sent += 1
                    cursor.returned += 1
                cursor.source += 1
                cursor.after_id = 0
                continue
            want = self.batch_size
            if max_entries is not None:
                want = min(want, max_entries - sent + 1)
            predicate = search.predicates[source.kind]
            if predicate == p.FALSE:
                rows: list[UserRecord] | list[ServiceAccountRecord] | list[GroupRecord] = []
            else:
                rows = await self._fetch(
                    source, predicate, cursor.after_id, want, search.visible_to
                )
            if cancelled():
                return Stop.CANCELLED
            render = search.renderer.for_kind(source.kind)
            for row in rows:
                if max_entries is not None and sent >= max_entries:
                    return Stop.LIMIT
                if writable is not None and await held_up(writable, cancelled):
                    return Stop.CANCELLED
                emit(render(row))
                sent += 1
                cursor.returned += 1
                cursor.after_id = row.id
            if len(rows) < want:
                cursor.source += 1
                cursor.after_id = 0
        return Stop.DONE

    async def exists(self, leaves: tuple[StoredEntries, ...], viewer: Viewer) -> bool:
        """Whether any of these entries exists and may be seen."""
        for leaf in leaves:
            predicate = viewer.restrict(leaf.kind, p.TRUE)
            if predicate != p.FALSE and await self._fetch(leaf, predicate, 0, 1, None):
                return True
        return False

    async def _fetch(
        self,
        source: StoredEntries,
        predicate: p.Predicate,
        after_id: int,
        limit: int,
        visible_to: str | None,
    ) -> list[UserRecord] | list[ServiceAccountRecord] | list[GroupRecord]:
        search = {
            Kind.USER: self.reader.search_users,
            Kind.SERVICE: self.reader.search_service_accounts,
            Kind.GROUP: self.reader.search_groups,
        }[source.kind]
        rows: list[UserRecord] | list[ServiceAccountRecord] | list[GroupRecord]
        if self.quick is not None and self.quick(source.kind, predicate, source.name):
            quick_rows: list[UserRecord] | list[ServiceAccountRecord] | list[GroupRecord]
            quick_rows = search(  # type: ignore[assignment]
                predicate, after_id=after_id, limit=limit, name=source.name, visible_to=visible_to
            )
            return quick_rows
        rows = await self.blocking.run(
            search,  # type: ignore[arg-type]
            predicate,
            after_id=after_id,
            limit=limit,
            name=source.name,
            visible_to=visible_to,
        )
        return rows

    def _static_matches(self, entry: StaticEntry, flt: Filter) -> bool:
        dn_values: dict[str, list[str]] = {}
        for rdn in parse_dn(entry.dn):
            for attr, value in rdn:
                dn_values.setdefault(attr, []).append(value)
        return evaluate(flt, static_attribute_map(entry), self.schema, dn_values) is True


async def held_up(
    writable: Callable[[], Deferred[None] | None], cancelled: Callable[[], bool]
) -> bool:
    """Wait while the client is not reading; True if the search was cancelled meanwhile."""
    waiting = writable()
    if waiting is None:
        return False
    await waiting
    return cancelled()
