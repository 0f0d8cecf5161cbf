"""The server as Python applications see it: python-ldap (libldap) and ldap3 (pure Python)."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from typing import Any

import ldap
import ldap3
import pytest
from ldap.controls import RequestControl, SimplePagedResultsControl
from ldap.ldapobject import SimpleLDAPObject

from e2e.clients import ALICE_PASSWORD, PAGED_RESULTS_OID, add_users_concurrently, populate
from e2e.harness import LdapServer

PAGED_USERS = 60
PAGED_PREFIX = "paged"
TIMEOUT = 10


@pytest.fixture(scope="module")
def server(ldap_server: LdapServer) -> LdapServer:
    populate(ldap_server)
    # alice, whom the tests bind as, reads the directory like an application would
    # after an admin followed the README: through a group holding the grant.
    ldap_server.add_full_directory_reader("alice")
    add_users_concurrently(ldap_server, [f"{PAGED_PREFIX}{i:03d}" for i in range(PAGED_USERS)])
    return ldap_server


# --------------------------------------------------------------- python-ldap


def python_ldap(server: LdapServer, url: str | None = None) -> SimpleLDAPObject:
    conn = ldap.initialize(url or server.ldap_url)
    conn.protocol_version = ldap.VERSION3
    conn.set_option(ldap.OPT_REFERRALS, 0)
    conn.set_option(ldap.OPT_NETWORK_TIMEOUT, TIMEOUT)
    conn.set_option(ldap.OPT_TIMEOUT, TIMEOUT)
    conn.set_option(ldap.OPT_X_TLS_CACERTFILE, str(server.ca_path))
    conn.set_option(ldap.OPT_X_TLS_REQUIRE_CERT, ldap.OPT_X_TLS_DEMAND)
    conn.set_option(ldap.OPT_X_TLS_NEWCTX, 0)
    return conn


@pytest.fixture
def pl_conn(server: LdapServer) -> Iterator[SimpleLDAPObject]:
    conn = python_ldap(server)
    yield conn
    conn.unbind_s()


def paged_search(
    conn: SimpleLDAPObject,
    base: str,
    filter_: str,
    page_size: int,
    attributes: list[str],
) -> list[list[tuple[str, dict[str, list[bytes]]]]]:
    """All pages of a search, following the server's cookies (bounded)."""
    control = SimplePagedResultsControl(True, size=page_size, cookie=b"")
    pages: list[list[tuple[str, dict[str, list[bytes]]]]] = []
    for _ in range(1000):
        msgid = conn.search_ext(
            base, ldap.SCOPE_SUBTREE, filter_, attributes, serverctrls=[control]
        )
        _, data, _, controls = conn.result3(msgid, timeout=TIMEOUT)
        pages.append([(dn, attrs) for dn, attrs in data if dn is not None])
        response = [c for c in controls if c.controlType == PAGED_RESULTS_OID]
        assert response, "the server ignored the paged results control"
        if not response[0].cookie:
            return pages
        control.cookie = response[0].cookie
    raise AssertionError("paging did not end after 1000 pages")


def visible(conn: SimpleLDAPObject, base: str, filter_: str) -> list[str]:
    """DNs a search returns; a refused search (hidden base, no access) returns none."""
    try:
        return [dn for dn, _ in conn.search_s(base, ldap.SCOPE_SUBTREE, filter_, ["1.1"])]
    except (ldap.NO_SUCH_OBJECT, ldap.INSUFFICIENT_ACCESS):
        return []


def test_python_ldap_bind_and_search_over_ldaps(server: LdapServer) -> None:
    conn = python_ldap(server, server.ldaps_url)
    try:
        conn.simple_bind_s(server.user_dn("alice"), ALICE_PASSWORD)
        result = conn.search_s(
            server.base_dn, ldap.SCOPE_SUBTREE, "(uid=alice)", ["uid", "mail", "memberOf"]
        )
    finally:
        conn.unbind_s()
    assert [dn for dn, _ in result] == [server.user_dn("alice")]
    attrs = {name.lower(): values for name, values in result[0][1].items()}
    assert attrs["uid"] == [b"alice"]
    assert attrs["mail"] == [b"alice@example.org"]


def test_python_ldap_starttls_then_whoami_names_the_bound_user(
    server: LdapServer, pl_conn: SimpleLDAPObject
) -> None:
    pl_conn.start_tls_s()
    assert pl_conn.whoami_s() == ""
    pl_conn.simple_bind_s(server.user_dn("alice"), ALICE_PASSWORD)
    assert pl_conn.whoami_s().lower() == f"dn:{server.user_dn('alice')}".lower()


