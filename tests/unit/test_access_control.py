"""Access control in the LDAP layer, bytes in and bytes out.

Visibility itself is decided in SQL (tested against real databases in
tests/store); here the fake directory's ``visible`` function stands in for the
grants, and these tests prove what the protocol does with it: restricted rows,
no existence leaks, trimmed member lists, state attributes, TLS requirements and
the admin password reset.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import pytest
from fakes import FakeDirectory
from test_protocol import (
    ALICE_DN,
    BOB_DN,
    GROUPS,
    USERS,
    Client,
    attrs,
    dns,
    make_context,
    make_directory,
)
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport

from ldapsrv.auth.binding import PasswordAuthenticator
from ldapsrv.directory.records import EffectivePermissions
from ldapsrv.ldap.server import ServerContext

ADMINS_DN = f"cn=admins,{GROUPS}"
STAFF_DN = f"cn=staff,{GROUPS}"


@dataclass
class FakePermissions:
    """A PermissionStore stand-in: fixed effective permissions per account."""

    directory: FakeDirectory
    granted: dict[str, EffectivePermissions] = field(default_factory=dict)

    def effective_permissions(self, account_name: str) -> EffectivePermissions:
        return self.granted.get(account_name.casefold(), EffectivePermissions())

    def is_member(self, group_name: str, account_name: str) -> bool:
        return any(
            g.name.casefold() == group_name.casefold()
            and account_name.casefold() in {m.casefold() for m in g.member_names}
            for g in self.directory.groups
        )


def context(
    directory: FakeDirectory, permissions: FakePermissions | None = None, **settings: str
) -> ServerContext:
    ctx = make_context(directory)
    ctx.authenticator = PasswordAuthenticator(directory, 4, permissions=permissions)  # type: ignore[arg-type]
    if settings:
        ctx.settings = replace(ctx.settings, **settings)  # type: ignore[arg-type]
    return ctx


def only(*names: str):  # type: ignore[no-untyped-def]
    """A visibility rule: bob sees just these accounts and groups (plus himself)."""
    allowed = {n.casefold() for n in names} | {"bob"}

    def visible(viewer: str, what: object) -> bool:
        if viewer.casefold() != "bob":
            return True
        name = what if isinstance(what, str) else what.name  # type: ignore[attr-defined]
        return name.casefold() in allowed

    return visible


@pytest.fixture
def directory() -> FakeDirectory:
    d = make_directory()
    d.visible = only("admins")
    return d


def test_a_restricted_account_sees_only_visible_entries(directory: FakeDirectory) -> None:
    bob = Client(context(directory))
    assert bob.bind(BOB_DN, b"bob-pw") == 0
    entries, done, _ = bob.search(USERS, "(objectClass=*)", scope=1)
    assert (dns(entries), done.resultCode) == ([BOB_DN], 0)
    groups, _, _ = bob.search(GROUPS, scope=1)
    assert dns(groups) == [ADMINS_DN]


def test_a_hidden_entry_is_no_such_object_as_if_it_did_not_exist(
    directory: FakeDirectory,
) -> None:
    bob = Client(context(directory))
    assert bob.bind(BOB_DN, b"bob-pw") == 0
    hidden, done, _ = bob.search(ALICE_DN, scope=0)
    missing, done_missing, _ = bob.search(f"cn=nobody,{USERS}", scope=0)
    assert (hidden, done.resultCode) == ([], 32)
    assert (missing, done_missing.resultCode) == ([], 32)
    assert done.matchedDN == done_missing.matchedDN


def test_member_lists_and_member_filters_show_only_visible_members(
    directory: FakeDirectory,
) -> None:
    bob = Client(context(directory))
    assert bob.bind(BOB_DN, b"bob-pw") == 0
    (admins,), _, _ = bob.search(ADMINS_DN, scope=0, attributes=["member", "memberUid"])
    assert attrs(admins)["memberUid"] == [b"bob"]  # alice is a member, but hidden
    by_hidden, _, _ = bob.search(GROUPS, f"(member={ALICE_DN})")
    assert by_hidden == []
    by_self, _, _ = bob.search(GROUPS, f"(member={BOB_DN})")
    assert dns(by_self) == [ADMINS_DN]


def test_compare_on_a_hidden_entry_is_no_such_object(directory: FakeDirectory) -> None:
    from ldaptor.protocols import pureldap

    bob = Client(context(directory))
    assert bob.bind(BOB_DN, b"bob-pw") == 0
    response = bob.one(
        pureldap.LDAPCompareRequest(
            entry=ALICE_DN.encode(),
            ava=pureldap.LDAPAttributeValueAssertion(
                pureldap.LDAPAttributeDescription(b"uid"), pureldap.LDAPAssertionValue(b"alice")
            ),
        )
    )
    assert response.resultCode == 32


def _disable(directory: FakeDirectory, name: str) -> None:
    directory.users = [replace(u, disabled=True) if u.name == name else u for u in directory.users]


def test_lock_attributes_are_shown_only_to_full_directory_searchers() -> None:
    directory = make_directory()
    _disable(directory, "bob")
    permissions = FakePermissions(directory, {"alice": EffectivePermissions(full_directory=True)})
    ctx = context(directory, permissions)
    alice = Client(ctx)
    assert alice.bind(ALICE_DN, b"alice-pw") == 0
    (entry,), _, _ = alice.search(BOB_DN, scope=0, attributes=["+"])
    assert attrs(entry)["pwdAccountLockedTime"] == [b"000001010000Z"]
    assert attrs(entry)["nsAccountLock"] == [b"TRUE"]
    user3 = Client(ctx)
    directory.password_hashes["user03"] = directory.password_hashes["alice"]
    assert user3.bind(f"cn=user03,{USERS}", b"alice-pw") == 0
    (entry,), _, _ = user3.search(BOB_DN, scope=0, attributes=["+"])
    assert "pwdAccountLockedTime" not in attrs(entry)
    assert "nsAccountLock" not in attrs(entry)


def test_a_disabled_person_cannot_bind() -> None:
    directory = make_directory()
    directory.disabled.add("bob")
    assert Client(context(directory)).bind(BOB_DN, b"bob-pw") == 49


def test_password_reset_needs_the_reset_password_permission() -> None:
    directory = make_directory()
    permissions = FakePermissions(
        directory,
        {
            "alice": EffectivePermissions(reset_password_everyone=True),
            "bob": EffectivePermissions(reset_password_scopes=frozenset({"staff"})),
        },
    )
    ctx = context(directory, permissions)
    alice = Client(ctx)
    assert alice.bind(ALICE_DN, b"alice-pw") == 0
    response = alice.password_modify(userIdentity=BOB_DN.encode(), newPasswd=b"reset-by-alice")
    assert response.resultCode == 0
    assert Client(ctx).bind(BOB_DN, b"reset-by-alice") == 0
    # a generated password when none is given, as ldappasswd expects
    response = alice.password_modify(userIdentity=BOB_DN.encode())
    assert response.resultCode == 0
    value = bytes(response.response)  # SEQUENCE { [0] genPasswd }
    assert value[0] == 0x30 and value[2] == 0x80
    generated = value[4 : 4 + value[3]]
    assert Client(ctx).bind(BOB_DN, generated) == 0
    assert Client(ctx).bind(BOB_DN, b"reset-by-alice") == 49
    # without the permission: insufficientAccessRights, and nothing changes
    user3 = Client(ctx)
    directory.password_hashes["user03"] = directory.password_hashes["alice"]
    assert user3.bind(f"cn=user03,{USERS}", b"alice-pw") == 0
    refused = user3.password_modify(userIdentity=BOB_DN.encode(), newPasswd=b"by-user03-pw")
    assert refused.resultCode == 50
    assert Client(ctx).bind(BOB_DN, generated) == 0


def test_password_reset_scoped_to_a_group(directory: FakeDirectory) -> None:
    directory.visible = lambda viewer, what: True
    permissions = FakePermissions(
        directory, {"bob": EffectivePermissions(reset_password_scopes=frozenset({"staff"}))}
    )
    ctx = context(directory, permissions)
    bob = Client(ctx)
    assert bob.bind(BOB_DN, b"bob-pw") == 0
    ok = bob.password_modify(userIdentity=ALICE_DN.encode(), newPasswd=b"alice-new-pw")
    assert ok.resultCode == 0  # alice is in staff
    refused = bob.password_modify(
        userIdentity=f"cn=user03,{USERS}".encode(), newPasswd=b"user03-new-pw"
    )
    assert refused.resultCode == 50
    nobody = bob.password_modify(
        userIdentity=f"cn=nobody,{USERS}".encode(), newPasswd=b"nobody-new-pw"
    )
    assert (nobody.resultCode, nobody.errorMessage) == (50, refused.errorMessage)


def _client_from(ctx: ServerContext, host: str, tls: bool = False) -> Client:
    transport = StringTransport(peerAddress=IPv4Address("TCP", host, 40000))
    client = Client(ctx, transport)
    client.conn.tls_active = tls
    return client


@pytest.mark.parametrize(
    ("requirement", "host", "tls", "expected"),
    [
        ("non-loopback", "192.0.2.7", False, 13),
        ("non-loopback", "127.0.0.1", False, 0),
        ("non-loopback", "192.0.2.7", True, 0),
        ("always", "127.0.0.1", False, 13),
        ("always", "127.0.0.1", True, 0),
        ("never", "192.0.2.7", False, 0),
    ],
)
def test_binds_with_credentials_need_tls_as_configured(
    requirement: str, host: str, tls: bool, expected: int
) -> None:
    ctx = context(make_directory(), require_tls_for_binds=requirement)
    client = _client_from(ctx, host, tls)
    assert client.bind(ALICE_DN, b"alice-pw") == expected
    assert client.bind() == 0  # anonymous binds never need TLS


def test_searches_may_require_tls_but_the_root_dse_stays_readable() -> None:
    ctx = context(make_directory(), require_tls_for_searches="always")
    client = _client_from(ctx, "127.0.0.1")
    assert client.bind(ALICE_DN, b"alice-pw") == 0
    root, done, _ = client.search("", scope=0)
    assert (len(root), done.resultCode) == (1, 0)
    entries, done, _ = client.search(USERS)
    assert (entries, done.resultCode) == ([], 13)


def test_failed_binds_are_delayed_then_locked_out_while_a_clean_address_still_binds() -> None:
    from test_throttle import Clock, MemoryStore
    from twisted.internet import defer

    from ldapsrv.auth.throttle import BindThrottle, ThrottlePolicy

    directory = make_directory()
    policy = ThrottlePolicy(free_failures=2, base_delay=0.5, max_delay=4, pair_lockout_failures=5)
    throttle = BindThrottle(MemoryStore(), policy, Clock())
    ctx = make_context(directory)
    ctx.authenticator = PasswordAuthenticator(directory, 4, throttle=throttle)
    slept: list[float] = []

    def sleep(seconds: float) -> defer.Deferred[None]:
        slept.append(seconds)
        return defer.succeed(None)

    ctx.sleep = sleep
    attacker = _client_from(ctx, "192.0.2.66")
    for _ in range(7):
        assert attacker.bind(ALICE_DN, b"guess") == 49
    # two free failures answered at once, then 0.5, 1, 2 s; the fifth locks the pair
    # out and later attempts are refused without a check (and without a delay)
    assert slept == [0.5, 1.0, 2.0]
    # locked out now: even the right password is refused from the attacker's address
    assert attacker.bind(ALICE_DN, b"alice-pw") == 49
    # ...but alice's own host, which has not been failing, still gets in
    assert _client_from(ctx, "192.0.2.10").bind(ALICE_DN, b"alice-pw") == 0


def test_filters_on_lock_attributes_find_disabled_people_for_full_searchers_only() -> None:
    directory = make_directory()
    _disable(directory, "bob")
    permissions = FakePermissions(directory, {"alice": EffectivePermissions(full_directory=True)})
    ctx = context(directory, permissions)
    alice = Client(ctx)
    assert alice.bind(ALICE_DN, b"alice-pw") == 0
    for flt in ("(nsAccountLock=TRUE)", "(pwdAccountLockedTime=*)", "(nsaccountlock=true)"):
        entries, _, _ = alice.search(USERS, flt)
        assert dns(entries) == [BOB_DN], flt
    enabled, _, _ = alice.search(USERS, "(&(uid=alice)(!(nsAccountLock=TRUE)))")
    assert dns(enabled) == [ALICE_DN]
    directory.password_hashes["user03"] = directory.password_hashes["alice"]
    user3 = Client(ctx)
    assert user3.bind(f"cn=user03,{USERS}", b"alice-pw") == 0
    hidden, done, _ = user3.search(USERS, "(pwdAccountLockedTime=*)")
    assert (hidden, done.resultCode) == ([], 0)
