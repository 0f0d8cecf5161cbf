"""Failed-bind throttling as a brute-forcer and a legitimate client see it (issue 4).

Binds go over raw sockets with a hand-encoded BindRequest, so that each attempt can
choose its source address on the loopback network (127.0.0.2, 127.0.0.3, ...): the
server then sees distinct client addresses without leaving the host. A small policy
(first failure free, then 0.2 s doubling up to 1 s; a (DN, address) pair locked after 4
failures, an address after 6) keeps every test to seconds; every loop is bounded in
count and every socket operation in time.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from e2e.harness import LdapServer, fresh_database, serving, start_server

SUCCESS = 0
INVALID_CREDENTIALS = 49
SOCKET_TIMEOUT = 10.0

FREE_FAILURES = 1
BASE_DELAY = 0.2
MAX_DELAY = 1.0
PAIR_LOCKOUT = 4
ADDRESS_LOCKOUT = 6
THROTTLE = {
    "enabled": True,
    "free_failures": FREE_FAILURES,
    "base_delay": BASE_DELAY,
    "max_delay": MAX_DELAY,
    "window": 900,
    "pair_lockout_failures": PAIR_LOCKOUT,
    "address_lockout_failures": ADDRESS_LOCKOUT,
    "lockout": 900,
}
#: Timers may fire a little early; a delay is "served" when at least this much of it was.
TIMER_SLACK = 0.95


def expected_delay(failures: int) -> float:
    """The documented policy: failures beyond the free ones wait base_delay, doubling,
    capped at max_delay."""
    excess = failures - FREE_FAILURES
    return 0.0 if excess <= 0 else min(MAX_DELAY, BASE_DELAY * 2 ** (excess - 1))


def password_of(name: str) -> str:
    return f"{name}-Secret-Password-1"


# ------------------------------------------------------------ a minimal LDAP client


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def _tlv(tag: int, payload: bytes) -> bytes:
    return bytes([tag]) + _length(len(payload)) + payload


def bind_request(message_id: int, dn: str, password: str) -> bytes:
    """LDAPMessage { messageID, BindRequest { version 3, name, simple password } }."""
    bind = _tlv(
        0x60,  # [APPLICATION 0] BindRequest
        _tlv(0x02, b"\x03") + _tlv(0x04, dn.encode()) + _tlv(0x80, password.encode()),
    )
    return _tlv(0x30, _tlv(0x02, bytes([message_id])) + bind)


def _read_exactly(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise AssertionError(f"connection closed after {len(data)} of {count} bytes")
        data += chunk
    return data


def _read_message(sock: socket.socket) -> bytes:
    """One LDAPMessage's content octets."""
    tag, first = _read_exactly(sock, 2)
    assert tag == 0x30, f"not an LDAPMessage: tag {tag:#x}"
    length = first
    if first & 0x80:
        length = int.from_bytes(_read_exactly(sock, first & 0x7F), "big")
    return _read_exactly(sock, length)


def _split(data: bytes, pos: int) -> tuple[int, bytes, int]:
    """(tag, content, next position) of the TLV at ``pos``."""
    tag, first = data[pos], data[pos + 1]
    pos += 2
    length = first
    if first & 0x80:
        size = first & 0x7F
        length = int.from_bytes(data[pos : pos + size], "big")
        pos += size
    return tag, data[pos : pos + length], pos + length


def bind_result_code(message: bytes) -> int:
    _, _, pos = _split(message, 0)  # messageID
    tag, response, _ = _split(message, pos)
    assert tag == 0x61, f"not a BindResponse: tag {tag:#x}"
    tag, code, _ = _split(response, 0)
    assert tag == 0x0A, f"BindResponse without a resultCode: tag {tag:#x}"
    return int.from_bytes(code, "big")


@dataclass(frozen=True)
class Attempt:
    code: int
    seconds: float  # from sending the request to reading the response


def bind_from(source: str, server: LdapServer, dn: str, password: str) -> Attempt:
    """A simple bind on a new connection from loopback address ``source``."""
    with socket.create_connection(
        (server.host, server.ldap_port), timeout=SOCKET_TIMEOUT, source_address=(source, 0)
    ) as sock:
        assert sock.getsockname()[0] == source
        sock.sendall(bind_request(1, dn, password))
        started = time.monotonic()
        code = bind_result_code(_read_message(sock))
        return Attempt(code, time.monotonic() - started)


def throttled(server: LdapServer) -> list[dict[str, Any]]:
    """``ldapsrv status --json``'s throttled keys."""
    entries: list[dict[str, Any]] = server.ctl_json("status")["throttled"]
    return entries


def locked_subjects(server: LdapServer) -> set[tuple[str, str]]:
    return {(e["kind"], e["subject"]) for e in throttled(server) if e["locked_until"]}


def assert_slowed_down(attempts: list[Attempt], first_failure: int = 1) -> None:
    """Each failure waited at least the policy's delay, and the waits grew until the cap."""
    grew = 0
    for number, attempt in enumerate(attempts, start=first_failure):
        assert attempt.code == INVALID_CREDENTIALS, (number, attempt)
        assert attempt.seconds >= expected_delay(number) * TIMER_SLACK, (number, attempts)
        if number > first_failure and expected_delay(number) > expected_delay(number - 1):
            previous = attempts[number - first_failure - 1]
            assert attempt.seconds > previous.seconds, (number, attempts)
            grew += 1
    assert grew >= 2, attempts


