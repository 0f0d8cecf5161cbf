"""A raw-socket LDAP client for the tests that need control below libldap: stop
reading, send half a message, watch for a Notice of Disconnection, time replies.

Requests are encoded and responses decoded with ldaptor (an independent codec).
Every wait is bounded.
"""

from __future__ import annotations

import socket
import ssl
import time
from typing import Any

from ldaptor.protocols import pureber, pureldap

NOTICE_OF_DISCONNECTION = b"1.3.6.1.4.1.1466.20036"
WHO_AM_I = b"1.3.6.1.4.1.4203.1.11.3"


def _decoder() -> Any:
    return pureldap.LDAPBERDecoderContext_TopLevel(
        inherit=pureldap.LDAPBERDecoderContext_LDAPMessage(
            fallback=pureldap.LDAPBERDecoderContext(fallback=pureber.BERDecoderContext()),
            inherit=pureldap.LDAPBERDecoderContext(fallback=pureber.BERDecoderContext()),
        )
    )


class RawClient:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""
        self.last_id = 0
        self.eof = False

    @classmethod
    def connect(
        cls,
        port: int,
        *,
        host: str = "127.0.0.1",
        receive_buffer: int | None = None,
        tls: ssl.SSLContext | None = None,
        timeout: float = 10.0,
    ) -> RawClient:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if receive_buffer is not None:  # before connect, so the window stays small
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.settimeout(timeout)
        sock.connect((host, port))
        if tls is not None:
            sock = tls.wrap_socket(sock, server_hostname=host)
        return cls(sock)

    def close(self) -> None:
        self.sock.close()

    # -- sending
    def send(self, op: Any, message_id: int | None = None) -> int:
        if message_id is None:
            self.last_id += 1
            message_id = self.last_id
        self.sock.sendall(pureldap.LDAPMessage(op, id=message_id).toWire())
        return message_id

    def bind(self, dn: str = "", password: str = "") -> int:
        return self.send(pureldap.LDAPBindRequest(dn=dn.encode(), auth=password.encode()))

    def whoami(self) -> int:
        return self.send(pureldap.LDAPExtendedRequest(requestName=WHO_AM_I))

    def search(self, base: str, attributes: tuple[str, ...] = ("1.1",), **kw: Any) -> int:
        return self.send(
            pureldap.LDAPSearchRequest(
                baseObject=base.encode(),
                scope=kw.pop("scope", 2),
                filter=pureldap.LDAPFilter_present("objectClass"),
                attributes=[a.encode() for a in attributes],
                **kw,
            )
        )

    # -- receiving
    def _fill(self, deadline: float) -> bool:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no LDAP message within the time allowed")
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except (ConnectionResetError, ssl.SSLError, OSError) as exc:
            if isinstance(exc, TimeoutError | socket.timeout):
                raise TimeoutError("no LDAP message within the time allowed") from exc
            chunk = b""
        if not chunk:
            self.eof = True
            return False
        self.buffer += chunk
        return True

    def next_message(self, timeout: float = 10.0) -> Any | None:
        """The next message, or None at end of stream."""
        deadline = time.monotonic() + timeout
        while True:
            if self.buffer:
                try:
                    message, used = pureber.berDecodeObject(_decoder(), self.buffer)
                except pureber.BERExceptionInsufficientData:
                    message, used = None, 0
                if message is not None:
                    self.buffer = self.buffer[used:]
                    return message
            if self.eof or not self._fill(deadline):
                return None

    def until_done(self, message_id: int, timeout: float = 30.0) -> tuple[list[Any], Any]:
        """Messages up to the final response to ``message_id``: (entries, final)."""
        deadline = time.monotonic() + timeout
        entries = []
        while True:
            message = self.next_message(max(0.01, deadline - time.monotonic()))
            if message is None:
                raise AssertionError(f"connection closed before the answer to {message_id}")
            if message.id != message_id:
                continue
            if isinstance(message.value, pureldap.LDAPSearchResultEntry):
                entries.append(message.value)
                continue
            return entries, message.value

    def closed_with_notice(self, timeout: float = 10.0) -> int | None:
        """Read to the end of the stream; the Notice of Disconnection's code, if any."""
        deadline = time.monotonic() + timeout
        code = None
        while True:
            message = self.next_message(max(0.01, deadline - time.monotonic()))
            if message is None:
                return code
            value = message.value
            if message.id == 0 and isinstance(value, pureldap.LDAPExtendedResponse):
                assert value.responseName == NOTICE_OF_DISCONNECTION
                code = int(value.resultCode)


def refused(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a TCP connection to the port is refused right now."""
    try:
        with socket.create_connection((host, port), timeout=2):
            return False
    except ConnectionRefusedError:
        return True
