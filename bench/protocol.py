"""The client side of LDAP that the load generator needs, encoded once, checked cheaply.

Requests are built from ldapsrv's BER primitives (``ldapsrv.ldap.ber``) into whole
LDAPMessage PDUs ahead of time; the hot loop only sends bytes. Responses are read
just far enough to verify them: the operation tag, the result code and, for
paged searches, the cookie.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ldapsrv.ldap.ber import (
    INTEGER,
    OCTET_STRING,
    SEQUENCE,
    application,
    context,
    decode_integer,
    encode_boolean,
    encode_enumerated,
    encode_integer,
    encode_octet_string,
    encode_sequence,
    encode_tlv,
    read_header,
    read_tlv,
)

PAGED_RESULTS_OID = b"1.2.840.113556.1.4.319"
START_TLS_OID = b"1.3.6.1.4.1.1466.20037"

# Response operation tags (RFC 4511 section 4.2 ff.)
BIND_RESPONSE = application(1)
SEARCH_ENTRY = application(4)
SEARCH_DONE = application(5)
SEARCH_REFERENCE = application(19)
EXTENDED_RESPONSE = application(24)
RESULT_TAGS = frozenset({BIND_RESPONSE, SEARCH_DONE, EXTENDED_RESPONSE})
CONTROLS = context(0, constructed=True)

SCOPE_BASE, SCOPE_ONE, SCOPE_SUB = 0, 1, 2
SUCCESS = 0

# ------------------------------------------------------------------ filters


def equals(attribute: str, value: str) -> bytes:
    return encode_sequence(
        (encode_octet_string(attribute.encode()), encode_octet_string(value.encode())),
        tag=context(3, constructed=True),
    )


def present(attribute: str) -> bytes:
    return encode_tlv(context(7), attribute.encode())


def both(*filters: bytes) -> bytes:
    return encode_sequence(filters, tag=context(0, constructed=True))


def negate(inner: bytes) -> bytes:
    return encode_tlv(context(2, constructed=True), inner)


# ----------------------------------------------------------------- requests


def _message(message_id: int, op: bytes, controls: bytes = b"") -> bytes:
    return encode_sequence((encode_integer(message_id), op, controls))


def bind_request(message_id: int, dn: str, password: str) -> bytes:
    op = encode_sequence(
        (
            encode_integer(3),
            encode_octet_string(dn.encode()),
            encode_tlv(context(0), password.encode()),
        ),
        tag=application(0),
    )
    return _message(message_id, op)


def unbind_request(message_id: int) -> bytes:
    return _message(message_id, encode_tlv(application(2, constructed=False), b""))


def start_tls_request(message_id: int) -> bytes:
    op = encode_sequence((encode_tlv(context(0), START_TLS_OID),), tag=application(23))
    return _message(message_id, op)


def paged_control(size: int, cookie: bytes) -> bytes:
    value = encode_sequence((encode_integer(size), encode_octet_string(cookie)))
    control = encode_sequence(
        (encode_octet_string(PAGED_RESULTS_OID), encode_boolean(True), encode_octet_string(value))
    )
    return encode_sequence((control,), tag=CONTROLS)


def search_request(
    message_id: int,
    base: str,
    scope: int,
    search_filter: bytes,
    attributes: Sequence[str] = (),
    *,
    page_size: int | None = None,
    cookie: bytes = b"",
) -> bytes:
    op = encode_sequence(
        (
            encode_octet_string(base.encode()),
            encode_enumerated(scope),
            encode_enumerated(0),  # never deref aliases
            encode_integer(0),  # no size limit from the client
            encode_integer(0),  # no time limit from the client
            encode_boolean(False),
            search_filter,
            encode_sequence(encode_octet_string(a.encode()) for a in attributes),
        ),
        tag=application(3),
    )
    controls = paged_control(page_size, cookie) if page_size is not None else b""
    return _message(message_id, op, controls)


# ---------------------------------------------------------------- responses


class ResponseError(ValueError):
    """Bytes from the server that are not the LDAP the load generator expects."""


@dataclass(frozen=True, slots=True)
class Response:
    """One LDAPMessage from the server, read as far as verification needs."""

    message_id: int
    tag: int
    result_code: int  # -1 for messages without an LDAPResult (entries, references)
    cookie: bytes | None  # the paged-results cookie of a searchResultDone, if any


def split_messages(buffer: bytearray) -> list[bytes]:
    """Take every complete LDAPMessage off the front of ``buffer``."""
    messages: list[bytes] = []
    offset = 0
    available = len(buffer)
    while offset < available:
        header = read_header(buffer, offset, available)
        if header is None:
            break
        _, header_length, value_length = header
        total = header_length + value_length
        if offset + total > available:
            break
        messages.append(bytes(buffer[offset : offset + total]))
        offset += total
    if offset:
        del buffer[:offset]
    return messages


def _paged_cookie(pdu: bytes, start: int, end: int) -> bytes | None:
    pos = start
    while pos < end:
        _, cs, ce = read_tlv(pdu, pos, end)  # one Control
        _, os_, oe = read_tlv(pdu, cs, ce)
        if pdu[os_:oe] == PAGED_RESULTS_OID:
            inner = cs
            while inner < ce:
                tag, vs, ve = read_tlv(pdu, inner, ce)
                if tag == OCTET_STRING and inner != cs:
                    _, ss, se = read_tlv(pdu, vs, ve)  # realSearchControlValue
                    _, _, size_end = read_tlv(pdu, ss, se)
                    _, ks, ke = read_tlv(pdu, size_end, se)
                    return pdu[ks:ke]
                inner = ve
        pos = ce
    return None


def read_response(pdu: bytes) -> Response:
    """Decode the envelope of one LDAPMessage: id, operation tag, result code, cookie."""
    try:
        tag, start, end = read_tlv(pdu, 0, len(pdu))
        if tag != SEQUENCE:
            raise ResponseError(f"LDAPMessage must be a SEQUENCE, got 0x{tag:02x}")
        id_tag, ids, ide = read_tlv(pdu, start, end)
        if id_tag != INTEGER:
            raise ResponseError("messageID must be an INTEGER")
        message_id = decode_integer(pdu, ids, ide)
        op_tag, ops, ope = read_tlv(pdu, ide, end)
        code = -1
        cookie = None
        if op_tag in RESULT_TAGS:
            _, cs, ce = read_tlv(pdu, ops, ope)
            code = decode_integer(pdu, cs, ce)
            if ope < end:
                control_tag, ctl_start, ctl_end = read_tlv(pdu, ope, end)
                if control_tag == CONTROLS:
                    cookie = _paged_cookie(pdu, ctl_start, ctl_end)
        return Response(message_id, op_tag, code, cookie)
    except ValueError as exc:  # BERError included
        if isinstance(exc, ResponseError):
            raise
        raise ResponseError(f"malformed response: {exc}") from None
