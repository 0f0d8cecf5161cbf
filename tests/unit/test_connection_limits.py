"""Per-connection limits, back-pressure and graceful shutdown, bytes in and bytes out.

The connection runs on a ``StringTransport`` with a ``task.Clock``: idle and
incomplete-request deadlines, the operations limit, per-identity search limits and
the shutdown drain are driven by hand, without sockets or sleeping.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

import pytest
from fakes import FakeDirectory, run_blocking
from ldaptor.protocols import pureldap
from test_protocol import (
    ALICE_DN,
    BASE,
    BOB_DN,
    NOTICE_OF_DISCONNECTION,
    USERS,
    WHO_AM_I,
    Client,
    make_context,
    make_directory,
)
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from ldapsrv.ldap.limits import (
    ConnectionLimits,
    ConnectionTracker,
    IdentityLimits,
    SearchLimit,
    parse_networks,
)
from ldapsrv.ldap.server import ServerContext

BUSY, UNAVAILABLE, ADMIN_LIMIT = 51, 52, 11


class HeldBlocking:
    """``run_blocking`` whose calls wait until the test releases them."""

    def __init__(self) -> None:
        self.held: list[tuple[Callable[[], Any], Deferred[Any]]] = []

    def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        self.held.append((lambda: fn(*args, **kwargs), d))
        return d

    def release(self) -> None:
        held, self.held = self.held, []
        for call, d in held:
            run_blocking(call).chainDeferred(d)


def context(
    directory: FakeDirectory | None = None, clock: Clock | None = None, **limits: Any
) -> ServerContext:
    ctx = make_context(directory or make_directory())
    ctx.settings = dataclasses.replace(ctx.settings, connections=ConnectionLimits(**limits))
    ctx.clock = clock
    ctx.connections = ConnectionTracker(clock.seconds if clock else (lambda: 0.0))
    return ctx


def connect(ctx: ServerContext, host: str = "192.0.2.1") -> Client:
    return Client(ctx, StringTransport(peerAddress=IPv4Address("TCP", host, 40000)))


def notice(client: Client) -> int | None:
    """The result code of a Notice of Disconnection the client got, if any."""
    for message in client.receive():
        value = message.value
        if isinstance(value, pureldap.LDAPExtendedResponse) and message.id == 0:
            assert value.responseName == NOTICE_OF_DISCONNECTION
            return int(value.resultCode)
    return None


def whoami_request(client: Client) -> int:
    return client.send(pureldap.LDAPExtendedRequest(requestName=WHO_AM_I))


# -- admission ------------------------------------------------------------------------


def test_a_connection_beyond_the_total_cap_is_told_busy_and_closed() -> None:
    ctx = context(max_connections=2)
    first, second = connect(ctx, "192.0.2.1"), connect(ctx, "192.0.2.2")
    third = connect(ctx, "192.0.2.3")
    assert notice(third) == BUSY and third.transport.disconnecting
    assert not first.transport.disconnecting and not second.transport.disconnecting
    first.conn.connectionLost()
    fourth = connect(ctx, "192.0.2.4")
    assert not fourth.transport.disconnecting
    assert len(ctx.connections) == 2


def test_the_per_address_cap_counts_each_address_and_spares_exempt_networks() -> None:
    ctx = context(
        max_connections_per_address=2,
        per_address_exempt=parse_networks("x", ["127.0.0.0/8"]),
    )
    clients = [connect(ctx, "192.0.2.9") for _ in range(3)]
    assert [c.transport.disconnecting for c in clients] == [False, False, True]
    assert not connect(ctx, "192.0.2.10").transport.disconnecting  # another address
    loopback = [connect(ctx, "127.0.0.1") for _ in range(5)]
    assert not any(c.transport.disconnecting for c in loopback)


def test_refusals_are_logged_once_per_address_and_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    ctx = context(clock=clock, max_connections_per_address=1)
    connect(ctx, "192.0.2.5")
    with caplog.at_level(logging.WARNING, logger="ldapsrv.limits"):
        for _ in range(50):
            connect(ctx, "192.0.2.5")
        clock.advance(61)
        connect(ctx, "192.0.2.5")
    refusals = [r for r in caplog.records if "refusing connections from 192.0.2.5" in r.message]
    assert len(refusals) == 2
    assert not any(r.exc_info for r in caplog.records)


# -- outstanding operations ---------------------------------------------------------------


def search_request(client: Client) -> int:
    return client.send(
        pureldap.LDAPSearchRequest(
            baseObject=USERS.encode(),
            scope=2,
            filter=pureldap.LDAPFilter_equalityMatch(
                attributeDesc=pureldap.LDAPAttributeDescription("uid"),
                assertionValue=pureldap.LDAPAssertionValue("alice"),
            ),
            attributes=[b"1.1"],
        )
    )


def test_requests_beyond_the_outstanding_limit_wait_unread_until_one_finishes() -> None:
    held = HeldBlocking()
    ctx = context(max_outstanding_operations=2)
    ctx.settings = dataclasses.replace(ctx.settings, anonymous_read=True)
    ctx.engine.blocking = held  # type: ignore[assignment]
    client = connect(ctx)
    for _ in range(3):
        search_request(client)
    whoami_request(client)
    assert len(held.held) == 2  # the third search and the WhoAmI wait
    assert client.transport.producerState == "paused"  # and the socket is not read
    assert len(client.conn.backlog) == 2
    for _ in range(20):  # each search reads a few sources, one query each
        held.release()
    answered = [
        m.id
        for m in client.receive()
        if isinstance(m.value, (pureldap.LDAPSearchResultDone, pureldap.LDAPExtendedResponse))
    ]
    assert sorted(answered) == [1, 2, 3, 4]
    assert answered.index(4) > max(answered.index(1), answered.index(2))
    assert client.transport.producerState == "producing"


# -- idle connections and stalled requests ------------------------------------------------


def test_an_idle_connection_is_told_and_closed_after_idle_timeout() -> None:
    clock = Clock()
    client = connect(context(clock=clock, idle_timeout=300))
    clock.advance(200)
    assert client.whoami() == b""  # activity pushes the deadline back
    clock.advance(299)
    assert not client.transport.disconnecting
    clock.advance(2)
    assert notice(client) == ADMIN_LIMIT and client.transport.disconnecting


def test_an_operation_in_progress_is_not_idleness() -> None:
    clock = Clock()
    held = HeldBlocking()
    ctx = context(clock=clock, idle_timeout=10)
    ctx.run_blocking = held.run
    client = connect(ctx)
    client.send(pureldap.LDAPBindRequest(dn=ALICE_DN.encode(), auth=b"alice-pw"))
    clock.advance(25)
    assert not client.transport.disconnecting
    held.release()
    clock.advance(11)
    assert client.transport.disconnecting


def test_half_a_request_that_stalls_is_closed_after_pdu_timeout() -> None:
    clock = Clock()
    client = connect(context(clock=clock, idle_timeout=300, pdu_timeout=30))
    wire = pureldap.LDAPMessage(pureldap.LDAPExtendedRequest(requestName=WHO_AM_I), id=1).toWire()
    client.send_bytes(wire[:5])
    clock.advance(20)
    client.send_bytes(wire[5:8])  # trickling bytes does not extend the deadline
    clock.advance(11)
    assert notice(client) == ADMIN_LIMIT and client.transport.disconnecting


def test_a_closed_client_that_reads_nothing_is_aborted() -> None:
    clock = Clock()
    client = connect(context(clock=clock, idle_timeout=5))
    clock.advance(6)
    assert client.transport.disconnecting
    client.conn.transport.abortConnection = lambda: aborted.append(True)  # type: ignore[method-assign]
    aborted: list[bool] = []
    clock.advance(10)
    assert aborted == [True]


# -- back-pressure -------------------------------------------------------------------------


def test_a_search_stops_rendering_while_the_client_does_not_read() -> None:
    ctx = context()
    ctx.settings = dataclasses.replace(ctx.settings, anonymous_read=True)
    client = connect(ctx)
    client.conn.flow.pauseProducing()  # the transport's buffer is full
    assert client.transport.producerState == "paused"
    client.send(
        pureldap.LDAPSearchRequest(
            baseObject=USERS.encode(),
            scope=2,
            filter=pureldap.LDAPFilter_present("objectClass"),
            attributes=[b"1.1"],
        )
    )
    assert client.receive() == []  # nothing rendered while the client is not reading
    client.conn.flow.resumeProducing()
    messages = client.receive()
    assert len(messages) == 27  # ou=users, every person, then the result
    assert isinstance(messages[-1].value, pureldap.LDAPSearchResultDone)
    assert messages[-1].value.resultCode == 0
    assert client.transport.producerState == "producing"


# -- per-identity search limits ---------------------------------------------------------------


def test_an_identity_gets_its_own_size_limit() -> None:
    directory = make_directory()
    ctx = context(directory)
    ctx.settings = dataclasses.replace(
        ctx.settings,
        anonymous_read=True,
        size_limit=0,
        identity_limits=IdentityLimits.of({"Alice": SearchLimit(size_limit=2, time_limit=0)}),
    )
    alice = connect(ctx)
    assert alice.bind(ALICE_DN, b"alice-pw") == 0
    anonymous = connect(ctx)
    bob = connect(ctx)
    assert bob.bind(BOB_DN, b"bob-pw") == 0
    entries, done, _ = anonymous.search(BASE, "(objectClass=posixAccount)")
    assert done.resultCode == 0 and len(entries) == 25
    entries, done, _ = alice.search(BASE, "(objectClass=posixAccount)")
    assert done.resultCode == 4 and len(entries) <= 2


# -- shutdown ----------------------------------------------------------------------------------


def test_shutdown_lets_an_operation_finish_refuses_new_ones_then_says_goodbye() -> None:
    clock = Clock()
    held = HeldBlocking()
    ctx = context(clock=clock)
    ctx.run_blocking = held.run
    busy, idle = connect(ctx), connect(ctx, "192.0.2.7")
    busy.send(pureldap.LDAPBindRequest(dn=ALICE_DN.encode(), auth=b"alice-pw"))
    drained = ctx.connections.shutdown(clock, grace=10)
    assert notice(idle) == UNAVAILABLE and idle.transport.disconnecting
    idle.conn.connectionLost()
    mid = whoami_request(busy)
    (refused,) = busy.receive()
    assert (refused.id, refused.value.resultCode) == (mid, UNAVAILABLE)
    held.release()
    messages = busy.receive()
    assert [m.id for m in messages] == [1, 0]  # the bind's answer, then the notice
    assert int(messages[0].value.resultCode) == 0
    busy.conn.connectionLost()
    assert drained.called


def test_shutdown_closes_whatever_is_left_when_the_grace_period_ends() -> None:
    clock = Clock()
    held = HeldBlocking()
    ctx = context(clock=clock)
    ctx.run_blocking = held.run
    busy = connect(ctx)
    busy.send(pureldap.LDAPBindRequest(dn=ALICE_DN.encode(), auth=b"alice-pw"))
    drained = ctx.connections.shutdown(clock, grace=10)
    clock.advance(9)
    assert not busy.transport.disconnecting
    clock.advance(2)
    assert notice(busy) == UNAVAILABLE and busy.transport.disconnecting
    busy.conn.connectionLost()
    assert drained.called
