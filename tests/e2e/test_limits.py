"""Per-connection limits on a real server, through real sockets and ldapsearch.

A client address beyond its connection cap is told busy (51) and closed; a silent
connection and a half-sent request are told adminLimitExceeded (11) and closed on
time; an account with its own size limit gets it while others do not.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from ldaptor.protocols import pureldap

from e2e.clients import (
    ALICE_PASSWORD,
    BOB_PASSWORD,
    SIZE_LIMIT_EXCEEDED,
    SUCCESS,
    Credentials,
    ldapsearch,
    populate,
)
from e2e.harness import LdapServer, require_service, serving
from e2e.rawldap import WHO_AM_I, RawClient

PER_ADDRESS = 4
IDLE_TIMEOUT = 3
PDU_TIMEOUT = 1
BUSY, ADMIN_LIMIT_EXCEEDED = 51, 11


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LdapServer]:
    settings = {
        "limits": {
            "max_connections_per_address": PER_ADDRESS,
            "idle_timeout": IDLE_TIMEOUT,
            "pdu_timeout": PDU_TIMEOUT,
            "identity_limits": {"alice": {"size_limit": 2}},
        }
    }
    with serving("sqlite", tmp_path_factory.mktemp("limits"), settings=settings) as server:
        populate(server)
        server.grant("search_full_directory", user="alice")
        server.grant("search_full_directory", user="bob")
        yield server


def answered(client: RawClient) -> bool:
    _, response = client.until_done(client.whoami())
    return int(response.resultCode) == 0


def test_connections_beyond_the_per_address_cap_are_told_busy(server: LdapServer) -> None:
    held = [RawClient.connect(server.ldap_port) for _ in range(PER_ADDRESS)]
    try:
        assert all(answered(c) for c in held)
        for _ in range(3):
            extra = RawClient.connect(server.ldap_port)
            assert extra.closed_with_notice() == BUSY
        assert all(answered(c) for c in held)  # the admitted ones are untouched
    finally:
        for client in held:
            client.close()
    log = server.log_text()
    assert log.count("refusing connections from 127.0.0.1") == 1  # once per interval
    assert "Traceback" not in log
    time.sleep(0.5)  # the server notices the closes
    again = RawClient.connect(server.ldap_port)
    assert answered(again)
    again.close()


def test_a_silent_connection_is_closed_after_the_idle_timeout(server: LdapServer) -> None:
    client = RawClient.connect(server.ldap_port)
    assert answered(client)
    started = time.monotonic()
    assert client.closed_with_notice(timeout=IDLE_TIMEOUT + 10) == ADMIN_LIMIT_EXCEEDED
    assert IDLE_TIMEOUT - 0.5 <= time.monotonic() - started < IDLE_TIMEOUT + 5


def test_half_a_request_that_stalls_is_closed_after_the_pdu_timeout(server: LdapServer) -> None:
    client = RawClient.connect(server.ldap_port)
    wire = pureldap.LDAPMessage(pureldap.LDAPExtendedRequest(requestName=WHO_AM_I), id=1).toWire()
    started = time.monotonic()
    client.sock.sendall(wire[:6])
    assert client.closed_with_notice(timeout=10) == ADMIN_LIMIT_EXCEEDED
    assert time.monotonic() - started < IDLE_TIMEOUT  # the shorter deadline applied


def test_an_account_gets_its_own_size_limit(server: LdapServer) -> None:
    require_service("ldap-utils")
    base = f"ou=users,{server.base_dn}"
    alice = Credentials(server.user_dn("alice"), ALICE_PASSWORD)
    bob = Credentials(server.user_dn("bob"), BOB_PASSWORD)
    limited = ldapsearch(server, base, "(objectClass=posixAccount)", ["cn"], bind=alice)
    assert limited.result.returncode == SIZE_LIMIT_EXCEEDED, limited.result.describe()
    assert len(limited.dns) == 2
    full = ldapsearch(server, base, "(objectClass=posixAccount)", ["cn"], bind=bob)
    assert full.result.returncode == SUCCESS, full.result.describe()
    assert len(full.dns) == 3
