"""The LDAP connection with its search cache: what is answered from memory, and when not."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from fakes import FakeDirectory
from ldaptor.ldapfilter import parseFilter
from ldaptor.protocols import pureldap
from test_protocol import (
    ALICE_DN,
    USERS,
    Client,
    all_user_dns,
    dns,
    make_context,
    make_directory,
    paged,
    paged_cookie,
)
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from ldapsrv.caching.search_results import SearchResultCache
from ldapsrv.ldap.search import SearchEngine
from ldapsrv.ldap.server import CLAIM_WAIT, ServerContext
from ldapsrv.observability.records import OperationRecord
from ldapsrv.store.changes import Counters


class Counter:
    """Change counters the test moves by hand; None: unreadable."""

    def __init__(self) -> None:
        self.directory: int | None = 1

    def current(self) -> Counters | None:
        return None if self.directory is None else Counters(self.directory, 0)

    def close(self) -> None:
        pass


class Store:
    """The fake directory, counting how often people are read from it."""

    def __init__(self, directory: FakeDirectory) -> None:
        self.reads = 0
        read = directory.search_users

        def counting(*args: Any, **kwargs: Any) -> Any:
            self.reads += 1
            return read(*args, **kwargs)

        directory.search_users = counting  # type: ignore[method-assign]


@pytest.fixture
def setup() -> tuple[ServerContext, Counter, Store]:
    directory = make_directory()
    counter = Counter()
    ctx = replace(
        make_context(directory), results=SearchResultCache(2**20), search_counters=counter
    )
    return ctx, counter, Store(directory)


def bound(ctx: ServerContext) -> Client:
    client = Client(ctx)
    assert client.bind(ALICE_DN, b"alice-pw") == 0
    return client


def test_a_repeated_search_is_answered_from_memory_until_the_counter_moves(setup):
    ctx, counter, store = setup
    client = bound(ctx)
    first = client.search(USERS, "(uid=user07)", attributes=["uid", "cn"])
    reads = store.reads
    assert reads > 0 and dns(first[0]) == [f"cn=user07,{USERS}"]
    again = bound(ctx).search(USERS, "(uid=user07)", attributes=["uid", "cn"])
    assert store.reads == reads  # another connection, same viewer: from memory
    assert again == first
    counter.directory = 2  # any write anywhere
    assert client.search(USERS, "(uid=user07)", attributes=["uid", "cn"]) == first
    assert store.reads > reads


def test_unreadable_counters_mean_every_search_goes_to_the_store(setup):
    ctx, counter, store = setup
    counter.directory = None
    client = bound(ctx)
    client.search(USERS, "(uid=user07)")
    reads = store.reads
    client.search(USERS, "(uid=user07)")
    assert store.reads > reads


def test_anonymous_and_bound_viewers_do_not_share_answers(setup):
    ctx, _, _ = setup
    assert dns(bound(ctx).search(USERS, "(uid=user07)")[0]) == [f"cn=user07,{USERS}"]
    anonymous = Client(ctx)  # anonymous_read is off: nothing, even if cached for alice
    entries, done, _ = anonymous.search(USERS, "(uid=user07)")
    assert entries == [] and done.resultCode != 0


def walk(client: Client, size: int) -> list[str]:
    found: list[str] = []
    cookie = b""
    while True:
        entries, done, controls = client.search(
            USERS, "(objectClass=*)", scope=1, attributes=["1.1"], controls=[paged(size, cookie)]
        )
        assert done.resultCode == 0
        found += dns(entries)
        cookie = paged_cookie(controls)
        if not cookie:
            return found


def test_a_paged_walk_is_answered_from_memory_the_second_time(setup):
    ctx, _, store = setup
    assert walk(bound(ctx), 10) == all_user_dns()
    reads = store.reads
    assert walk(bound(ctx), 10) == all_user_dns()
    assert store.reads == reads


def test_past_a_quarter_of_the_cache_the_pages_of_a_walk_are_not_kept(setup):
    ctx, _, store = setup
    # 16 KiB: a page of two bare entries takes ~0.7 KiB of it, so the first five or
    # six pages fill the walk's quarter (4 KiB) and the other seven are never kept.
    ctx = replace(ctx, results=SearchResultCache(16 * 1024))
    assert walk(bound(ctx), 2) == all_user_dns()
    reads = store.reads
    assert walk(bound(ctx), 2) == all_user_dns()
    # The first page(s) came from memory, the rest from the store again.
    assert 0 < store.reads - reads < 13


class HeldBlocking:
    """Blocking work that runs only when the test says so."""

    def __init__(self) -> None:
        self.held: list[tuple[Deferred[Any], Callable[[], Any]]] = []

    def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Deferred[Any]:
        waiting: Deferred[Any] = Deferred()
        self.held.append((waiting, lambda: fn(*args, **kwargs)))
        return waiting

    def release(self) -> None:
        while self.held:
            waiting, work = self.held.pop(0)
            waiting.callback(work())


def held_context(clock: Any = None) -> tuple[ServerContext, HeldBlocking, Store]:
    directory = make_directory()
    blocking = HeldBlocking()
    base = make_context(directory)
    engine = SearchEngine(base.dit, base.schema, directory, blocking, batch_size=4)  # type: ignore[arg-type]
    counter = Counter()
    ctx = replace(
        base,
        engine=engine,
        results=SearchResultCache(2**20),
        search_counters=counter,
        clock=clock,
    )
    return ctx, blocking, Store(directory)


def search_bytes(client: Client) -> int:
    op = pureldap.LDAPSearchRequest(
        baseObject=USERS.encode(), scope=2, filter=parseFilter("(uid=user09)")
    )
    return client.send(op)


def test_identical_searches_at_once_run_the_store_once_and_all_get_the_answer():
    ctx, blocking, store = held_context()
    first, second = bound(ctx), bound(ctx)
    search_bytes(first)
    search_bytes(second)
    blocking.release()
    assert store.reads == 1
    for client in (first, second):
        *entries, done = client.receive()
        assert dns([e.value for e in entries]) == [f"cn=user09,{USERS}"]
        assert done.value.resultCode == 0


def test_a_waiter_gives_up_after_a_while_and_computes_its_own_answer():
    clock = Clock()
    ctx, blocking, store = held_context(clock)
    first, second = bound(ctx), bound(ctx)
    search_bytes(first)
    search_bytes(second)
    assert store.reads == 0 and len(blocking.held) == 1  # the second one waits
    clock.advance(CLAIM_WAIT)  # the first one's client is not reading, say
    assert len(blocking.held) == 2
    blocking.release()
    assert store.reads == 2
    for client in (first, second):
        *entries, _ = client.receive()
        assert dns([e.value for e in entries]) == [f"cn=user09,{USERS}"]


# ------------------------------------------------------------------ answered before decoding


class Records:
    """An observer keeping every record; ``reads_requests`` as the test says."""

    def __init__(self, reads_requests: bool) -> None:
        self.reads_requests = reads_requests
        self.records: list[OperationRecord] = []

    def connection_opened(self, connection_id: str, client: str, tls: bool) -> None:
        pass

    def connection_closed(self, connection_id: str, client: str) -> None:
        pass

    def operation_done(self, record: OperationRecord) -> None:
        self.records.append(record)


@pytest.mark.parametrize("reads_requests", [True, False])
def test_a_search_answered_before_decoding_is_recorded_like_any_other(
    setup: tuple[ServerContext, Counter, Store], reads_requests: bool
) -> None:
    ctx, _, store = setup
    observer = Records(reads_requests)
    ctx = replace(ctx, observer=observer)
    client = bound(ctx)
    first = client.search(USERS, "(uid=user07)", attributes=["uid"])
    reads = store.reads
    again = client.search(USERS, "(uid=user07)", attributes=["uid"])
    assert store.reads == reads and again == first
    computed, kept = [r for r in observer.records if r.request_type == "SearchRequest"]
    assert not computed.cached and kept.cached
    assert kept.message_id == client.last_id and kept.entries == 1 and kept.result_code == 0
    if reads_requests:  # the access log shows base and filter: it gets them decoded
        assert kept.request == computed.request
    else:
        assert kept.request is None


def test_a_kept_answer_is_not_sent_where_searches_now_need_tls(
    setup: tuple[ServerContext, Counter, Store],
) -> None:
    ctx, _, _ = setup
    client = bound(ctx)
    assert dns(client.search(USERS, "(uid=user07)")[0]) == [f"cn=user07,{USERS}"]
    ctx.settings = replace(ctx.settings, require_tls_for_searches="always")  # a reload
    entries, done, _ = client.search(USERS, "(uid=user07)")
    assert entries == [] and done.resultCode == 13  # confidentialityRequired


def test_after_a_rebind_on_the_same_connection_the_new_identity_gets_its_own_answers(
    setup: tuple[ServerContext, Counter, Store],
) -> None:
    ctx, _, _ = setup
    client = bound(ctx)
    assert dns(client.search(USERS, "(uid=user07)")[0]) == [f"cn=user07,{USERS}"]
    assert client.bind() == 0  # anonymous now, and anonymous_read is off
    entries, done, _ = client.search(USERS, "(uid=user07)")
    assert entries == [] and done.resultCode != 0
    assert client.bind(ALICE_DN, b"alice-pw") == 0
    assert dns(client.search(USERS, "(uid=user07)")[0]) == [f"cn=user07,{USERS}"]


def test_a_search_with_controls_is_not_answered_before_decoding(
    setup: tuple[ServerContext, Counter, Store],
) -> None:
    ctx, _, _ = setup
    client = bound(ctx)
    client.search(USERS, "(uid=user07)")
    unknown_critical = [(b"1.2.3.4.5", True, None)]
    entries, done, _ = client.search(USERS, "(uid=user07)", controls=unknown_critical)
    assert entries == [] and done.resultCode == 12  # unavailableCriticalExtension
