"""Search answers and warm token binds from memory, never stale (issue 5).

A real ``ldapsrv serve`` answered through python-ldap: an SSSD-like reader (a
service account binding with its token, in a group holding
``search_full_directory``) asks the same questions again and again, as SSSD
does, and gets the same answers; the very next question after an admin change
(through the control socket, as an admin would) sees the change, on the same
server and on a second server sharing the database. The cache switches of
``[cache]`` turn both caches off without changing an answer.

The server's caches are not observable from outside except by their answers:
every repeated question here is one the server may answer from memory, and
every question right after a change is one it must not.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ldap
import pytest
from ldap.ldapobject import SimpleLDAPObject

from e2e.clients import Credentials, add_users_concurrently, python_ldap_whoami
from e2e.harness import BACKENDS, LdapServer, fresh_database, serving, start_server, wait_until
from e2e.logs import json_access_records
from e2e.test_python_clients import paged_search, python_ldap

READER = "sssd-reader"
#: How often a question is repeated to be (possibly) answered from memory.
REPEATS = 3
PAGED_PREFIX = "cachepg"
PAGED_USERS = 17
PAGE_SIZE = 5
#: What SSSD's LDAP provider asks for a person and for that person's groups.
USER_ATTRIBUTES = [
    "objectClass", "uid", "userPassword", "uidNumber", "gidNumber", "gecos",
    "homeDirectory", "loginShell", "memberOf", "nsAccountLock", "pwdAccountLockedTime",
    "modifyTimestamp", "entryUUID", "mail", "cn", "displayName",
]  # fmt: skip
GROUP_ATTRIBUTES = [
    "objectClass", "cn", "userPassword", "gidNumber", "member", "memberUid",
    "modifyTimestamp", "entryUUID",
]  # fmt: skip

Entries = list[tuple[str, dict[str, list[bytes]]]]


def user_filter(name: str) -> str:
    return f"(&(uid={name})(objectclass=posixAccount)(uid=*)(&(uidNumber=*)(!(uidNumber=0))))"


def groups_filter(member: str) -> str:
    return f"(&(memberUid={member})(objectclass=posixGroup)(cn=*)(&(gidNumber=*)(!(gidNumber=0))))"


@dataclass
class Reader:
    """A bound SSSD-like connection to one server."""

    server: LdapServer
    conn: SimpleLDAPObject

    def search(self, filter_: str, attributes: list[str]) -> Entries:
        found = self.conn.search_s(self.server.base_dn, ldap.SCOPE_SUBTREE, filter_, attributes)
        return sorted((dn, attrs) for dn, attrs in found if dn is not None)

    def user(self, name: str) -> Entries:
        return self.search(user_filter(name), USER_ATTRIBUTES)

    def groups_of(self, member: str) -> list[str]:
        return [
            attrs["cn"][0].decode()
            for _, attrs in self.search(groups_filter(member), GROUP_ATTRIBUTES)
        ]

    def same_again(self, filter_: str, attributes: list[str]) -> Entries:
        """The answer to a question asked ``REPEATS`` times, all identical."""
        first = self.search(filter_, attributes)
        for _ in range(REPEATS - 1):
            assert self.search(filter_, attributes) == first
        return first

    def pages(self, filter_: str) -> list[list[str]]:
        """The uids of a paged search, page by page."""
        pages = paged_search(self.conn, self.server.base_dn, filter_, PAGE_SIZE, ["uid"])
        return [[attrs["uid"][0].decode() for _, attrs in page] for page in pages]


def reader_credentials(server: LdapServer) -> Credentials:
    """The SSSD-like reader: a service account with a token, reading the whole directory."""
    created = server.create_service_account(READER)
    server.add_full_directory_reader(READER)
    return Credentials(server.user_dn(READER), str(created["token"]))


def connect(server: LdapServer, credentials: Credentials) -> Reader:
    conn = python_ldap(server)
    conn.simple_bind_s(credentials.dn, credentials.password)
    return Reader(server, conn)


def binds(server: LdapServer, credentials: Credentials) -> bool:
    """True when a fresh connection binds with ``credentials``; False on invalidCredentials."""
    try:
        python_ldap_whoami(server, credentials)
    except ldap.INVALID_CREDENTIALS:
        return False
    return True


def binds_repeatedly(server: LdapServer, credentials: Credentials) -> bool:
    return all(binds(server, credentials) for _ in range(REPEATS))


def token_for(server: LdapServer, name: str, *, service: bool) -> tuple[Credentials, str]:
    """A new account ``name`` (service account or person) with an app-password token:
    its credentials and the token's identifier."""
    if service:
        created = server.create_service_account(name)
        return (
            Credentials(server.user_dn(name), str(created["token"])),
            str(created["token_identifier"]),
        )
    server.add_user(name)
    identifier = f"{name}-app"
    token = server.create_token(identifier, name)
    return Credentials(server.user_dn(name), str(token["value"])), identifier


