"""The access log: one structured line per operation, for a known sequence of
operations by a real client (python-ldap), in JSON and in logfmt; secrets never
appear in the log."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import ldap
import pytest
from ldap.ldapobject import SimpleLDAPObject

from e2e.clients import ALICE_PASSWORD, populate
from e2e.harness import LdapServer, ldap_client_env, run_tool, serving, wait_until
from e2e.logs import by_connection, json_access_records, logfmt_access_records

WRONG_PASSWORD = "not-Alice-Password-77"
NEW_PASSWORD = "a-New-Passphrase-for-Alice-9"
TIMEOUT = 10


def connect(server: LdapServer) -> SimpleLDAPObject:
    conn = ldap.initialize(server.ldap_url)
    conn.protocol_version = ldap.VERSION3
    conn.set_option(ldap.OPT_REFERRALS, 0)
    conn.set_option(ldap.OPT_NETWORK_TIMEOUT, TIMEOUT)
    conn.set_option(ldap.OPT_TIMEOUT, TIMEOUT)
    return conn


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LdapServer]:
    """A server logging in JSON, with alice (a full-directory reader), bob and carol."""
    workdir = tmp_path_factory.mktemp("access-log")
    with serving("sqlite", workdir, settings={"logging": {"format": "json"}}) as server:
        populate(server)
        server.add_full_directory_reader("alice")
        yield server


def wait_for_connection(
    server: LdapServer,
    read: Callable[[str], list[dict[str, Any]]],
    matches: Callable[[list[dict[str, Any]]], bool],
) -> list[dict[str, Any]]:
    """The access records of the one connection that ``matches``, once its
    disconnect line is written."""

    def find() -> list[dict[str, Any]] | None:
        for records in by_connection(read(server.log_text())).values():
            if matches(records) and records[-1]["op"] == "disconnect":
                return records
        return None

    found: list[dict[str, Any]] = wait_until(find, TIMEOUT, "the connection's access log")
    return found


def test_a_known_sequence_of_operations_gives_one_line_each(server: LdapServer) -> None:
    alice_dn = server.user_dn("alice")
    conn = connect(server)
    root = conn.search_s("", ldap.SCOPE_BASE, "(objectClass=*)", ["namingContexts"])
    assert root[0][1]["namingContexts"] == [server.base_dn.encode()]
    with pytest.raises(ldap.INVALID_CREDENTIALS):
        conn.simple_bind_s(alice_dn, WRONG_PASSWORD)
    conn.simple_bind_s(alice_dn, ALICE_PASSWORD)
    users = conn.search_s(
        f"ou=users,{server.base_dn}",
        ldap.SCOPE_ONELEVEL,
        "(&(objectClass=posixAccount)(uid=*))",
        ["uid", "mail"],
    )
    assert conn.compare_s(alice_dn, "mail", b"alice@example.org")
    conn.unbind_s()

    records = wait_for_connection(
        server,
        json_access_records,
        lambda rs: any(r.get("dn") == alice_dn and r.get("result") == 49 for r in rs),
    )
    ops = [r["op"] for r in records]
    assert ops == ["connect", "search", "bind", "bind", "search", "compare", "unbind", "disconnect"]
    connect_line, rootdse, failed, bound, search, compare, unbind, _ = records
    conn_id = connect_line["conn"]
    assert all(r["conn"] == conn_id for r in records)
    assert connect_line["client"].startswith("127.0.0.1:")
    assert all(r["client"] == connect_line["client"] and "tls" in r for r in records[:-1])
    assert connect_line["tls"] is False

    assert rootdse | {"ms": 0} == rootdse | {
        "base": "",
        "scope": "base",
        "filter": "(objectClass=*)",
        "attrs": ["namingContexts"],
        "identity": "",
        "result": 0,
        "result_name": "success",
        "entries": 1,
        "ms": 0,
    }
    assert (failed["dn"], failed["method"], failed["result"], failed["result_name"]) == (
        alice_dn,
        "password",
        49,
        "invalidCredentials",
    )
    assert failed["reason"] == "wrong_password" and failed["identity"] == ""
    assert (bound["dn"], bound["method"], bound["result"], bound["identity"]) == (
        alice_dn,
        "password",
        0,
        alice_dn,
    )
    assert "reason" not in bound
    assert search["base"] == f"ou=users,{server.base_dn}" and search["scope"] == "one"
    assert search["filter"] == "(&(objectClass=posixAccount)(uid=*))"
    assert search["attrs"] == ["uid", "mail"]
    assert search["entries"] == len(users) == 3  # alice, bob, carol
    assert (search["identity"], search["result"]) == (alice_dn, 0)
    assert (compare["dn"], compare["attr"], compare["result"]) == (alice_dn, "mail", 6)
    assert compare["result_name"] == "compareTrue"
    assert "value" not in compare
    assert "result" not in unbind
    for record in records[1:-1]:
        assert isinstance(record["msgid"], int) and record["ms"] >= 0
    msgids = [r["msgid"] for r in records[1:-1]]
    assert msgids == sorted(msgids)


def test_tokens_and_passwords_never_reach_the_log(server: LdapServer) -> None:
    account = server.create_service_account("nas-logger")
    token = account["token"]
    conn = connect(server)
    conn.simple_bind_s(account["dn"], token)
    conn.whoami_s()
    conn.unbind_s()

    conn = connect(server)
    conn.simple_bind_s(server.user_dn("alice"), ALICE_PASSWORD)
    conn.passwd_s(server.user_dn("alice"), ALICE_PASSWORD, NEW_PASSWORD)
    conn.unbind_s()
    conn = connect(server)  # and back, so other tests keep alice's password
    conn.simple_bind_s(server.user_dn("alice"), NEW_PASSWORD)
    conn.passwd_s(server.user_dn("alice"), NEW_PASSWORD, ALICE_PASSWORD)
    conn.unbind_s()

    token_conn = wait_for_connection(
        server, json_access_records, lambda rs: any(r.get("dn") == account["dn"] for r in rs)
    )
    bind = next(r for r in token_conn if r["op"] == "bind")
    assert (bind["method"], bind["result"], bind["identity"]) == ("token", 0, account["dn"])
    whoami = next(r for r in token_conn if r["op"] == "whoami")
    assert whoami["oid"] == "1.3.6.1.4.1.4203.1.11.3" and whoami["result"] == 0

    wait_until(
        lambda: sum(r["op"] == "passwd" for r in json_access_records(server.log_text())) >= 2,
        TIMEOUT,
        "two password modify lines",
    )
    changes = [r for r in json_access_records(server.log_text()) if r["op"] == "passwd"]
    assert [c["result"] for c in changes[-2:]] == [0, 0]
    assert all(set(c) >= {"oid", "identity"} for c in changes)
    log = server.log_text()
    for secret in (token, ALICE_PASSWORD, NEW_PASSWORD, WRONG_PASSWORD, token.split("_")[-1]):
        assert secret not in log


def test_logfmt_access_lines_quote_what_needs_quoting(
    ldap_server_factory: Callable[..., LdapServer],
) -> None:
    server = ldap_server_factory(settings={"logging": {"format": "logfmt"}})
    odd_filter = '(description=two words "quoted" back\\5cslash)'
    result = run_tool(
        ["ldapsearch", "-x", "-LLL", "-H", server.ldap_url, "-b", "", "-s", "base", odd_filter],
        env=ldap_client_env(None),
    )
    assert result.returncode == 0, result.stderr

    def find() -> dict[str, str] | None:
        records = logfmt_access_records(server.log_text())
        return next((r for r in records if r.get("op") == "search"), None)

    search = wait_until(find, TIMEOUT, "the logfmt search line")
    assert search["filter"] == odd_filter
    assert (search["base"], search["scope"], search["result"], search["entries"]) == (
        "",
        "base",
        "0",
        "0",
    )
    assert search["level"] == "info" and search["time"].endswith("Z")
    line = next(line for line in server.log_text().splitlines() if "op=search" in line)
    assert 'filter="(description=two words \\"quoted\\" back\\\\5cslash)"' in line