def test_python_ldap_failed_bind_leaves_the_connection_anonymous(
    server: LdapServer, pl_conn: SimpleLDAPObject
) -> None:
    pl_conn.simple_bind_s(server.user_dn("alice"), ALICE_PASSWORD)
    with pytest.raises(ldap.INVALID_CREDENTIALS):
        pl_conn.simple_bind_s(server.user_dn("bob"), "wrong")
    assert pl_conn.whoami_s() == ""
    assert visible(pl_conn, server.base_dn, "(uid=alice)") == []


def test_python_ldap_paged_search_visits_every_entry_once(
    server: LdapServer, pl_conn: SimpleLDAPObject
) -> None:
    pl_conn.simple_bind_s(server.user_dn("alice"), ALICE_PASSWORD)
    pages = paged_search(pl_conn, server.base_dn, f"(uid={PAGED_PREFIX}*)", 25, ["uid"])
    assert [len(page) for page in pages] == [25, 25, 10]
    uids = [attrs["uid"][0].decode() for page in pages for _, attrs in page]
    assert sorted(uids) == [f"{PAGED_PREFIX}{i:03d}" for i in range(PAGED_USERS)]


def test_python_ldap_paging_is_abandoned_with_page_size_zero(
    server: LdapServer, pl_conn: SimpleLDAPObject
) -> None:
    pl_conn.simple_bind_s(server.user_dn("alice"), ALICE_PASSWORD)
    control = SimplePagedResultsControl(True, size=10, cookie=b"")
    filter_ = f"(uid={PAGED_PREFIX}*)"
    msgid = pl_conn.search_ext(
        server.base_dn, ldap.SCOPE_SUBTREE, filter_, ["uid"], serverctrls=[control]
    )
    _, first, _, controls = pl_conn.result3(msgid, timeout=TIMEOUT)
    assert len(first) == 10
    cookie = next(c for c in controls if c.controlType == PAGED_RESULTS_OID).cookie
    assert cookie

    control.size, control.cookie = 0, cookie
    msgid = pl_conn.search_ext(
        server.base_dn, ldap.SCOPE_SUBTREE, filter_, ["uid"], serverctrls=[control]
    )
    _, rest, _, controls = pl_conn.result3(msgid, timeout=TIMEOUT)
    assert rest == []
    # A server may answer the abandonment without a paging control; if it sends one,
    # its cookie must end the paging.
    assert all(not c.cookie for c in controls if c.controlType == PAGED_RESULTS_OID)


def test_python_ldap_paging_cookie_is_refused_on_another_connection(
    server: LdapServer, pl_conn: SimpleLDAPObject
) -> None:
    pl_conn.simple_bind_s(server.user_dn("alice"), ALICE_PASSWORD)
    filter_ = f"(uid={PAGED_PREFIX}*)"
    control = SimplePagedResultsControl(True, size=10, cookie=b"")
    msgid = pl_conn.search_ext(
        server.base_dn, ldap.SCOPE_SUBTREE, filter_, ["uid"], serverctrls=[control]
    )
    _, _, _, controls = pl_conn.result3(msgid, timeout=TIMEOUT)
    control.cookie = next(c for c in controls if c.controlType == PAGED_RESULTS_OID).cookie

    other = python_ldap(server)
    try:
        other.simple_bind_s(server.user_dn("alice"), ALICE_PASSWORD)
        with pytest.raises(ldap.LDAPError):
            msgid = other.search_ext(
                server.base_dn, ldap.SCOPE_SUBTREE, filter_, ["uid"], serverctrls=[control]
            )
            other.result3(msgid, timeout=TIMEOUT)
    finally:
        other.unbind_s()


def test_python_ldap_unknown_critical_control_is_refused(
    server: LdapServer, pl_conn: SimpleLDAPObject
) -> None:
    pl_conn.simple_bind_s(server.user_dn("alice"), ALICE_PASSWORD)
    unknown = RequestControl("1.3.6.1.4.1.99999.1.2.3", True, b"")
    with pytest.raises(ldap.UNAVAILABLE_CRITICAL_EXTENSION):
        pl_conn.search_ext_s(
            server.base_dn, ldap.SCOPE_SUBTREE, "(uid=alice)", ["uid"], serverctrls=[unknown]
        )
    harmless = RequestControl("1.3.6.1.4.1.99999.1.2.3", False, b"")
    found = pl_conn.search_ext_s(
        server.base_dn, ldap.SCOPE_SUBTREE, "(uid=alice)", ["uid"], serverctrls=[harmless]
    )
    assert [dn for dn, _ in found] == [server.user_dn("alice")]


def test_python_ldap_password_modify_self_service(server: LdapServer) -> None:
    server.add_user("heidi", "heidi-Old-1")
    dn = server.user_dn("heidi")
    conn = python_ldap(server)
    try:
        conn.start_tls_s()
        conn.simple_bind_s(dn, "heidi-Old-1")
        conn.passwd_s(None, "heidi-Old-1", "heidi-New-2")
    finally:
        conn.unbind_s()

    fresh = python_ldap(server)
    try:
        with pytest.raises(ldap.INVALID_CREDENTIALS):
            fresh.simple_bind_s(dn, "heidi-Old-1")
        fresh.simple_bind_s(dn, "heidi-New-2")
        assert fresh.whoami_s().lower() == f"dn:{dn}".lower()
    finally:
        fresh.unbind_s()