@dataclass
class Cached:
    server: LdapServer
    reader: Reader

    def log_sections(self) -> list[tuple[str, str]]:
        return self.server.log_sections()


@pytest.fixture(scope="module", params=BACKENDS)
def cached(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cached]:
    """A server with the default caches on, and its SSSD-like reader connected."""
    backend = str(request.param)
    with serving(backend, tmp_path_factory.mktemp(f"caching-{backend}")) as server:
        reader = connect(server, reader_credentials(server))
        try:
            yield Cached(server, reader)
        finally:
            reader.conn.unbind_s()


# ------------------------------------------------------------------ one server


def test_a_person_is_answered_the_same_again_and_the_next_search_after_a_change_sees_it(
    cached: Cached,
) -> None:
    server, reader = cached.server, cached.reader
    server.add_user("dora", mail="dora@example.org")
    first = reader.same_again(user_filter("dora"), USER_ATTRIBUTES)
    assert [dn for dn, _ in first] == [server.user_dn("dora")]
    assert "nsAccountLock" not in first[0][1]

    server.ctl("user", "disable", "dora")
    disabled = reader.user("dora")
    assert [dn for dn, _ in disabled] == [server.user_dn("dora")]
    assert disabled[0][1].get("nsAccountLock") == [b"TRUE"], disabled
    assert reader.same_again(user_filter("dora"), USER_ATTRIBUTES) == disabled

    server.add_group("dora-team", ["dora"])
    joined = reader.user("dora")
    assert server.group_dn("dora-team").encode().lower() in {
        value.lower() for value in joined[0][1].get("memberOf", [])
    }, joined

    server.ctl("user", "delete", "dora")
    assert reader.user("dora") == []
    assert reader.same_again(user_filter("dora"), USER_ATTRIBUTES) == []


def test_a_person_added_after_an_empty_answer_is_found_by_the_next_search(
    cached: Cached,
) -> None:
    assert cached.reader.same_again(user_filter("late"), USER_ATTRIBUTES) == []
    cached.server.add_user("late")
    assert [dn for dn, _ in cached.reader.user("late")] == [cached.server.user_dn("late")]


def test_a_membership_change_is_seen_by_the_next_member_uid_search(cached: Cached) -> None:
    server, reader = cached.server, cached.reader
    server.add_user("erin")
    server.add_group("erin-ops")
    assert "erin-ops" not in reader.groups_of("erin")
    before = reader.same_again(groups_filter("erin"), GROUP_ATTRIBUTES)

    server.ctl("group", "add-member", "erin-ops", "erin")
    assert "erin-ops" in reader.groups_of("erin")
    after = reader.same_again(groups_filter("erin"), GROUP_ATTRIBUTES)
    assert after != before

    server.ctl("group", "remove-member", "erin-ops", "erin")
    assert "erin-ops" not in reader.groups_of("erin")
    assert reader.same_again(groups_filter("erin"), GROUP_ATTRIBUTES) == before


def test_a_service_account_token_binds_repeatedly_and_not_once_rotated_or_deleted(
    cached: Cached,
) -> None:
    server = cached.server
    old, identifier = token_for(server, "nas-cache", service=True)
    assert binds_repeatedly(server, old)

    rotated = server.ctl_json("token", "rotate", identifier)
    new = Credentials(old.dn, str(rotated["value"]))
    assert not binds(server, old)
    assert binds_repeatedly(server, new)
    assert not binds(server, old)

    server.ctl("token", "delete", identifier)
    assert not binds(server, new)
    assert not binds(server, new)


