"""A minimal LDAP client over a raw socket, for tests that need to control the bytes.

Requests are encoded by ldaptor (an implementation independent of the server's
codec) or given as raw bytes; responses are split into PDUs by the server's own
framer and decoded by ldaptor, so a malformed response fails the test. Every read
is bounded by a timeout.
"""

from __future__ import annotations

import contextlib
import re
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from ldaptor import ldapfilter
from ldaptor.protocols import pureber, pureldap

from ldapsrv.ldap.framing import PDUFramer

NOTICE_OF_DISCONNECTION_OID = b"1.3.6.1.4.1.1466.20036"

#: What must never reach a client in a diagnostic message: tracebacks, source paths,
#: driver names, SQL.
INTERNALS = re.compile(
    r"Traceback|File \"|\.py\b|/usr/|/work/|site-packages|sqlalchemy|sqlite3|psycopg|pymysql"
    r"|SELECT |INSERT |UPDATE .* SET|\bFROM [a-z_]+\b WHERE"
)
FINAL_RESPONSES = (
    pureldap.LDAPBindResponse,
    pureldap.LDAPSearchResultDone,
    pureldap.LDAPModifyResponse,
    pureldap.LDAPAddResponse,
    pureldap.LDAPDelResponse,
    pureldap.LDAPModifyDNResponse,
    pureldap.LDAPCompareResponse,
    pureldap.LDAPExtendedResponse,
)


def ldaptor_decoder() -> Any:
    """ldaptor's decoder context for whole LDAPMessages, as its client uses it."""
    return pureldap.LDAPBERDecoderContext_TopLevel(
        inherit=pureldap.LDAPBERDecoderContext_LDAPMessage(
            fallback=pureldap.LDAPBERDecoderContext(fallback=pureber.BERDecoderContext()),
            inherit=pureldap.LDAPBERDecoderContext(fallback=pureber.BERDecoderContext()),
        )
    )


def decode_response(pdu: bytes) -> Any:
    """One LDAPMessage decoded by ldaptor; raises if it is not well formed."""
    message, used = pureber.berDecodeObject(ldaptor_decoder(), pdu)
    if message is None or used != len(pdu):
        raise AssertionError(f"malformed response PDU: {pdu[:64].hex()}")
    return message


def is_notice_of_disconnection(message: Any) -> bool:
    value = message.value
    return (
        message.id == 0
        and isinstance(value, pureldap.LDAPExtendedResponse)
        and value.responseName == NOTICE_OF_DISCONNECTION_OID
    )


def encode_request(op: Any, message_id: int, controls: list[Any] | None = None) -> bytes:
    data: bytes = pureldap.LDAPMessage(op, id=message_id, controls=controls).toWire()
    return data


def search_request(
    base: str,
    filter_text: str = "(objectClass=*)",
    scope: int = 2,
    attributes: tuple[str, ...] = (),
) -> Any:
    return pureldap.LDAPSearchRequest(
        baseObject=base.encode(),
        scope=scope,
        filter=ldapfilter.parseFilter(filter_text),
        attributes=[a.encode() for a in attributes],
    )


class ConnectionClosed(Exception):
    """The server closed the connection."""


@dataclass
class Outcome:
    """The result of one operation: its code and the entries a search returned."""

    code: int
    message: str
    entries: list[Any] = field(default_factory=list)


class WireClient:
    """One LDAP connection; ``timeout`` bounds every wait for the server."""

    def __init__(self, host: str, port: int, timeout: float = 10.0) -> None:
        self.timeout = timeout
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.framer = PDUFramer(max_pdu_bytes=64 * 1024 * 1024)
        self.pending: list[bytes] = []
        self.next_id = 1

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def __enter__(self) -> WireClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_message(self, timeout: float | None = None) -> Any:
        """The next response (ldaptor LDAPMessage); ConnectionClosed at EOF,
        TimeoutError when nothing arrives within ``timeout``."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not self.pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no response from the server")
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                raise
            except ConnectionResetError as exc:
                raise ConnectionClosed("connection reset") from exc
            if not data:
                raise ConnectionClosed("connection closed")
            self.pending.extend(self.framer.feed(data))
        return decode_response(self.pending.pop(0))

    def operation(self, op: Any, timeout: float | None = None) -> Outcome:
        """Send ``op`` and collect responses up to its final one."""
        message_id = self.next_id
        self.next_id += 1
        self.send(encode_request(op, message_id))
        entries = []
        while True:
            message = self.read_message(timeout)
            if is_notice_of_disconnection(message):
                raise ConnectionClosed(f"notice of disconnection: {message.value.errorMessage!r}")
            if message.id != message_id:
                raise AssertionError(f"response for message {message.id}, wanted {message_id}")
            if isinstance(message.value, pureldap.LDAPSearchResultEntry):
                entries.append(message.value)
            elif isinstance(message.value, FINAL_RESPONSES):
                error = message.value.errorMessage
                text = error.decode("utf-8", "replace") if isinstance(error, bytes) else str(error)
                return Outcome(int(message.value.resultCode), text, entries)

    def bind(self, dn: str, password: str, timeout: float | None = None) -> Outcome:
        op = pureldap.LDAPBindRequest(dn=dn.encode(), auth=password.encode())
        return self.operation(op, timeout)

    def search(
        self,
        base: str,
        filter_text: str = "(objectClass=*)",
        scope: int = 2,
        timeout: float | None = None,
    ) -> Outcome:
        return self.operation(search_request(base, filter_text, scope), timeout)
