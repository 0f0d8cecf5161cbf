"""The LDAP connection with its search cache: what is answered from memory, and when not."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from fakes import FakeDirectory
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

from ldapsrv.caching.search_results import SearchResultCache
from ldapsrv.ldap.server import ServerContext
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
