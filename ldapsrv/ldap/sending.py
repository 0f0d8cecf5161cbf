"""Writing a reply to a plain TCP connection without a trip round the reactor.

Twisted's ``transport.write`` only queues: it registers the socket for
writability (an ``epoll_ctl``), and the reactor's next turn sends the bytes and
unregisters it (another). A reply of a few hundred bytes to a socket with
nothing queued fits in the kernel's send buffer at once, so ``send_reply`` hands
it straight to ``send(2)`` and queues only what the socket did not take.

It does so only where it provably keeps the order and the accounting of the
transport's own queue: Twisted's own TCP connection (``tcp.Connection``, so not
a wrapper such as LDAPS's TLS protocol, which hands attribute reads on to the
socket below it) without StartTLS, connected, not closing, with nothing queued.
Anything else gets ``write`` as usual.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.tcp import Connection


def send_reply(transport: Any, data: bytes) -> None:
    if not _idle_plain_socket(transport):
        transport.write(data)
        return
    try:
        sent = transport.socket.send(data)
    except OSError:
        sent = 0  # EAGAIN, or a broken connection: the transport's own write finds out
    if sent < len(data):
        transport.write(data[sent:] if sent else data)


def _idle_plain_socket(transport: Any) -> bool:
    if not isinstance(transport, Connection):
        return False
    try:
        return bool(
            transport.TLS is False
            and transport.connected
            and not transport.disconnecting
            and not transport._writeDisconnected
            and transport.offset == len(transport.dataBuffer)
            and transport._tempDataLen == 0
            and transport.socket is not None
        )
    except AttributeError:
        return False