def test_a_persons_token_stops_binding_at_once_when_the_person_is_disabled(
    cached: Cached,
) -> None:
    server = cached.server
    bind, _ = token_for(server, "frank", service=False)
    assert binds_repeatedly(server, bind)
    server.ctl("user", "disable", "frank")
    assert not binds(server, bind)
    assert not binds(server, bind)
    server.ctl("user", "enable", "frank")
    assert binds_repeatedly(server, bind)
    server.ctl("user", "delete", "frank")
    assert not binds(server, bind)


def test_a_wrong_token_is_refused_every_time_between_accepted_binds(cached: Cached) -> None:
    server = cached.server
    bind, _ = token_for(server, "nas-wrong", service=True)
    wrong = Credentials(bind.dn, bind.password[:-1] + ("A" if bind.password[-1] != "A" else "B"))
    assert binds(server, bind)
    assert not binds(server, wrong)
    assert binds(server, bind)
    assert not binds(server, wrong)
    assert binds(server, bind)  # also clears the throttle counters of 127.0.0.1


def test_a_paged_enumeration_is_whole_twice_and_includes_a_person_added_after(
    cached: Cached,
) -> None:
    server, reader = cached.server, cached.reader
    names = [f"{PAGED_PREFIX}{i:02d}" for i in range(PAGED_USERS)]
    add_users_concurrently(server, names)
    filter_ = f"(uid={PAGED_PREFIX}*)"

    first = reader.pages(filter_)
    assert sorted(uid for page in first for uid in page) == names
    assert [len(page) for page in first[:-1]] == [PAGE_SIZE] * (len(first) - 1)
    assert reader.pages(filter_) == first  # page by page, in the same order

    server.add_user(f"{PAGED_PREFIX}99")
    after = reader.pages(filter_)
    assert sorted(uid for page in after for uid in page) == [*names, f"{PAGED_PREFIX}99"]

    server.ctl("user", "delete", names[0])
    again = reader.pages(filter_)
    assert sorted(uid for page in again for uid in page) == [*names[1:], f"{PAGED_PREFIX}99"]


# ------------------------------------------------------------------ two servers


@dataclass
class Pair:
    a: LdapServer
    b: LdapServer
    reader_b: Reader
    reader_credentials: Credentials

    def log_sections(self) -> list[tuple[str, str]]:
        return [*self.a.log_sections(), *self.b.log_sections()]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def pair(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pair]:
    """Two servers on one database (a PostgreSQL database, or one SQLite file)."""
    backend = str(request.param)
    shared = tmp_path_factory.mktemp(f"caching-pair-{backend}")
    with fresh_database(backend, shared) as url:
        a = start_server(shared / "a", url)
        try:
            b = start_server(shared / "b", url)
            try:
                credentials = reader_credentials(a)
                reader_b = connect(b, credentials)
                try:
                    yield Pair(a, b, reader_b, credentials)
                finally:
                    reader_b.conn.unbind_s()
            finally:
                b.stop()
        finally:
            a.stop()


def test_a_change_made_through_one_server_is_in_the_next_search_on_the_other(
    pair: Pair,
) -> None:
    pair.a.add_user("gina")
    warm = pair.reader_b.same_again(user_filter("gina"), USER_ATTRIBUTES)
    assert [dn for dn, _ in warm] == [pair.b.user_dn("gina")]
    warm_groups = pair.reader_b.same_again(groups_filter("gina"), GROUP_ATTRIBUTES)
    assert "gina-team" not in {attrs["cn"][0].decode() for _, attrs in warm_groups}

    pair.a.add_group("gina-team", ["gina"])
    assert "gina-team" in pair.reader_b.groups_of("gina")

    pair.a.ctl("user", "disable", "gina")
    assert pair.reader_b.user("gina")[0][1].get("nsAccountLock") == [b"TRUE"]

    pair.a.ctl("user", "delete", "gina")
    assert pair.reader_b.user("gina") == []
    assert pair.reader_b.groups_of("gina") == []  # the user is gone from "users" too