# --------------------------------------------------------------------- ldap3


def ldap3_server(server: LdapServer, *, ldaps: bool, get_info: Any = ldap3.NONE) -> ldap3.Server:
    tls = ldap3.Tls(ca_certs_file=str(server.ca_path), validate=ssl.CERT_REQUIRED)
    return ldap3.Server(
        server.host,
        port=server.ldaps_port if ldaps else server.ldap_port,
        use_ssl=ldaps,
        tls=tls,
        get_info=get_info,
        connect_timeout=TIMEOUT,
    )


def ldap3_connection(
    server: LdapServer, user: str | None = None, password: str | None = None, *, ldaps: bool
) -> ldap3.Connection:
    return ldap3.Connection(
        ldap3_server(server, ldaps=ldaps),
        user=user,
        password=password,
        receive_timeout=TIMEOUT,
        raise_exceptions=False,
    )


def test_ldap3_reads_root_dse_and_schema_on_connect(server: LdapServer) -> None:
    conn = ldap3.Connection(
        ldap3_server(server, ldaps=True, get_info=ldap3.ALL), receive_timeout=TIMEOUT
    )
    try:
        assert conn.bind(), conn.result
        info = conn.server.info
        assert info is not None
        assert [str(nc) for nc in info.naming_contexts] == [server.base_dn]
        assert PAGED_RESULTS_OID in {c[0] for c in info.supported_controls}
        schema = conn.server.schema
        assert schema is not None
        assert "posixAccount" in schema.object_classes
        assert "uidNumber" in schema.attribute_types
    finally:
        conn.unbind()


def test_ldap3_bind_search_and_whoami_over_ldaps(server: LdapServer) -> None:
    conn = ldap3_connection(server, server.user_dn("alice"), ALICE_PASSWORD, ldaps=True)
    try:
        assert conn.bind(), conn.result
        assert conn.extend.standard.who_am_i().lower() == f"dn:{server.user_dn('alice')}".lower()
        assert conn.search(
            server.base_dn,
            "(&(objectClass=posixGroup)(memberUid=alice))",
            attributes=["cn", "gidNumber"],
        ), conn.result
        names = {entry.cn.value for entry in conn.entries}
        assert "developers" in names
    finally:
        conn.unbind()


def test_ldap3_starttls_then_bind(server: LdapServer) -> None:
    conn = ldap3_connection(server, server.user_dn("alice"), ALICE_PASSWORD, ldaps=False)
    try:
        conn.open()
        assert conn.start_tls(), conn.result
        assert conn.bind(), conn.result
        assert conn.extend.standard.who_am_i().lower() == f"dn:{server.user_dn('alice')}".lower()
    finally:
        conn.unbind()


def test_ldap3_wrong_password_is_refused(server: LdapServer) -> None:
    conn = ldap3_connection(server, server.user_dn("alice"), "not-her-password", ldaps=True)
    try:
        assert not conn.bind()
        assert conn.result["result"] == 49
    finally:
        conn.unbind()


def test_ldap3_paged_search_returns_every_entry(server: LdapServer) -> None:
    conn = ldap3_connection(server, server.user_dn("alice"), ALICE_PASSWORD, ldaps=True)
    try:
        assert conn.bind(), conn.result
        entries = conn.extend.standard.paged_search(
            server.base_dn,
            f"(uid={PAGED_PREFIX}*)",
            attributes=["uid"],
            paged_size=7,
            generator=False,
        )
        uids = [e["attributes"]["uid"][0] for e in entries if e["type"] == "searchResEntry"]
    finally:
        conn.unbind()
    assert sorted(uids) == [f"{PAGED_PREFIX}{i:03d}" for i in range(PAGED_USERS)]


def test_ldap3_password_modify_with_generated_password(server: LdapServer) -> None:
    server.add_user("ivan", "ivan-Old-1")
    dn = server.user_dn("ivan")
    conn = ldap3_connection(server, dn, "ivan-Old-1", ldaps=True)
    try:
        assert conn.bind(), conn.result
        generated = conn.extend.standard.modify_password(old_password="ivan-Old-1")
    finally:
        conn.unbind()
    assert isinstance(generated, str) and generated, generated

    again = ldap3_connection(server, dn, generated, ldaps=True)
    try:
        assert again.bind(), again.result
    finally:
        again.unbind()
    old = ldap3_connection(server, dn, "ivan-Old-1", ldaps=True)
    try:
        assert not old.bind()
    finally:
        old.unbind()
