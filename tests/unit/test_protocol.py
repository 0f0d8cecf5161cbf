"""The LDAP protocol, bytes in and bytes out (no sockets, no database).

Requests are encoded by ldaptor and responses decoded by ldaptor, an independent
implementation of the wire format; the directory is ``fakes.FakeDirectory``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from e2e.wire import ldaptor_decoder
from fakes import FakeDirectory, ImmediateBlocking, group, run_blocking, user
from ldaptor.ldapfilter import parseFilter
from ldaptor.protocols import pureber, pureldap
from twisted.internet.testing import StringTransport

from ldapsrv.auth.binding import PasswordAuthenticator
from ldapsrv.auth.passwords import hash_password, verify_password
from ldapsrv.directory.dit import Dit
from ldapsrv.directory.schema import load_schema
from ldapsrv.errors import StoreUnavailable
from ldapsrv.ldap.search import SearchEngine
from ldapsrv.ldap.server import LDAPConnection, ServerContext, ServerSettings

BASE = "dc=example,dc=org"
USERS = f"ou=users,{BASE}"
GROUPS = f"ou=groups,{BASE}"
ALICE_DN = f"cn=alice,{USERS}"
BOB_DN = f"cn=bob,{USERS}"

PAGED = b"1.2.840.113556.1.4.319"
PPOLICY = b"1.3.6.1.4.1.42.2.27.8.5.1"
DEREF = b"1.3.6.1.4.1.4203.666.5.16"
START_TLS = b"1.3.6.1.4.1.1466.20037"
WHO_AM_I = b"1.3.6.1.4.1.4203.1.11.3"
PASSWORD_MODIFY = b"1.3.6.1.4.1.4203.1.11.1"
NOTICE_OF_DISCONNECTION = b"1.3.6.1.4.1.1466.20036"
MAX_PDU = 16 * 1024

BASE_SCOPE, ONE, SUB = 0, 1, 2

# -- the server under test -----------------------------------------------------------

_HASHES = {"alice": hash_password(b"alice-pw", 4), "bob": hash_password(b"bob-pw", 4)}


def make_directory() -> FakeDirectory:
    users = [
        user(1, "alice", groups=("admins", "staff")),
        user(2, "bob", groups=("admins",)),
        *(user(i, f"user{i:02d}") for i in range(3, 26)),
    ]
    groups = [
        group(1, "admins", members=("alice", "bob")),
        group(2, "staff", members=("alice",), description="Staff"),
    ]
    return FakeDirectory(users=users, groups=groups, password_hashes=dict(_HASHES))


def make_context(directory: FakeDirectory, tls_options: Any = None) -> ServerContext:
    schema = load_schema()
    dit = Dit(BASE)
    settings = ServerSettings(
        max_pdu_bytes=MAX_PDU,
        max_filter_depth=50,
        size_limit=1000,
        time_limit=0,
        anonymous_read=False,
    )
    return ServerContext(
        settings=settings,
        dit=dit,
        schema=schema,
        engine=SearchEngine(dit, schema, directory, ImmediateBlocking(), batch_size=4),  # type: ignore[arg-type]
        authenticator=PasswordAuthenticator(directory, bcrypt_cost=4),
        tls_options=tls_options,
        run_blocking=run_blocking,
    )


class TLSRecordingTransport(StringTransport):
    def __init__(self) -> None:
        super().__init__()
        self.tls_started: list[Any] = []

    def startTLS(self, options: Any) -> None:
        self.tls_started.append(options)


class Client:
    """One connection: send ldaptor requests, get ldaptor-decoded responses."""

    def __init__(self, ctx: ServerContext, transport: StringTransport | None = None) -> None:
        self.transport = transport or StringTransport()
        self.conn = LDAPConnection(ctx, tls_active=False)
        self.conn.makeConnection(self.transport)
        self.last_id = 0

    def send(self, op: Any, controls: list[tuple[Any, ...]] | None = None) -> int:
        self.last_id += 1
        message = pureldap.LDAPMessage(op, id=self.last_id, controls=controls)
        self.send_bytes(message.toWire())
        return self.last_id

    def send_bytes(self, data: bytes) -> None:
        self.conn.dataReceived(data)

    def receive(self) -> list[Any]:
        data = self.transport.value()
        self.transport.clear()
        return pureber.berDecodeMultiple(data, ldaptor_decoder())

    def request(self, op: Any, controls: list[tuple[Any, ...]] | None = None) -> list[Any]:
        mid = self.send(op, controls)
        messages = self.receive()
        assert all(m.id == mid for m in messages), messages
        return messages

    def one(self, op: Any, controls: list[tuple[Any, ...]] | None = None) -> Any:
        messages = self.request(op, controls)
        assert len(messages) == 1, messages
        return messages[0].value

    # -- operations --

    def bind(self, dn: str = "", password: bytes = b"", controls: Any = None) -> int:
        op = pureldap.LDAPBindRequest(dn=dn.encode(), auth=password)
        response = self.one(op, controls)
        assert isinstance(response, pureldap.LDAPBindResponse)
        return int(response.resultCode)

    def search(
        self,
        base: str,
        filter_text: str = "(objectClass=*)",
        scope: int = SUB,
        attributes: list[str] | tuple[str, ...] = (),
        controls: list[tuple[Any, ...]] | None = None,
        **kw: Any,
    ) -> tuple[list[Any], Any, list[Any]]:
        """(entries, SearchResultDone, response controls)."""
        op = pureldap.LDAPSearchRequest(
            baseObject=base.encode(),
            scope=scope,
            filter=parseFilter(filter_text),
            attributes=[a.encode() for a in attributes],
            **kw,
        )
        messages = self.request(op, controls)
        *entries, done = messages
        assert isinstance(done.value, pureldap.LDAPSearchResultDone), messages
        assert all(isinstance(m.value, pureldap.LDAPSearchResultEntry) for m in entries)
        return [m.value for m in entries], done.value, done.controls or []

    def extended(self, name: bytes, value: bytes | None = None) -> Any:
        response = self.one(pureldap.LDAPExtendedRequest(requestName=name, requestValue=value))
        assert isinstance(response, pureldap.LDAPExtendedResponse)
        return response

    def whoami(self) -> bytes:
        response = self.extended(WHO_AM_I)
        assert response.resultCode == 0
        return bytes(response.response or b"")

    def password_modify(self, **fields: bytes) -> Any:
        response = self.one(pureldap.LDAPPasswordModifyRequest(**fields))
        assert isinstance(response, pureldap.LDAPExtendedResponse)
        return response


@pytest.fixture
def directory() -> FakeDirectory:
    return make_directory()


@pytest.fixture
def ctx(directory: FakeDirectory) -> ServerContext:
    return make_context(directory)


@pytest.fixture
def client(ctx: ServerContext) -> Client:
    return Client(ctx)


@pytest.fixture
def alice(ctx: ServerContext) -> Client:
    c = Client(ctx)
    assert c.bind(ALICE_DN, b"alice-pw") == 0
    return c


def dns(entries: list[Any]) -> list[str]:
    return [
        e.objectName.decode() if isinstance(e.objectName, bytes) else e.objectName for e in entries
    ]


def attrs(entry: Any) -> dict[str, list[bytes]]:
    out = {}
    for name, values in entry.attributes:
        key = name.decode() if isinstance(name, bytes) else str(name)
        out[key] = [bytes(v) if not isinstance(v, str) else v.encode() for v in values]
    return out


def paged(size: int, cookie: bytes = b"", critical: bool = False) -> tuple[Any, ...]:
    value = pureber.BERSequence([pureber.BERInteger(size), pureber.BEROctetString(cookie)]).toWire()
    return (PAGED, critical, value)


def paged_cookie(controls: list[Any]) -> bytes:
    (control,) = [c for c in controls if c[0] == PAGED]
    value, _ = pureber.berDecodeObject(pureber.BERDecoderContext(), control[2])
    _size, cookie = value
    return bytes(cookie.value)


def all_user_dns() -> list[str]:
    return [ALICE_DN, BOB_DN, *(f"cn=user{i:02d},{USERS}" for i in range(3, 26))]


# -- rootDSE ------------------------------------------------------------------------


@pytest.mark.parametrize("filter_text", ["(objectClass=*)", "(objectclass=*)", "(OBJECTCLASS=*)"])
def test_anonymous_root_dse_read_for_any_spelling_of_the_filter(
    client: Client, filter_text: str
) -> None:
    entries, done, _ = client.search("", filter_text, scope=BASE_SCOPE)
    assert done.resultCode == 0
    assert dns(entries) == [""]
    root = attrs(entries[0])
    assert root["namingContexts"] == [BASE.encode()]
    assert root["supportedLDAPVersion"] == [b"3"]
    assert PAGED in root["supportedControl"]
    assert {WHO_AM_I, PASSWORD_MODIFY} <= set(root["supportedExtension"])
    assert START_TLS not in root["supportedExtension"]  # no TLS configured
    assert root["subschemaSubentry"] == [b"cn=Subschema"]
    assert root["vendorName"] == [b"ldapsrv"]


def test_root_dse_named_attributes_only(client: Client) -> None:
    entries, done, _ = client.search(
        "", scope=BASE_SCOPE, attributes=["namingcontexts", "supportedControl", "nosuch"]
    )
    assert done.resultCode == 0
    assert sorted(attrs(entries[0])) == ["namingContexts", "supportedControl"]


def test_root_dse_one_one_gives_the_entry_without_attributes(client: Client) -> None:
    entries, _, _ = client.search("", scope=BASE_SCOPE, attributes=["1.1"])
    assert dns(entries) == [""] and attrs(entries[0]) == {}


def test_root_dse_with_a_non_matching_filter_gives_no_entry(client: Client) -> None:
    entries, done, _ = client.search("", "(objectClass=person)", scope=BASE_SCOPE)
    assert (entries, done.resultCode) == ([], 0)


def test_anonymous_subschema_read(client: Client) -> None:
    entries, done, _ = client.search(
        "cn=subschema", scope=BASE_SCOPE, attributes=["attributeTypes", "objectClasses"]
    )
    assert done.resultCode == 0
    schema = attrs(entries[0])
    assert any(b"'memberUid'" in t for t in schema["attributeTypes"])
    assert any(b"'posixGroup'" in t for t in schema["objectClasses"])


# -- anonymous clients -------------------------------------------------------------------


@pytest.mark.parametrize("base", [BASE, USERS, ALICE_DN])
def test_anonymous_directory_search_is_no_such_object_without_touching_the_store(
    client: Client, directory: FakeDirectory, base: str
) -> None:
    entries, done, _ = client.search(base)
    assert (entries, done.resultCode) == ([], 32)
    assert not [c for c in directory.calls if c[0].startswith("search")]


def test_anonymous_read_switch_opens_the_directory(directory: FakeDirectory) -> None:
    ctx = make_context(directory)
    ctx.settings = ServerSettings(MAX_PDU, 50, 1000, 0, anonymous_read=True)
    entries, done, _ = Client(ctx).search(USERS, "(uid=alice)")
    assert (dns(entries), done.resultCode) == ([ALICE_DN], 0)


# -- bind -----------------------------------------------------------------------------


def test_bind_success_then_whoami(client: Client) -> None:
    assert client.bind(ALICE_DN, b"alice-pw") == 0
    assert client.whoami() == f"dn:{ALICE_DN}".encode()


@pytest.mark.parametrize(
    "dn",
    [
        f"uid=alice,{USERS}",
        "CN=ALICE,OU=USERS,DC=EXAMPLE,DC=ORG",
        "uid = Alice , ou = users , dc = example , dc = org",
    ],
)
def test_bind_dn_forms_name_the_same_account(client: Client, dn: str) -> None:
    assert client.bind(dn, b"alice-pw") == 0
    assert client.whoami() == f"dn:{ALICE_DN}".encode()


def test_wrong_password_is_49_and_leaves_the_connection_anonymous(client: Client) -> None:
    assert client.bind(ALICE_DN, b"alice-pw") == 0
    assert client.bind(ALICE_DN, b"wrong") == 49
    assert client.whoami() == b""
    entries, done, _ = client.search(USERS)
    assert (entries, done.resultCode) == ([], 32)


@pytest.mark.parametrize(
    "dn",
    [
        f"cn=nobody,{USERS}",
        f"cn=admins,{GROUPS}",
        "cn=alice,ou=users,dc=other,dc=org",
        "not a dn",
        f"cn=alice,{BASE}",
    ],
)
def test_every_refused_bind_looks_the_same(client: Client, dn: str) -> None:
    response = client.one(pureldap.LDAPBindRequest(dn=dn.encode(), auth=b"alice-pw"))
    assert (response.resultCode, response.matchedDN, response.errorMessage) == (49, b"", b"")


def test_bind_refusal_when_the_store_is_down_is_unavailable(
    client: Client, directory: FakeDirectory, monkeypatch: pytest.MonkeyPatch
) -> None:
    def down(name: str) -> None:
        raise StoreUnavailable("connection refused")

    monkeypatch.setattr(directory, "get_credentials", down)
    assert client.bind(ALICE_DN, b"alice-pw") == 52


def test_anonymous_bind(alice: Client) -> None:
    assert alice.bind("", b"") == 0
    assert alice.whoami() == b""


def test_dn_with_empty_password_is_unwilling_to_perform(client: Client) -> None:
    assert client.bind(ALICE_DN, b"") == 53
    assert client.whoami() == b""


def test_sasl_bind_is_auth_method_not_supported(client: Client) -> None:
    op = pureldap.LDAPBindRequest(dn=b"", auth=(b"EXTERNAL", None), sasl=True)
    assert client.one(op).resultCode == 7


def test_ldap_version_2_bind_is_a_protocol_error(client: Client) -> None:
    op = pureldap.LDAPBindRequest(version=2, dn=ALICE_DN.encode(), auth=b"alice-pw")
    assert client.one(op).resultCode == 2
    assert client.whoami() == b""


def test_bind_with_the_ppolicy_control_is_accepted(client: Client) -> None:
    assert client.bind(ALICE_DN, b"alice-pw", controls=[(PPOLICY, False, None)]) == 0


# -- search ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("base", "scope", "expected"),
    [
        (BASE, BASE_SCOPE, [BASE]),
        (BASE, ONE, [USERS, GROUPS]),
        (
            BASE,
            SUB,
            [BASE, USERS, GROUPS, *all_user_dns(), f"cn=admins,{GROUPS}", f"cn=staff,{GROUPS}"],
        ),
        (USERS, BASE_SCOPE, [USERS]),
        (USERS, ONE, all_user_dns()),
        (USERS, SUB, [USERS, *all_user_dns()]),
        (GROUPS, ONE, [f"cn=admins,{GROUPS}", f"cn=staff,{GROUPS}"]),
        (ALICE_DN, BASE_SCOPE, [ALICE_DN]),
        (f"UID=Alice,{USERS}", SUB, [ALICE_DN]),
        (ALICE_DN, ONE, []),
    ],
)
def test_search_scopes(alice: Client, base: str, scope: int, expected: list[str]) -> None:
    entries, done, _ = alice.search(base, scope=scope, attributes=["1.1"])
    assert done.resultCode == 0
    assert dns(entries) == expected


@pytest.mark.parametrize(
    ("base", "scope", "matched"),
    [
        (f"cn=nobody,{USERS}", BASE_SCOPE, USERS),
        (f"cn=nobody,{USERS}", ONE, USERS),
        (f"cn=nobody,{GROUPS}", SUB, GROUPS),
        (f"ou=machines,{BASE}", SUB, BASE),
        ("dc=other,dc=org", SUB, ""),
    ],
)
def test_missing_bases_are_no_such_object_with_matched_dn(
    alice: Client, base: str, scope: int, matched: str
) -> None:
    entries, done, _ = alice.search(base, scope=scope)
    assert (entries, done.resultCode, done.matchedDN) == ([], 32, matched.encode())


def test_invalid_base_dn_is_invalid_dn_syntax(alice: Client) -> None:
    _, done, _ = alice.search("cn=a,,dc=org")
    assert done.resultCode == 34


def test_search_returns_the_requested_attributes(alice: Client) -> None:
    entries, _, _ = alice.search(USERS, "(uid=alice)", attributes=["UIDNUMBER", "memberof"])
    assert attrs(entries[0]) == {
        "uidNumber": [b"10001"],
        "memberOf": [f"cn=admins,{GROUPS}".encode(), f"cn=staff,{GROUPS}".encode()],
    }


def test_client_size_limit_gives_exactly_n_entries_and_size_limit_exceeded(
    alice: Client,
) -> None:
    entries, done, _ = alice.search(USERS, scope=ONE, sizeLimit=5)
    assert done.resultCode == 4
    assert dns(entries) == all_user_dns()[:5]


def test_size_limit_equal_to_the_result_count_is_success(alice: Client) -> None:
    entries, done, _ = alice.search(GROUPS, scope=ONE, sizeLimit=2)
    assert (len(entries), done.resultCode) == (2, 0)


def test_server_size_limit_applies_too(directory: FakeDirectory) -> None:
    ctx = make_context(directory)
    ctx.settings = ServerSettings(MAX_PDU, 50, 3, 0, False)
    c = Client(ctx)
    assert c.bind(ALICE_DN, b"alice-pw") == 0
    entries, done, _ = c.search(USERS, scope=ONE, sizeLimit=10)
    assert (len(entries), done.resultCode) == (3, 4)


def test_types_only_gives_names_without_values(alice: Client) -> None:
    entries, done, _ = alice.search(
        USERS, "(uid=alice)", attributes=["cn", "mail", "gecos"], typesOnly=1
    )
    assert done.resultCode == 0
    assert attrs(entries[0]) == {"cn": [], "mail": []}


def test_an_internal_error_answers_other_without_details(
    alice: Client,
    directory: FakeDirectory,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("secret internals at /srv/db")

    monkeypatch.setattr(directory, "search_users", broken)
    with caplog.at_level(logging.ERROR, logger="ldapsrv.ldap"):
        _, done, _ = alice.search(USERS, scope=ONE)
    assert done.resultCode == 80
    assert b"secret" not in done.errorMessage
    assert "secret internals" in caplog.text  # ... but the log has them
    # the connection still works
    assert alice.whoami() == f"dn:{ALICE_DN}".encode()


def test_dn_attribute_extensible_match_covers_the_containers(alice: Client) -> None:
    entries, _, _ = alice.search(BASE, "(dc:dn:=example)", scope=ONE, attributes=["1.1"])
    assert dns(entries) == [USERS, GROUPS]


# -- SSSD's searches (DESIGN.md section 2) --------------------------------------------


def test_sssd_user_by_name(alice: Client) -> None:
    entries, done, _ = alice.search(
        BASE,
        "(&(uid=alice)(objectClass=posixAccount)(uid=*)(&(uidNumber=*)(!(uidNumber=0))))",
        attributes=["objectClass", "uid", "uidNumber", "gidNumber", "homeDirectory", "uid"],
    )
    assert (dns(entries), done.resultCode) == ([ALICE_DN], 0)
    assert attrs(entries[0])["homeDirectory"] == [b"/home/alice"]


def test_sssd_user_by_number(alice: Client) -> None:
    entries, _, _ = alice.search(BASE, "(&(uidNumber=10002)(objectClass=posixAccount))")
    assert dns(entries) == [BOB_DN]


def test_sssd_rfc2307bis_groups_of_a_member(alice: Client) -> None:
    entries, _, _ = alice.search(
        BASE, f"(&(member={ALICE_DN})(objectClass=posixGroup)(cn=*))", attributes=["cn"]
    )
    assert dns(entries) == [f"cn=admins,{GROUPS}", f"cn=staff,{GROUPS}"]


def test_sssd_rfc2307_groups_with_odd_case_attribute_names(alice: Client) -> None:
    entries, _, _ = alice.search(
        BASE,
        "(&(memberuid=bob)(objectClass=posixGroup)(cn=*)(&(gidNumber=*)(!(gidNumber=0))))",
        attributes=["memberuid", "GIDNUMBER", "cn", "memberuid"],
    )
    assert dns(entries) == [f"cn=admins,{GROUPS}"]
    values = {k.lower(): v for k, v in attrs(entries[0]).items()}
    assert values == {"memberuid": [b"alice", b"bob"], "gidnumber": [b"10001"], "cn": [b"admins"]}


def test_sssd_base_read_of_a_member_dn(alice: Client) -> None:
    entries, _, _ = alice.search(BOB_DN, "(objectClass=*)", scope=BASE_SCOPE)
    assert dns(entries) == [BOB_DN]


def test_sssd_paged_sudo_search_succeeds_with_no_entries(alice: Client) -> None:
    entries, done, controls = alice.search(
        BASE,
        "(&(objectClass=sudoRole)(|(!(sudoHost=*))(sudoHost=ALL)(sudoHost=host.example.org)))",
        attributes=["objectClass", "cn", "sudoCommand", "sudoHost", "sudoUser"],
        controls=[paged(1000, critical=True)],
    )
    assert (entries, done.resultCode) == ([], 0)
    assert paged_cookie(controls) == b""


# -- paged results ------------------------------------------------------------------------


def test_paged_results_walk_25_users_in_pages_of_10(alice: Client) -> None:
    seen: list[str] = []
    cookies: list[bytes] = []
    cookie = b""
    for _ in range(3):
        entries, done, controls = alice.search(
            USERS, scope=ONE, attributes=["1.1"], controls=[paged(10, cookie)]
        )
        assert done.resultCode == 0
        seen += dns(entries)
        cookie = paged_cookie(controls)
        cookies.append(cookie)
    assert [len(seen[:10]), len(seen[10:20]), len(seen[20:])] == [10, 10, 5]
    assert seen == all_user_dns()
    assert cookies[0] and cookies[1] and cookies[0] != cookies[1]
    assert cookies[2] == b""


@pytest.mark.parametrize("page_size", [1, 3, 7, 30, 31])
def test_paging_a_subtree_returns_the_unpaged_result_in_order(
    alice: Client, page_size: int
) -> None:
    unpaged, _, _ = alice.search(BASE, attributes=["1.1"])
    assert len(unpaged) == 30  # base, 2 containers, 25 users, 2 groups
    seen: list[str] = []
    pages = 0
    cookie = b""
    while True:
        entries, done, controls = alice.search(
            BASE, attributes=["1.1"], controls=[paged(page_size, cookie)]
        )
        assert done.resultCode == 0 and len(entries) <= page_size
        seen += dns(entries)
        pages += 1
        cookie = paged_cookie(controls)
        if not cookie:
            break
    assert seen == dns(unpaged)
    assert pages == -(-30 // page_size)  # no empty trailing page when it divides exactly


def test_a_paged_cookie_is_valid_only_on_its_connection(ctx: ServerContext, alice: Client) -> None:
    _, _, controls = alice.search(USERS, scope=ONE, controls=[paged(10)])
    cookie = paged_cookie(controls)
    other = Client(ctx)
    assert other.bind(ALICE_DN, b"alice-pw") == 0
    entries, done, _ = other.search(USERS, scope=ONE, controls=[paged(10, cookie)])
    assert entries == [] and done.resultCode != 0


def test_a_paged_cookie_is_valid_only_for_its_search(alice: Client) -> None:
    _, _, controls = alice.search(USERS, scope=ONE, controls=[paged(10)])
    entries, done, _ = alice.search(
        USERS, "(uid=bob)", scope=ONE, controls=[paged(10, paged_cookie(controls))]
    )
    assert entries == [] and done.resultCode != 0


def test_page_size_zero_abandons_the_paged_search(alice: Client) -> None:
    _, _, controls = alice.search(USERS, scope=ONE, controls=[paged(10)])
    cookie = paged_cookie(controls)
    entries, done, controls = alice.search(USERS, scope=ONE, controls=[paged(0, cookie)])
    assert (entries, done.resultCode, paged_cookie(controls)) == ([], 0, b"")
    entries, done, _ = alice.search(USERS, scope=ONE, controls=[paged(10, cookie)])
    assert entries == [] and done.resultCode != 0


def test_paging_with_a_client_size_limit(alice: Client) -> None:
    entries, done, controls = alice.search(USERS, scope=ONE, sizeLimit=15, controls=[paged(10)])
    assert (len(entries), done.resultCode) == (10, 0)
    entries, done, _ = alice.search(
        USERS, scope=ONE, sizeLimit=15, controls=[paged(10, paged_cookie(controls))]
    )
    assert (len(entries), done.resultCode) == (5, 4)


def test_malformed_paged_control_value_is_a_protocol_error(alice: Client) -> None:
    _, done, _ = alice.search(USERS, controls=[(PAGED, False, b"\x04\x00")])
    assert done.resultCode == 2


# -- controls -------------------------------------------------------------------------


def test_unknown_critical_control_is_unavailable_critical_extension(alice: Client) -> None:
    entries, done, _ = alice.search(USERS, controls=[(b"1.2.3.4.5", True, None)])
    assert (entries, done.resultCode) == ([], 12)
    assert alice.bind(ALICE_DN, b"alice-pw", controls=[(b"1.2.3.4.5", True, None)]) == 12


def test_critical_paged_control_on_a_bind_is_unavailable_critical_extension(
    client: Client,
) -> None:
    assert client.bind(ALICE_DN, b"alice-pw", controls=[paged(10, critical=True)]) == 12


def test_non_critical_unknown_controls_are_ignored(alice: Client) -> None:
    entries, done, _ = alice.search(
        USERS,
        "(uid=bob)",
        controls=[(PPOLICY, False, None), (DEREF, False, b"\x30\x00"), (b"1.2.3", False, None)],
    )
    assert (dns(entries), done.resultCode) == ([BOB_DN], 0)


# -- abandon, unbind ---------------------------------------------------------------------


def test_abandon_gets_no_response(alice: Client) -> None:
    alice.send(pureldap.LDAPAbandonRequest(id=1))
    alice.send(pureldap.LDAPAbandonRequest(id=12345))
    assert alice.transport.value() == b""
    assert not alice.transport.disconnecting


def test_unbind_closes_without_a_response(alice: Client) -> None:
    alice.send(pureldap.LDAPUnbindRequest())
    assert alice.transport.value() == b""
    assert alice.transport.disconnecting


# -- compare ---------------------------------------------------------------------------


def compare(c: Client, dn: str, attr: str, value: str) -> Any:
    ava = pureldap.LDAPAttributeValueAssertion(
        pureber.BEROctetString(attr), pureber.BEROctetString(value)
    )
    return c.one(pureldap.LDAPCompareRequest(entry=dn.encode(), ava=ava))


@pytest.mark.parametrize(
    ("dn", "attr", "value", "code"),
    [
        (ALICE_DN, "uidNumber", "10001", 6),
        (ALICE_DN, "UID", "ALICE", 6),
        (ALICE_DN, "memberOf", f"cn=admins,{GROUPS}", 6),
        (ALICE_DN, "uidNumber", "10002", 5),
        (f"cn=admins,{GROUPS}", "memberUid", "bob", 6),
        (f"cn=admins,{GROUPS}", "memberUid", "carol", 5),
        (USERS, "ou", "users", 6),
        (f"cn=nobody,{USERS}", "uid", "nobody", 32),
        (ALICE_DN, "sudoUser", "alice", 17),
    ],
)
def test_compare(alice: Client, dn: str, attr: str, value: str, code: int) -> None:
    response = compare(alice, dn, attr, value)
    assert isinstance(response, pureldap.LDAPCompareResponse)
    assert response.resultCode == code


def test_compare_of_a_missing_entry_names_the_matched_dn(alice: Client) -> None:
    assert compare(alice, f"cn=nobody,{USERS}", "uid", "x").matchedDN == USERS.encode()


def test_anonymous_compare_sees_nothing(client: Client) -> None:
    assert compare(client, ALICE_DN, "uid", "alice").resultCode == 32


# -- extended operations -------------------------------------------------------------------


def test_whoami_anonymous_is_empty(client: Client) -> None:
    assert client.whoami() == b""


def test_unknown_extended_operation_is_a_protocol_error(alice: Client) -> None:
    assert alice.extended(b"1.2.3.4.99").resultCode == 2


def test_password_modify_self_service(alice: Client, ctx: ServerContext) -> None:
    response = alice.password_modify(oldPasswd=b"alice-pw", newPasswd=b"fresh-pw")
    assert (response.resultCode, response.response) == (0, None)
    other = Client(ctx)
    assert other.bind(ALICE_DN, b"fresh-pw") == 0
    assert other.bind(ALICE_DN, b"alice-pw") == 49


def test_password_modify_naming_yourself_is_self_service(alice: Client) -> None:
    response = alice.password_modify(
        userIdentity=f"uid=ALICE,{USERS}".encode(), oldPasswd=b"alice-pw", newPasswd=b"x-pw"
    )
    assert response.resultCode == 0


def test_password_modify_without_new_password_generates_one(
    alice: Client, directory: FakeDirectory
) -> None:
    response = alice.password_modify(oldPasswd=b"alice-pw")
    assert response.resultCode == 0
    # PasswdModifyResponseValue ::= SEQUENCE { genPasswd [0] OCTET STRING }, short lengths
    value = bytes(response.response)
    assert (value[0], value[1], value[2], value[3]) == (0x30, len(value) - 2, 0x80, len(value) - 4)
    password = value[4:]
    assert len(password) >= 16
    assert verify_password(password, directory.password_hashes["alice"])


def test_password_modify_with_a_wrong_old_password_is_invalid_credentials(
    alice: Client, directory: FakeDirectory
) -> None:
    before = directory.password_hashes["alice"]
    response = alice.password_modify(oldPasswd=b"wrong", newPasswd=b"fresh-pw")
    assert response.resultCode == 49
    assert directory.password_hashes["alice"] == before


def test_password_modify_of_another_account_is_insufficient_access(
    alice: Client, directory: FakeDirectory
) -> None:
    before = directory.password_hashes["bob"]
    response = alice.password_modify(
        userIdentity=BOB_DN.encode(), oldPasswd=b"bob-pw", newPasswd=b"pwned"
    )
    assert response.resultCode == 50
    assert directory.password_hashes["bob"] == before


def test_password_modify_anonymous_is_unwilling_to_perform(client: Client) -> None:
    response = client.password_modify(
        userIdentity=ALICE_DN.encode(), oldPasswd=b"alice-pw", newPasswd=b"x"
    )
    assert response.resultCode == 53


def test_password_modify_without_old_password_is_unwilling_to_perform(alice: Client) -> None:
    assert alice.password_modify(newPasswd=b"fresh-pw").resultCode == 53


# -- StartTLS ---------------------------------------------------------------------------


def test_start_tls_without_tls_configured_is_unavailable(client: Client) -> None:
    response = client.extended(START_TLS)
    assert response.resultCode == 52
    assert response.responseName == START_TLS


def test_start_tls_starts_tls_on_the_transport(directory: FakeDirectory, tmp_path: Path) -> None:
    from ldapsrv.tls import ensure_dev_certificate, load_server_context

    cert = ensure_dev_certificate(tmp_path)
    options = load_server_context(cert.cert_path, cert.key_path)
    transport = TLSRecordingTransport()
    c = Client(make_context(directory, tls_options=options), transport)
    entries, _, _ = c.search("", scope=BASE_SCOPE, attributes=["supportedExtension"])
    assert START_TLS in attrs(entries[0])["supportedExtension"]

    response = c.extended(START_TLS)
    assert (response.resultCode, response.responseName) == (0, START_TLS)
    assert transport.tls_started == [options]
    # once TLS is up, a second StartTLS is refused and StartTLS is no longer offered
    assert c.extended(START_TLS).resultCode == 1
    assert transport.tls_started == [options]
    entries, _, _ = c.search("", scope=BASE_SCOPE, attributes=["supportedExtension"])
    assert START_TLS not in attrs(entries[0])["supportedExtension"]
    assert c.bind(ALICE_DN, b"alice-pw") == 0


# -- writes --------------------------------------------------------------------------------


def test_add_modify_delete_are_unwilling_to_perform_and_change_nothing(
    alice: Client, directory: FakeDirectory
) -> None:
    users_before, groups_before = list(directory.users), list(directory.groups)
    add = pureldap.LDAPAddRequest(
        entry=f"cn=eve,{USERS}",
        attributes=[
            (
                pureldap.LDAPAttributeDescription("objectClass"),
                pureber.BERSet([pureldap.LDAPAttributeValue("inetOrgPerson")]),
            )
        ],
    )
    modify = pureldap.LDAPModifyRequest(
        object=ALICE_DN,
        modification=[
            pureber.BERSequence(
                [
                    pureber.BEREnumerated(2),
                    pureber.BERSequence(
                        [
                            pureldap.LDAPAttributeDescription("mail"),
                            pureber.BERSet([pureldap.LDAPString("x@evil.test")]),
                        ]
                    ),
                ]
            )
        ],
    )
    delete = pureldap.LDAPDelRequest(entry=BOB_DN)
    expected = [
        pureldap.LDAPAddResponse,
        pureldap.LDAPModifyResponse,
        pureldap.LDAPDelResponse,
    ]
    for op, response_type in zip([add, modify, delete], expected, strict=True):
        response = alice.one(op)
        assert type(response) is response_type
        assert response.resultCode == 53
    assert (directory.users, directory.groups) == (users_before, groups_before)
    assert not [c for c in directory.calls if c[0] == "set_password_hash"]


# -- malformed input and limits -------------------------------------------------------


def assert_notice_of_disconnection(c: Client) -> None:
    (message,) = c.receive()
    assert message.id == 0
    assert isinstance(message.value, pureldap.LDAPExtendedResponse)
    assert message.value.responseName == NOTICE_OF_DISCONNECTION
    assert message.value.resultCode == 2
    assert c.transport.disconnecting


@pytest.mark.parametrize(
    "data",
    [
        b"\x30\x80\x02\x01\x01\x42\x00\x00\x00",  # indefinite length
        b"\x30\x84\x00\x10\x00\x00",  # declares 1 MiB > max_pdu_bytes
        b"\x04\x03abc",  # not a SEQUENCE
        b"\x30\x03\x02\x01\x01",  # no protocolOp
        b"\x30\x06\x02\x01\x01\x61\x01\x00",  # a BindResponse is not a request
    ],
)
def test_malformed_pdu_gets_a_notice_of_disconnection_and_a_close(
    client: Client, caplog: pytest.LogCaptureFixture, data: bytes
) -> None:
    with caplog.at_level(logging.WARNING):
        client.send_bytes(data)
    assert_notice_of_disconnection(client)
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    # nothing more is answered on a closed connection
    client.send(pureldap.LDAPExtendedRequest(requestName=WHO_AM_I))
    assert client.transport.value() == b""


def test_oversized_pdu_is_refused_from_its_header(client: Client) -> None:
    big = pureldap.LDAPSearchRequest(
        baseObject=BASE.encode(),
        filter=parseFilter("(cn=" + "x" * MAX_PDU + ")"),
    )
    data = pureldap.LDAPMessage(big, id=1).toWire()
    client.send_bytes(data[:10])  # the header alone is enough
    assert_notice_of_disconnection(client)


def test_requests_split_across_reads_and_batched_in_one_read(alice: Client) -> None:
    one = pureldap.LDAPMessage(pureldap.LDAPExtendedRequest(requestName=WHO_AM_I), id=50)
    two = pureldap.LDAPMessage(pureldap.LDAPExtendedRequest(requestName=WHO_AM_I), id=51)
    data = one.toWire() + two.toWire()
    for i in range(len(data)):
        alice.send_bytes(data[i : i + 1])
    assert [m.id for m in alice.receive()] == [50, 51]


def nested_filter(depth: int) -> bytes:
    """A filter ``depth`` levels deep (nots around a present), as BER."""
    node = pureldap.LDAPFilter_present("objectClass").toWire()
    for _ in range(depth - 1):
        node = pureber.BERSequence([], tag=0xA2).toWire()[:1] + pureber.int2berlen(len(node)) + node
    return node


def test_too_deep_filter_is_admin_limit_exceeded_and_the_connection_stays_usable(
    alice: Client,
) -> None:
    base = pureber.BEROctetString(BASE).toWire()
    body = (
        base
        + pureber.BEREnumerated(2).toWire()
        + pureber.BEREnumerated(0).toWire()
        + pureber.BERInteger(0).toWire()
        + pureber.BERInteger(0).toWire()
        + pureber.BERBoolean(False).toWire()
        + nested_filter(60)
        + pureber.BERSequence([]).toWire()
    )
    search = b"\x63" + pureber.int2berlen(len(body)) + body
    message_body = pureber.BERInteger(9).toWire() + search
    alice.send_bytes(b"\x30" + pureber.int2berlen(len(message_body)) + message_body)
    (message,) = alice.receive()
    assert message.id == 9
    assert isinstance(message.value, pureldap.LDAPSearchResultDone)
    assert message.value.resultCode == 11
    assert not alice.transport.disconnecting
    assert alice.whoami() == f"dn:{ALICE_DN}".encode()
