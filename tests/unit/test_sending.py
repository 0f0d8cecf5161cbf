"""send_reply: straight to the socket when Twisted's plain TCP connection has
nothing queued, through ``transport.write`` otherwise -- and whatever the socket
does not take is queued after what it did, so the peer sees the bytes in order,
exactly once. Anything that is not a ``tcp.Connection`` (a TLS wrapper that hands
attribute reads on to the connection below it, a test double) gets ``write``."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
from twisted.internet import tcp
from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactor

from ldapsrv.ldap.sending import send_reply

REPLY = b"0\x0c\x02\x01\x01e\x07\n\x01\x00\x04\x00\x04\x00"  # a searchResultDone


class FakeTransport(tcp.Connection):
    """A Twisted TCP connection whose state is set by hand: the attributes of
    ``FileDescriptor`` that send_reply reads, idle and plain by default, with
    ``write`` recorded instead of queued (no reactor, no protocol)."""

    def __init__(self, skt: socket.socket | None) -> None:  # no super(): nothing else is needed
        self.TLS = False
        self.connected = 1
        self.disconnecting = False
        self._writeDisconnected = False
        self.offset = 0
        self.dataBuffer = b""
        self._tempDataLen = 0
        self.socket = skt  # type: ignore[assignment]
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)


class LookAlike:
    """Every attribute send_reply reads, idle and plain -- but not a Twisted
    connection, so nothing says that sending on its socket keeps the order."""

    def __init__(self, skt: socket.socket) -> None:
        self.TLS = False
        self.connected = 1
        self.disconnecting = False
        self._writeDisconnected = False
        self.offset = 0
        self.dataBuffer = b""
        self._tempDataLen = 0
        self.socket = skt
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)


class Wrapper:
    """Like LDAPS's TLS protocol: its own ``write`` (which encrypts), every other
    attribute read handed on to the plain connection below it."""

    def __init__(self, below: FakeTransport) -> None:
        self.below = below
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.below, name)


class WriteOnly:
    """A transport with nothing but ``write``."""

    def __init__(self) -> None:
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    ours, peer = socket.socketpair()
    ours.setblocking(False)
    peer.setblocking(False)
    yield ours, peer
    ours.close()
    peer.close()


def received(peer: socket.socket) -> bytes:
    """Everything the peer can read now, without waiting."""
    chunks = []
    while True:
        try:
            chunk = peer.recv(1 << 20)
        except BlockingIOError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def fill(ours: socket.socket) -> int:
    """Send until the socket takes no more; return how much it took."""
    total = 0
    block = b"\x00" * 65536
    while True:
        try:
            total += ours.send(block)
        except BlockingIOError:
            return total


# --------------------------------------------------------------------------- straight to the socket


def test_an_idle_plain_transport_sends_straight_to_the_socket(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, peer = pair
    transport = FakeTransport(ours)
    send_reply(transport, REPLY)
    assert transport.written == []
    assert received(peer) == REPLY


def test_successive_replies_arrive_in_order(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, peer = pair
    transport = FakeTransport(ours)
    replies = [bytes([n]) * (n + 1) for n in range(20)]
    for reply in replies:
        send_reply(transport, reply)
    assert transport.written == []
    assert received(peer) == b"".join(replies)


def test_a_fully_flushed_buffer_counts_as_idle(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, peer = pair
    transport = FakeTransport(ours)
    transport.dataBuffer = b"already sent"
    transport.offset = len(transport.dataBuffer)
    send_reply(transport, REPLY)
    assert transport.written == []
    assert received(peer) == REPLY


# --------------------------------------------------------------------------- through write


def assert_went_through_write(transport: Any, peer: socket.socket) -> None:
    """One reply, handed to the transport's own ``write``; nothing sent directly."""
    send_reply(transport, REPLY)
    assert transport.written == [REPLY]
    assert received(peer) == b""


@pytest.mark.parametrize(
    ("attribute", "value"),
    [
        ("_tempDataLen", 5),  # bytes written but not yet moved to dataBuffer
        ("dataBuffer", b"queued"),  # offset 0: nothing of it sent yet
        ("TLS", True),
        ("disconnecting", True),
        ("_writeDisconnected", True),
        ("connected", 0),
        ("socket", None),
    ],
)
def test_a_transport_that_is_not_idle_and_plain_gets_write(
    pair: tuple[socket.socket, socket.socket], attribute: str, value: object
) -> None:
    ours, peer = pair
    transport = FakeTransport(ours)
    setattr(transport, attribute, value)
    assert_went_through_write(transport, peer)