def test_a_token_revoked_through_one_server_fails_on_the_other_at_once(pair: Pair) -> None:
    bind, identifier = token_for(pair.a, "nas-pair", service=True)
    assert binds_repeatedly(pair.b, bind)  # warm on B
    assert binds(pair.a, bind)

    rotated = pair.a.ctl_json("token", "rotate", identifier)
    new = Credentials(bind.dn, str(rotated["value"]))
    assert not binds(pair.b, bind)
    assert binds_repeatedly(pair.b, new)

    pair.a.ctl("token", "delete", identifier)
    assert not binds(pair.b, new)
    assert not binds(pair.a, new)


def test_a_person_disabled_through_one_server_cannot_bind_on_the_other(pair: Pair) -> None:
    bind, _ = token_for(pair.b, "hank", service=False)
    assert binds_repeatedly(pair.a, bind)
    pair.b.ctl("user", "disable", "hank")
    assert not binds(pair.a, bind)
    pair.b.ctl("user", "enable", "hank")
    assert binds(pair.a, bind)


def test_the_reader_still_binds_and_reads_on_both_servers(pair: Pair) -> None:
    """The shared reader's warm binds on both servers stay valid while nothing changes."""
    for server in (pair.a, pair.b):
        assert binds_repeatedly(server, pair.reader_credentials)


# ------------------------------------------------------------------ caches off


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_with_both_caches_off_answers_and_binds_are_the_same(backend: str, tmp_path: Path) -> None:
    settings: dict[str, dict[str, Any]] = {"cache": {"search_results_mib": 0, "token_binds": 0}}
    with serving(backend, tmp_path, settings=settings) as server:
        reader = connect(server, reader_credentials(server))
        try:
            server.add_user("ivy")
            server.add_group("ivy-team", ["ivy"])
            found = reader.same_again(user_filter("ivy"), USER_ATTRIBUTES)
            assert [dn for dn, _ in found] == [server.user_dn("ivy")]
            assert "ivy-team" in reader.groups_of("ivy")
            server.ctl("group", "remove-member", "ivy-team", "ivy")
            assert "ivy-team" not in reader.groups_of("ivy")
            server.ctl("user", "delete", "ivy")
            assert reader.user("ivy") == []

            add_users_concurrently(server, [f"{PAGED_PREFIX}{i:02d}" for i in range(7)])
            pages = reader.pages(f"(uid={PAGED_PREFIX}*)")
            assert sum(len(page) for page in pages) == 7
            assert reader.pages(f"(uid={PAGED_PREFIX}*)") == pages
        finally:
            reader.conn.unbind_s()

        bind, identifier = token_for(server, "nas-off", service=True)
        assert binds_repeatedly(server, bind)
        server.ctl("token", "delete", identifier)
        assert not binds(server, bind)


# ------------------------------------------------------------------ the access log tells


def _searches_for(server: LdapServer, name: str) -> list[dict[str, Any]]:
    return [
        r
        for r in json_access_records(server.log_text())
        if r["op"] == "search" and f"(uid={name})" in str(r.get("filter", ""))
    ]


def test_the_access_log_marks_what_came_from_memory_and_a_change_ends_it(
    tmp_path: Path,
) -> None:
    with serving("sqlite", tmp_path, settings={"logging": {"format": "json"}}) as server:
        credentials = reader_credentials(server)
        server.add_user("fay")
        reader = connect(server, credentials)
        try:
            reader.same_again(user_filter("fay"), USER_ATTRIBUTES)
            server.ctl("user", "disable", "fay")
            reader.same_again(user_filter("fay"), USER_ATTRIBUTES)
        finally:
            reader.conn.unbind_s()
        assert binds_repeatedly(server, credentials)

        def logged() -> list[dict[str, Any]] | None:
            found = _searches_for(server, "fay")
            return found if len(found) == 2 * REPEATS else None

        searches = wait_until(logged, 10, "the access log of the searches")
        cached = [bool(r.get("cached")) for r in searches]
        # Computed, then from memory; the change makes the next one computed again.
        assert cached == [False, *[True] * (REPEATS - 1)] * 2, searches
        assert all(r["entries"] == 1 for r in searches)
        token_binds = [
            r
            for r in json_access_records(server.log_text())
            if r["op"] == "bind" and r.get("dn") == credentials.dn and r["result"] == 0
        ]
        # The connect() bind, then REPEATS more from fresh connections: after the first,
        # nothing changed between them (disable came before them), so from memory.
        assert any(r.get("cached") for r in token_binds), token_binds
        assert not token_binds[0].get("cached")