# ------------------------------------------------------------------ one server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LdapServer]:
    workdir = tmp_path_factory.mktemp("throttle")
    with serving("sqlite", workdir, settings={"throttle": THROTTLE}) as server:
        for name in ("alice", "bob", "carol"):
            server.add_user(name, password_of(name))
        yield server


def test_wrong_binds_from_one_address_are_slowed_then_refused_while_another_address_binds(
    server: LdapServer,
) -> None:
    attacker, legitimate = "127.0.0.2", "127.0.0.3"
    dn = server.user_dn("alice")
    started = time.monotonic()
    attempts = [bind_from(attacker, server, dn, f"guess-{i}") for i in range(PAIR_LOCKOUT)]
    assert attempts[0].seconds < expected_delay(2), "the first failure is free"
    assert_slowed_down(attempts)

    # Locked out: even the right password is refused from the attacking address...
    refused = bind_from(attacker, server, dn, password_of("alice"))
    assert refused.code == INVALID_CREDENTIALS
    # ...while alice's own host, which has not been failing, still binds.
    assert bind_from(legitimate, server, dn, password_of("alice")).code == SUCCESS
    # The uid= spelling of the DN is the same account: locked out too.
    uid_dn = f"uid=alice,ou=users,{server.base_dn}"
    assert bind_from(attacker, server, uid_dn, password_of("alice")).code == INVALID_CREDENTIALS
    assert ("pair", f"alice from {attacker}") in locked_subjects(server)
    assert time.monotonic() - started < 30


def test_an_address_failing_for_many_accounts_is_refused_for_all_while_others_bind(
    server: LdapServer,
) -> None:
    attacker, legitimate = "127.0.0.4", "127.0.0.5"
    attempts = [
        bind_from(attacker, server, server.user_dn(f"guess{i}"), "wrong-password")
        for i in range(ADDRESS_LOCKOUT)
    ]
    # Every pair failed once only: the address's count is what slows them down.
    assert_slowed_down(attempts)
    bob = server.user_dn("bob")
    assert bind_from(attacker, server, bob, password_of("bob")).code == INVALID_CREDENTIALS
    assert bind_from(legitimate, server, bob, password_of("bob")).code == SUCCESS
    assert ("address", attacker) in locked_subjects(server)


def test_a_successful_bind_clears_the_address_and_pair_counters(server: LdapServer) -> None:
    source = "127.0.0.6"
    dn = server.user_dn("carol")
    failures = [bind_from(source, server, dn, f"typo-{i}") for i in range(PAIR_LOCKOUT - 1)]
    assert_slowed_down(failures)
    assert any(e["subject"] == f"carol from {source}" for e in throttled(server))
    assert bind_from(source, server, dn, password_of("carol")).code == SUCCESS
    assert not any(source in e["subject"] for e in throttled(server))
    # Counting starts again: one more failure is not the lock-out it would have been.
    assert bind_from(source, server, dn, "one-more-typo").code == INVALID_CREDENTIALS
    assert bind_from(source, server, dn, password_of("carol")).code == SUCCESS


# --------------------------------------------------- two servers, one database


@dataclass
class Pair:
    a: LdapServer
    b: LdapServer

    def log_sections(self) -> list[tuple[str, str]]:
        return [*self.a.log_sections(), *self.b.log_sections()]


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    shared = tmp_path_factory.mktemp("throttle-shared")
    settings = {"throttle": THROTTLE}
    with fresh_database("postgresql", shared) as url, contextlib.ExitStack() as stack:
        a = start_server(shared / "a", url, settings=settings)
        stack.callback(a.stop)
        b = start_server(shared / "b", url, settings=settings)
        stack.callback(b.stop)
        a.add_user("dave", password_of("dave"))
        yield Pair(a, b)


def test_failures_on_two_servers_sharing_a_database_add_up_to_one_lock_out(pair: Pair) -> None:
    attacker, legitimate = "127.0.0.7", "127.0.0.8"
    dn = pair.a.user_dn("dave")
    servers = [pair.a, pair.b] * (PAIR_LOCKOUT // 2)
    attempts = [bind_from(attacker, s, dn, f"guess-{i}") for i, s in enumerate(servers)]
    # Alternating servers, each failure still waits for the count of both.
    assert_slowed_down(attempts)
    for server in (pair.a, pair.b):
        right = bind_from(attacker, server, dn, password_of("dave"))
        assert right.code == INVALID_CREDENTIALS, server.ldap_url
        assert ("pair", f"dave from {attacker}") in locked_subjects(server)
    assert bind_from(legitimate, pair.b, dn, password_of("dave")).code == SUCCESS
    assert bind_from(legitimate, pair.a, dn, password_of("dave")).code == SUCCESS


def test_a_lock_out_set_through_one_server_is_enforced_by_the_other(pair: Pair) -> None:
    attacker = "127.0.0.9"
    dn = pair.a.user_dn("dave")
    attempts = [bind_from(attacker, pair.a, dn, f"guess-{i}") for i in range(PAIR_LOCKOUT)]
    assert_slowed_down(attempts)
    assert bind_from(attacker, pair.b, dn, password_of("dave")).code == INVALID_CREDENTIALS
    assert bind_from("127.0.0.10", pair.b, dn, password_of("dave")).code == SUCCESS