def test_a_partly_sent_buffer_means_queued(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, peer = pair
    transport = FakeTransport(ours)
    transport.dataBuffer = b"0123456789"
    transport.offset = 4
    assert_went_through_write(transport, peer)


def test_with_data_queued_every_reply_goes_through_write_in_order(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, peer = pair
    transport = FakeTransport(ours)
    transport._tempDataLen = 100
    replies = [b"first", b"second", b"third"]
    for reply in replies:
        send_reply(transport, reply)
    assert transport.written == replies
    assert received(peer) == b""


@pytest.mark.parametrize("missing", ["_tempDataLen", "socket"])
def test_a_connection_lacking_an_attribute_gets_write(
    pair: tuple[socket.socket, socket.socket], missing: str
) -> None:
    ours, peer = pair
    transport = FakeTransport(ours)
    delattr(transport, missing)  # set by Connection.__init__, no class default
    assert_went_through_write(transport, peer)


def test_a_look_alike_that_is_not_a_twisted_connection_gets_write(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, peer = pair
    transport = LookAlike(ours)
    assert_went_through_write(transport, peer)


def test_a_wrapper_reading_through_to_an_idle_connection_gets_write(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    """Sending on the socket below LDAPS's TLS layer would put plaintext on the wire."""
    ours, peer = pair
    below = FakeTransport(ours)
    wrapper = Wrapper(below)
    assert wrapper.TLS is False and wrapper.socket is ours  # it looks idle and plain
    send_reply(wrapper, REPLY)
    assert wrapper.written == [REPLY]
    assert below.written == []
    assert received(peer) == b""


def test_a_transport_with_only_write_gets_write() -> None:
    transport = WriteOnly()
    send_reply(transport, REPLY)
    send_reply(transport, b"more")
    assert transport.written == [REPLY, b"more"]


# ------------------------------------------------------------------ what the socket refuses


def test_what_the_socket_does_not_take_is_handed_to_write() -> None:
    ours, peer = socket.socketpair()
    try:
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        ours.setblocking(False)
        peer.setblocking(False)
        data = bytes(range(256)) * (4 * 1024 * 1024 // 256)  # 4 MiB, not periodic per byte
        transport = FakeTransport(ours)
        send_reply(transport, data)
        got = received(peer)
        assert 0 < len(got) < len(data)  # the socket took a part, not all
        assert len(transport.written) == 1
        rest = transport.written[0]
        assert len(got) + len(rest) == len(data)
        assert got + rest == data
    finally:
        ours.close()
        peer.close()


def test_a_full_socket_hands_everything_to_write(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, peer = pair
    filled = fill(ours)
    transport = FakeTransport(ours)
    send_reply(transport, REPLY)  # send raises EAGAIN
    assert transport.written == [REPLY]
    assert len(received(peer)) == filled  # only the filler reached the peer


def test_a_socket_whose_peer_is_gone_hands_everything_to_write() -> None:
    ours, peer = socket.socketpair()
    ours.setblocking(False)
    peer.close()
    try:
        with pytest.raises(OSError):
            ours.send(b"x")  # the condition send_reply must survive
        transport = FakeTransport(ours)
        send_reply(transport, REPLY)
        assert transport.written == [REPLY]
    finally:
        ours.close()


def test_a_closed_socket_hands_everything_to_write() -> None:
    ours, peer = socket.socketpair()
    ours.close()
    try:
        transport = FakeTransport(ours)
        send_reply(transport, REPLY)
        assert transport.written == [REPLY]
    finally:
        peer.close()


# ---------------------------------------------------------------- a real Twisted transport


class Silent(Protocol):
    pass


@pytest.fixture
def connection(
    pair: tuple[socket.socket, socket.socket],
) -> tuple[Any, socket.socket]:
    """A Twisted TCP connection object around one end of the pair, as a server
    has it once accepted (its reactor a memory fake: nothing runs by itself)."""
    ours, peer = pair
    protocol: Any = Silent()
    reactor: Any = MemoryReactor()  # type: ignore[no-untyped-call]
    conn: Any = tcp.Connection(ours, protocol, reactor)
    conn.connected = 1
    return conn, peer


def test_twisted_transports_have_the_attributes_read(
    connection: tuple[Any, socket.socket],
) -> None:
    conn, peer = connection
    send_reply(conn, REPLY)
    assert received(peer) == REPLY
    assert conn.dataBuffer == b"" and conn._tempDataLen == 0  # nothing was queued


def test_a_reply_after_queued_bytes_is_queued_behind_them(
    connection: tuple[Any, socket.socket],
) -> None:
    conn, peer = connection
    conn.write(b"queued-first;")  # waits for the reactor's next turn
    send_reply(conn, REPLY)
    send_reply(conn, b";last")
    assert received(peer) == b""  # nothing overtook the queue
    assert conn._tempDataLen == len(b"queued-first;") + len(REPLY) + len(b";last")
    conn.doWrite()  # the reactor's turn
    assert received(peer) == b"queued-first;" + REPLY + b";last"
    send_reply(conn, b"idle again")
    assert received(peer) == b"idle again"
    assert conn._tempDataLen == 0


def test_a_disconnecting_twisted_transport_is_not_written_to_directly(
    connection: tuple[Any, socket.socket],
) -> None:
    conn, peer = connection
    conn.disconnecting = True
    send_reply(conn, REPLY)
    assert received(peer) == b""
    assert conn._tempDataLen == len(REPLY)  # queued by its own write
