"""LDAPv3 messages to and from BER (RFC 4511 section 4 and appendix B).

The protocol layer sees only the values of ``messages.py``; this module is the
one place that knows the wire format. Decoding is strict and never lets a
Python exception other than these two escape, so the server can map every
outcome without a catch-all:

* :class:`ProtocolViolation` -- the bytes are not a well-formed LDAP request
  (bad tag, bad length, truncated, trailing bytes, unknown or response
  protocolOp, messageID out of range). RFC 4511 4.1.1 says to answer with a
  Notice of Disconnection and close, because after a structural error nothing
  that follows can be trusted.
* :class:`RequestRejected` -- the PDU is well formed but its content cannot be
  served (invalid UTF-8, an out-of-range enumeration, a filter nested too deep).
  The server answers the request with the carried result code and keeps the
  connection, which is what clients expect for such errors.

Filters are decoded without recursion (an explicit stack), and the nesting
depth is bounded before any child is parsed, so a hostile filter costs at most
one pass over its bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Protocol

from ldapsrv.directory.filters import (
    And,
    Approx,
    Equality,
    Extensible,
    Filter,
    GreaterOrEqual,
    LessOrEqual,
    Not,
    Or,
    Present,
    Substrings,
)
from ldapsrv.ldap.ber import (
    BOOLEAN,
    ENUMERATED,
    INTEGER,
    OCTET_STRING,
    SEQUENCE,
    SET,
    BERError,
    decode_boolean,
    decode_integer,
    encode_enumerated,
    encode_integer,
    encode_length,
    encode_octet_string,
    read_tlv,
)
from ldapsrv.ldap.messages import (
    SCOPE_BASE,
    SCOPE_SUB,
    AbandonRequest,
    AddRequest,
    BindRequest,
    Change,
    CompareRequest,
    Control,
    DelRequest,
    ExtendedRequest,
    LDAPMessage,
    LDAPResult,
    ModifyDNRequest,
    ModifyRequest,
    ProtocolViolation,
    Request,
    RequestRejected,
    SaslAuth,
    SearchRequest,
    SimpleAuth,
    UnbindRequest,
)
from ldapsrv.memo import Memo

__all__ = [
    "MAX_INT",
    "NOTICE_OF_DISCONNECTION_OID",
    "RESPONSE_ENCODERS",
    "ResultEncoder",
    "decode_message",
    "decode_paged_results_value",
    "decode_password_modify_value",
    "encode_add_response",
    "encode_bind_response",
    "encode_compare_response",
    "encode_del_response",
    "encode_extended_response",
    "encode_modify_dn_response",
    "encode_modify_response",
    "encode_notice_of_disconnection",
    "encode_paged_results_value",
    "encode_password_modify_response_value",
    "encode_search_done",
    "encode_search_entry",
]

MAX_INT = 2**31 - 1
"""RFC 4511 ``maxInt``: the bound of message IDs, size and time limits."""

NOTICE_OF_DISCONNECTION_OID = "1.3.6.1.4.1.1466.20036"

# Result codes the decoder itself assigns (RFC 4511 appendix A).
_PROTOCOL_ERROR = 2
_AUTH_METHOD_NOT_SUPPORTED = 7
_ADMIN_LIMIT_EXCEEDED = 11
_INVALID_DN_SYNTAX = 34

# protocolOp tags (RFC 4511 appendix B), requests then responses.
_BIND_REQUEST = 0x60
_UNBIND_REQUEST = 0x42
_SEARCH_REQUEST = 0x63
_MODIFY_REQUEST = 0x66
_ADD_REQUEST = 0x68
_DEL_REQUEST = 0x4A
_MODIFY_DN_REQUEST = 0x6C
_COMPARE_REQUEST = 0x6E
_ABANDON_REQUEST = 0x50
_EXTENDED_REQUEST = 0x77

_BIND_RESPONSE = 0x61
_SEARCH_ENTRY = 0x64
_SEARCH_DONE = 0x65
_MODIFY_RESPONSE = 0x67
_ADD_RESPONSE = 0x69
_DEL_RESPONSE = 0x6B
_MODIFY_DN_RESPONSE = 0x6D
_COMPARE_RESPONSE = 0x6F
_EXTENDED_RESPONSE = 0x78

_CONTROLS = 0xA0

# Filter CHOICE tags (RFC 4511 4.5.1).
_F_AND = 0xA0
_F_OR = 0xA1
_F_NOT = 0xA2
_F_EQUALITY = 0xA3
_F_SUBSTRINGS = 0xA4
_F_GREATER_OR_EQUAL = 0xA5
_F_LESS_OR_EQUAL = 0xA6
_F_PRESENT = 0x87
_F_APPROX = 0xA8
_F_EXTENSIBLE = 0xA9

_AVA_FILTERS: dict[int, Callable[[str, bytes], Filter]] = {
    _F_EQUALITY: Equality,
    _F_GREATER_OR_EQUAL: GreaterOrEqual,
    _F_LESS_OR_EQUAL: LessOrEqual,
    _F_APPROX: Approx,
}


class _Reject(Exception):
    """Raised deep inside a decoder; ``decode_message`` adds the message ID and type."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# --------------------------------------------------------------------------- decoding helpers


def _expect(data: bytes, pos: int, end: int, tag: int, what: str) -> tuple[int, int]:
    """Read the TLV at ``pos`` and insist on ``tag``; return its value bounds.

    Nearly every element of a request is short (under 128 bytes), so that case
    is handled inline; everything else takes the general path of ``read_tlv``.
    """
    if pos + 2 <= end and data[pos] == tag:
        length = data[pos + 1]
        if length < 0x80 and pos + 2 + length <= end:
            return pos + 2, pos + 2 + length
    got, start, stop = read_tlv(data, pos, end)
    if got != tag:
        raise BERError(f"expected {what} (tag 0x{tag:02x}), got tag 0x{got:02x}")
    return start, stop


def _text(data: bytes, start: int, end: int, what: str) -> str:
    """An LDAPString/LDAPOID; bad UTF-8 is the client's content error (protocolError)."""
    try:
        return data[start:end].decode("utf-8")
    except UnicodeDecodeError:
        raise _Reject(_PROTOCOL_ERROR, f"invalid UTF-8 in {what}") from None


def _dn(data: bytes, start: int, end: int, what: str) -> str:
    """An LDAPDN: bytes that are not UTF-8 cannot be a DN, hence invalidDNSyntax."""
    try:
        return data[start:end].decode("utf-8")
    except UnicodeDecodeError:
        raise _Reject(_INVALID_DN_SYNTAX, f"invalid UTF-8 in {what}") from None


def _bounded(value: int, low: int, high: int, what: str) -> int:
    """Range-check a decoded INTEGER/ENUMERATED: out of range is a content error."""
    if not low <= value <= high:
        raise _Reject(_PROTOCOL_ERROR, f"{what} {value} is out of range {low}..{high}")
    return value


def _end(pos: int, end: int, what: str) -> None:
    """No element may follow the last one of a SEQUENCE that has no extension marker."""
    if pos != end:
        raise BERError(f"unexpected trailing data in {what}")


def _values(data: bytes, start: int, end: int) -> tuple[bytes, ...]:
    """The content of a ``SET OF OCTET STRING`` (attribute values stay bytes)."""
    values = []
    pos = start
    while pos < end:
        vs, pos = _expect(data, pos, end, OCTET_STRING, "attribute value")
        values.append(data[vs:pos])
    return tuple(values)


def _attribute(data: bytes, start: int, end: int) -> tuple[str, tuple[bytes, ...]]:
    """``PartialAttribute ::= SEQUENCE { type, vals SET OF value }`` content."""
    ts, te = _expect(data, start, end, OCTET_STRING, "attribute description")
    vs, ve = _expect(data, te, end, SET, "attribute values")
    _end(ve, end, "attribute")
    return _text(data, ts, te, "attribute description"), _values(data, vs, ve)


# --------------------------------------------------------------------------- filters


def _ava(data: bytes, start: int, end: int) -> tuple[str, bytes]:
    """``AttributeValueAssertion`` content: description and raw assertion value."""
    ts, te = _expect(data, start, end, OCTET_STRING, "attribute description")
    vs, ve = _expect(data, te, end, OCTET_STRING, "assertion value")
    if ve != end:
        raise BERError("unexpected trailing data in attribute value assertion")
    try:
        return data[ts:te].decode("utf-8"), data[vs:ve]
    except UnicodeDecodeError:
        raise _Reject(_PROTOCOL_ERROR, "invalid UTF-8 in attribute description") from None


def _substrings(data: bytes, start: int, end: int) -> Substrings:
    """``SubstringFilter``: initial only first, final only last, at least one part."""
    ts, te = _expect(data, start, end, OCTET_STRING, "attribute description")
    ss, se = _expect(data, te, end, SEQUENCE, "substrings")
    _end(se, end, "substrings filter")
    if ss == se:
        raise BERError("substrings filter has no parts")
    initial: bytes | None = None
    final: bytes | None = None
    parts: list[bytes] = []
    pos = ss
    while pos < se:
        tag, vs, ve = read_tlv(data, pos, se)
        if tag == 0x81:
            parts.append(data[vs:ve])
        elif tag == 0x80:
            if pos != ss:
                raise BERError("initial substring must be the first part")
            initial = data[vs:ve]
        elif tag == 0x82:
            if ve != se:
                raise BERError("final substring must be the last part")
            final = data[vs:ve]
        else:
            raise BERError(f"unknown substring choice 0x{tag:02x}")
        pos = ve
    return Substrings(_text(data, ts, te, "attribute description"), initial, tuple(parts), final)


def _extensible(data: bytes, start: int, end: int) -> Extensible:
    """``MatchingRuleAssertion``: rule [1]?, type [2]?, matchValue [3], dnAttributes [4]?."""
    rule: str | None = None
    attr: str | None = None
    tag, vs, ve = read_tlv(data, start, end)
    if tag == 0x81:
        rule = _text(data, vs, ve, "matching rule")
        tag, vs, ve = read_tlv(data, ve, end)
    if tag == 0x82:
        attr = _text(data, vs, ve, "attribute description")
        tag, vs, ve = read_tlv(data, ve, end)
    if tag != 0x83:
        raise BERError(f"expected matchValue [3] in extensible match, got tag 0x{tag:02x}")
    value = data[vs:ve]
    dn_attributes = False
    if ve < end:
        ds, de = _expect(data, ve, end, 0x84, "dnAttributes")
        dn_attributes = decode_boolean(data, ds, de)
        _end(de, end, "extensible match")
    if rule is None and attr is None:
        raise _Reject(_PROTOCOL_ERROR, "extensible match needs a matching rule or a type")
    return Extensible(rule, attr, value, dn_attributes)


def _leaf_filter(data: bytes, tag: int, start: int, end: int) -> Filter:
    """The filter choices that cannot contain another filter, except the AVA ones."""
    if tag == _F_PRESENT:
        return Present(_text(data, start, end, "attribute description"))
    if tag == _F_SUBSTRINGS:
        return _substrings(data, start, end)
    if tag == _F_EXTENSIBLE:
        return _extensible(data, start, end)
    raise BERError(f"unknown filter choice 0x{tag:02x}")


def _filter(data: bytes, pos: int, end: int, max_depth: int) -> tuple[Filter, int]:
    """Decode the Filter at ``pos``; return it and the offset just after it.

    Iterative: ``stack`` holds one ``(tag, end, children)`` frame per open
    and/or/not. The depth check happens before each node is read, so the
    work done on an over-deep filter is bounded by ``max_depth`` frames.
    """
    stack: list[tuple[int, int, list[Filter]]] = []
    node: Filter
    while True:
        if len(stack) >= max_depth:
            raise _Reject(_ADMIN_LIMIT_EXCEEDED, f"filter nesting exceeds {max_depth} levels")
        # Short-form lengths inline; anything else (or anything wrong) via read_tlv.
        length = data[pos + 1] if pos + 2 <= end else 0x80
        if length < 0x80 and pos + 2 + length <= end:
            tag = data[pos]
            start = pos + 2
            stop = start + length
        else:
            tag, start, stop = read_tlv(data, pos, end)
        make = _AVA_FILTERS.get(tag)
        if make is not None:
            attr, value = _ava(data, start, stop)
            node = make(attr, value)
        elif tag == _F_AND or tag == _F_OR or tag == _F_NOT:
            if start < stop:
                stack.append((tag, stop, []))
                pos, end = start, stop
                continue
            if tag == _F_NOT:
                raise BERError("not filter is empty")
            # RFC 4526 absolute TRUE (&) and FALSE (|).
            node = And(()) if tag == _F_AND else Or(())
        else:
            node = _leaf_filter(data, tag, start, stop)
        pos = stop
        # Attach the finished node to its parent, closing every parent it completes.
        while stack:
            ptag, pend, children = stack[-1]
            children.append(node)
            if pos < pend:
                if ptag == _F_NOT:
                    raise BERError("not filter holds more than one filter")
                end = pend
                break
            stack.pop()
            if ptag == _F_AND:
                node = And(tuple(children))
            elif ptag == _F_OR:
                node = Or(tuple(children))
            else:
                node = Not(children[0])
        else:
            return node, pos


# --------------------------------------------------------------------------- protocol ops


def _bind(data: bytes, start: int, end: int, max_depth: int) -> BindRequest:
    vs, ve = _expect(data, start, end, INTEGER, "version")
    version = _bounded(decode_integer(data, vs, ve), 1, 127, "version")
    ns, ne = _expect(data, ve, end, OCTET_STRING, "bind name")
    name = _dn(data, ns, ne, "bind name")
    tag, as_, ae = read_tlv(data, ne, end)
    _end(ae, end, "BindRequest")
    auth: SimpleAuth | SaslAuth
    if tag == 0x80:
        auth = SimpleAuth(data[as_:ae])
    elif tag == 0xA3:
        ms, me = _expect(data, as_, ae, OCTET_STRING, "SASL mechanism")
        credentials: bytes | None = None
        if me < ae:
            cs, ce = _expect(data, me, ae, OCTET_STRING, "SASL credentials")
            _end(ce, ae, "SaslCredentials")
            credentials = data[cs:ce]
        auth = SaslAuth(_text(data, ms, me, "SASL mechanism"), credentials)
    elif tag & 0xC0 == 0x80:
        # AuthenticationChoice is extensible: an unknown context tag is a
        # method we do not offer, not a broken PDU.
        raise _Reject(
            _AUTH_METHOD_NOT_SUPPORTED, f"authentication choice [{tag & 0x1F}] is not supported"
        )
    else:
        raise BERError(f"bad authentication choice tag 0x{tag:02x}")
    return BindRequest(version, name, auth)


def _unbind(data: bytes, start: int, end: int, max_depth: int) -> UnbindRequest:
    if start != end:
        raise BERError("UnbindRequest must be an empty NULL")
    return UnbindRequest()


def _search(data: bytes, start: int, end: int, max_depth: int) -> SearchRequest:
    bs, be = _expect(data, start, end, OCTET_STRING, "base object")
    ss, se = _expect(data, be, end, ENUMERATED, "scope")
    ds, de = _expect(data, se, end, ENUMERATED, "derefAliases")
    zs, ze = _expect(data, de, end, INTEGER, "sizeLimit")
    ls, le = _expect(data, ze, end, INTEGER, "timeLimit")
    ts, te = _expect(data, le, end, BOOLEAN, "typesOnly")
    search_filter, pos = _filter(data, te, end, max_depth)
    as_, ae = _expect(data, pos, end, SEQUENCE, "attribute selection")
    _end(ae, end, "SearchRequest")
    attributes: list[str] = []
    append = attributes.append
    pos = as_
    try:
        while pos < ae:
            # The common short OCTET STRING inline, anything else via _expect.
            length = data[pos + 1] if pos + 2 <= ae and data[pos] == OCTET_STRING else 0x80
            if length < 0x80 and pos + 2 + length <= ae:
                vs = pos + 2
                pos = vs + length
            else:
                vs, pos = _expect(data, pos, ae, OCTET_STRING, "attribute selector")
            append(data[vs:pos].decode("utf-8"))
    except UnicodeDecodeError:
        raise _Reject(_PROTOCOL_ERROR, "invalid UTF-8 in attribute selector") from None
    scope = decode_integer(data, ss, se)
    if not SCOPE_BASE <= scope <= SCOPE_SUB:
        # Scope 3 (subordinateSubtree, draft-sermersheim) is not offered.
        raise _Reject(_PROTOCOL_ERROR, f"scope {scope} is not supported")
    deref = decode_integer(data, ds, de)
    size_limit = decode_integer(data, zs, ze)
    time_limit = decode_integer(data, ls, le)
    if not (0 <= deref <= 3 and 0 <= size_limit <= MAX_INT and 0 <= time_limit <= MAX_INT):
        _bounded(deref, 0, 3, "derefAliases")
        _bounded(size_limit, 0, MAX_INT, "sizeLimit")
        _bounded(time_limit, 0, MAX_INT, "timeLimit")
    return SearchRequest(
        _dn(data, bs, be, "base object"),
        scope,
        deref,
        size_limit,
        time_limit,
        decode_boolean(data, ts, te),
        search_filter,
        tuple(attributes),
    )


def _modify(data: bytes, start: int, end: int, max_depth: int) -> ModifyRequest:
    os_, oe = _expect(data, start, end, OCTET_STRING, "object")
    cs, ce = _expect(data, oe, end, SEQUENCE, "changes")
    _end(ce, end, "ModifyRequest")
    changes = []
    pos = cs
    while pos < ce:
        ch_s, pos = _expect(data, pos, ce, SEQUENCE, "change")
        es, ee = _expect(data, ch_s, pos, ENUMERATED, "modify operation")
        ms, me = _expect(data, ee, pos, SEQUENCE, "modification")
        _end(me, pos, "change")
        # 0 add, 1 delete, 2 replace (RFC 4511), 3 increment (RFC 4525).
        operation = _bounded(decode_integer(data, es, ee), 0, 3, "modify operation")
        attr, values = _attribute(data, ms, me)
        changes.append(Change(operation, attr, values))
    return ModifyRequest(_dn(data, os_, oe, "object"), tuple(changes))


def _add(data: bytes, start: int, end: int, max_depth: int) -> AddRequest:
    es, ee = _expect(data, start, end, OCTET_STRING, "entry")
    ls, le = _expect(data, ee, end, SEQUENCE, "attributes")
    _end(le, end, "AddRequest")
    entry = _dn(data, es, ee, "entry")
    attributes = []
    pos = ls
    while pos < le:
        as_, pos = _expect(data, pos, le, SEQUENCE, "attribute")
        attr, values = _attribute(data, as_, pos)
        if not values:
            # Attribute ::= vals SET SIZE (1..MAX); OpenLDAP says protocolError too.
            raise _Reject(_PROTOCOL_ERROR, f"attribute {attr!r} has no values")
        attributes.append((attr, values))
    return AddRequest(entry, tuple(attributes))


def _delete(data: bytes, start: int, end: int, max_depth: int) -> DelRequest:
    return DelRequest(_dn(data, start, end, "entry"))


def _modify_dn(data: bytes, start: int, end: int, max_depth: int) -> ModifyDNRequest:
    es, ee = _expect(data, start, end, OCTET_STRING, "entry")
    rs, re = _expect(data, ee, end, OCTET_STRING, "newrdn")
    ds, de = _expect(data, re, end, BOOLEAN, "deleteoldrdn")
    new_superior: str | None = None
    if de < end:
        ns, ne = _expect(data, de, end, 0x80, "newSuperior")
        _end(ne, end, "ModifyDNRequest")
        new_superior = _dn(data, ns, ne, "newSuperior")
    return ModifyDNRequest(
        _dn(data, es, ee, "entry"),
        _dn(data, rs, re, "newrdn"),
        decode_boolean(data, ds, de),
        new_superior,
    )


def _compare(data: bytes, start: int, end: int, max_depth: int) -> CompareRequest:
    es, ee = _expect(data, start, end, OCTET_STRING, "entry")
    vs, ve = _expect(data, ee, end, SEQUENCE, "ava")
    _end(ve, end, "CompareRequest")
    entry = _dn(data, es, ee, "entry")
    attr, value = _ava(data, vs, ve)
    return CompareRequest(entry, attr, value)


def _abandon(data: bytes, start: int, end: int, max_depth: int) -> AbandonRequest:
    return AbandonRequest(_bounded(decode_integer(data, start, end), 0, MAX_INT, "messageID"))


def _extended(data: bytes, start: int, end: int, max_depth: int) -> ExtendedRequest:
    ns, ne = _expect(data, start, end, 0x80, "requestName")
    value: bytes | None = None
    if ne < end:
        vs, ve = _expect(data, ne, end, 0x81, "requestValue")
        _end(ve, end, "ExtendedRequest")
        value = data[vs:ve]
    return ExtendedRequest(_text(data, ns, ne, "requestName"), value)


_OPERATIONS: dict[int, tuple[type, Callable[[bytes, int, int, int], Request]]] = {
    _BIND_REQUEST: (BindRequest, _bind),
    _UNBIND_REQUEST: (UnbindRequest, _unbind),
    _SEARCH_REQUEST: (SearchRequest, _search),
    _MODIFY_REQUEST: (ModifyRequest, _modify),
    _ADD_REQUEST: (AddRequest, _add),
    _DEL_REQUEST: (DelRequest, _delete),
    _MODIFY_DN_REQUEST: (ModifyDNRequest, _modify_dn),
    _COMPARE_REQUEST: (CompareRequest, _compare),
    _ABANDON_REQUEST: (AbandonRequest, _abandon),
    _EXTENDED_REQUEST: (ExtendedRequest, _extended),
}


def _controls(data: bytes, start: int, end: int) -> tuple[Control, ...]:
    """``Controls ::= SEQUENCE OF Control`` content (criticality DEFAULT FALSE)."""
    controls = []
    pos = start
    while pos < end:
        cs, pos = _expect(data, pos, end, SEQUENCE, "control")
        ts, te = _expect(data, cs, pos, OCTET_STRING, "controlType")
        critical = False
        value: bytes | None = None
        at = te
        if at < pos:
            tag, vs, ve = read_tlv(data, at, pos)
            if tag == BOOLEAN:
                critical = decode_boolean(data, vs, ve)
                at = ve
                if at < pos:
                    tag, vs, ve = read_tlv(data, at, pos)
            if tag == OCTET_STRING:
                value = data[vs:ve]
                at = ve
        _end(at, pos, "control")
        controls.append(Control(_text(data, ts, te, "controlType"), critical, value))
    return tuple(controls)


_MEMO_MAX_BYTES = 1024
"""SearchRequests up to this size (protocolOp and controls) are decoded once and
remembered: clients repeat the same searches, and only the message ID changes.
Only searches: a BindRequest or an extended request may carry a password, which
must not outlive its operation in memory."""


def _decode_body(
    data: bytes, start: int, stop: int, max_filter_depth: int
) -> tuple[Request, tuple[Control, ...]]:
    """The protocolOp from ``start`` and the controls after it, up to ``stop``."""
    op_tag, op_start, op_stop = read_tlv(data, start, stop)
    _, decode = _OPERATIONS[op_tag]
    request = decode(data, op_start, op_stop, max_filter_depth)
    controls: tuple[Control, ...] = ()
    if op_stop < stop:
        cs, ce = _expect(data, op_stop, stop, _CONTROLS, "controls")
        _end(ce, stop, "LDAPMessage")
        controls = _controls(data, cs, ce)
    return request, controls


@lru_cache(maxsize=2048)
def _decode_search_body(body: bytes, max_filter_depth: int) -> tuple[Request, tuple[Control, ...]]:
    # Decoded values are immutable (frozen dataclasses, tuples), so one decoding
    # can be shared; errors are raised every time (lru_cache keeps no exceptions).
    return _decode_body(body, 0, len(body), max_filter_depth)


def decode_message(pdu: bytes, *, max_filter_depth: int = 50) -> LDAPMessage:
    """Decode one whole LDAPMessage PDU (as cut by ``PDUFramer``) into a request.

    Raises :class:`ProtocolViolation` for anything structurally wrong and
    :class:`RequestRejected` for well-formed content that cannot be served;
    nothing else escapes.
    """
    data = pdu if type(pdu) is bytes else bytes(pdu)
    try:
        end = len(data)
        tag, start, stop = read_tlv(data, 0, end)
        if tag != SEQUENCE:
            raise BERError(f"LDAPMessage must be a SEQUENCE, got tag 0x{tag:02x}")
        _end(stop, end, "PDU")
        ms, me = _expect(data, start, stop, INTEGER, "messageID")
        message_id = decode_integer(data, ms, me)
        if not 0 <= message_id <= MAX_INT:
            raise BERError(f"messageID {message_id} is out of range 0..{MAX_INT}")
        op_tag, _, _ = read_tlv(data, me, stop)
    except BERError as exc:
        raise ProtocolViolation(f"malformed LDAPMessage: {exc}") from None
    operation = _OPERATIONS.get(op_tag)
    if operation is None:
        raise ProtocolViolation(f"protocolOp tag 0x{op_tag:02x} is not an LDAP request")
    request_type = operation[0]
    body = b""
    try:
        if op_tag == _SEARCH_REQUEST:
            body = data[me:stop]
        if body and len(body) <= _MEMO_MAX_BYTES:
            request, controls = _decode_search_body(body, max_filter_depth)
        else:
            request, controls = _decode_body(data, me, stop, max_filter_depth)
    except _Reject as rejected:
        raise RequestRejected(message_id, request_type, rejected.code, rejected.message) from None
    except (ValueError, IndexError, OverflowError, RecursionError) as exc:
        # BERError is a ValueError; the others would be bugs, but a decoding
        # bug must still close the connection rather than crash the server.
        raise ProtocolViolation(f"malformed {request_type.__name__}: {exc}") from None
    return LDAPMessage(message_id, request, controls, body)


def split_plain_search(pdu: bytes) -> tuple[int, bytes] | None:
    """(message ID, protocolOp bytes) of a SearchRequest PDU without controls;
    None for anything else, malformed included (``decode_message`` judges those).

    The bytes are what ``decode_message`` gives as ``LDAPMessage.body``: a client
    repeating a search sends them again unchanged, so they can stand for the
    request without decoding it."""
    data = pdu if type(pdu) is bytes else bytes(pdu)
    # The usual short message (one length octet, a message ID of under 128 octets):
    # its protocolOp tag is at a known place, and most requests that are not
    # searches are told apart there without parsing.
    if len(data) > 4 and data[1] < 0x80 and data[2] == INTEGER and data[3] < 0x80:
        at = 4 + data[3]
        if at < len(data) and data[at] != _SEARCH_REQUEST:
            return None
    try:
        end = len(data)
        tag, start, stop = read_tlv(data, 0, end)
        if tag != SEQUENCE or stop != end:
            return None
        ms, me = _expect(data, start, stop, INTEGER, "messageID")
        op_tag, _, op_stop = read_tlv(data, me, stop)
        if op_tag != _SEARCH_REQUEST or op_stop != stop:
            return None
        message_id = decode_integer(data, ms, me)
    except ValueError:
        return None
    if not 0 <= message_id <= MAX_INT:
        return None
    return message_id, data[me:stop]


# --------------------------------------------------------------------------- encoding helpers

_OS_HEADERS = [bytes((OCTET_STRING, n)) for n in range(0x80)]
_SET_HEADERS = [bytes((SET, n)) for n in range(0x80)]
_SEQ_HEADERS = [bytes((SEQUENCE, n)) for n in range(0x80)]


def _header(tag: int, length: int) -> bytes:
    """Tag and length octets of a TLV whose value is ``length`` bytes long."""
    if length < 0x80:
        return bytes((tag, length))
    return bytes((tag,)) + encode_length(length)


def _message(message_id: int, op_tag: int, op_value: bytes, controls: Sequence[Control]) -> bytes:
    """Wrap a protocolOp value into a whole LDAPMessage."""
    body = encode_integer(message_id) + _header(op_tag, len(op_value)) + op_value
    if controls:
        body += _encode_controls(controls)
    return _header(SEQUENCE, len(body)) + body


def _encode_controls(controls: Sequence[Control]) -> bytes:
    """``[0] Controls``; criticality FALSE is omitted as its DEFAULT (RFC 4511 5.1)."""
    parts = []
    for control in controls:
        body = encode_octet_string(control.oid.encode("utf-8"))
        if control.critical:
            body += b"\x01\x01\xff"
        if control.value is not None:
            body += encode_octet_string(control.value)
        parts.append(_header(SEQUENCE, len(body)) + body)
    value = b"".join(parts)
    return _header(_CONTROLS, len(value)) + value


def _encode_result(code: int, matched_dn: str, message: str) -> bytes:
    return (
        encode_enumerated(code)
        + encode_octet_string(matched_dn.encode("utf-8"))
        + encode_octet_string(message.encode("utf-8"))
    )


#: Encoded results without matchedDN or message, by code (most results are).
_bare_results: Memo[int, bytes] = Memo(lambda code: _encode_result(code, "", ""), max_entries=256)


def _result_value(result: LDAPResult) -> bytes:
    """``LDAPResult`` components: resultCode, matchedDN, diagnosticMessage."""
    if not result.matched_dn and not result.message:
        return _bare_results(result.code)
    return _encode_result(result.code, result.matched_dn, result.message)


# --------------------------------------------------------------------------- encoders


def encode_bind_response(
    message_id: int, result: LDAPResult, controls: Sequence[Control] = ()
) -> bytes:
    """BindResponse ``[APPLICATION 1]`` (no serverSaslCreds: no SASL mechanism needs them)."""
    return _message(message_id, _BIND_RESPONSE, _result_value(result), controls)


def encode_search_entry(
    message_id: int, dn: str, attributes: Sequence[tuple[str, Sequence[bytes]]]
) -> bytes:
    """A whole LDAPMessage carrying one SearchResultEntry."""
    return wrap_search_entry(message_id, encode_search_entry_op(dn, attributes))


def encode_search_entry_op(dn: str, attributes: Sequence[tuple[str, Sequence[bytes]]]) -> bytes:
    """SearchResultEntry ``[APPLICATION 4]`` alone, without the message envelope
    (what the search result cache keeps): the hot path of every search.

    Builds one flat list of pieces and joins it once, so each attribute value
    is copied exactly once however deep it sits in the TLV nesting; headers
    are filled into placeholders once their content length is known. An
    attribute with no values is allowed (typesOnly searches).
    """
    pieces: list[bytes] = [b""]  # the protocolOp header, filled in at the end
    append = pieces.append
    os_headers = _OS_HEADERS
    attributes_length = 0
    for name, values in attributes:
        name_bytes = name.encode("utf-8")
        name_length = len(name_bytes)
        name_header = os_headers[name_length] if name_length < 0x80 else _header(4, name_length)
        slot = len(pieces)
        append(b"")  # SEQUENCE header of this attribute, filled in below
        append(name_header)
        append(name_bytes)
        append(b"")  # SET header, filled in below
        values_length = 0
        for value in values:
            length = len(value)
            header = os_headers[length] if length < 0x80 else _header(4, length)
            append(header)
            append(value)
            values_length += len(header) + length
        set_header = (
            _SET_HEADERS[values_length] if values_length < 0x80 else _header(SET, values_length)
        )
        pieces[slot + 3] = set_header
        length = len(name_header) + name_length + len(set_header) + values_length
        header = _SEQ_HEADERS[length] if length < 0x80 else _header(SEQUENCE, length)
        pieces[slot] = header
        attributes_length += len(header) + length
    dn_bytes = dn.encode("utf-8")
    head = _header(OCTET_STRING, len(dn_bytes)) + dn_bytes + _header(SEQUENCE, attributes_length)
    pieces[0] = _header(_SEARCH_ENTRY, len(head) + attributes_length) + head
    return b"".join(pieces)


def wrap_search_entry(message_id: int, entry_op: bytes) -> bytes:
    """The LDAPMessage envelope around an encoded SearchResultEntry protocolOp."""
    mid = encode_integer(message_id)
    return _header(SEQUENCE, len(mid) + len(entry_op)) + mid + entry_op


def wrap_search_entries(message_id: int, entry_ops: Sequence[bytes]) -> bytes:
    """Several entries of one search, each in its envelope, as one buffer."""
    mid = encode_integer(message_id)
    mid_length = len(mid)
    seq_headers = _SEQ_HEADERS
    pieces: list[bytes] = []
    append = pieces.append
    for op in entry_ops:
        length = mid_length + len(op)
        append(seq_headers[length] if length < 0x80 else _header(SEQUENCE, length))
        append(mid)
        append(op)
    return b"".join(pieces)


def encode_search_done(
    message_id: int, result: LDAPResult, controls: Sequence[Control] = ()
) -> bytes:
    """SearchResultDone ``[APPLICATION 5]``; paging controls ride on this one."""
    return _message(message_id, _SEARCH_DONE, _result_value(result), controls)


def encode_modify_response(
    message_id: int, result: LDAPResult, controls: Sequence[Control] = ()
) -> bytes:
    """ModifyResponse ``[APPLICATION 7]``."""
    return _message(message_id, _MODIFY_RESPONSE, _result_value(result), controls)


def encode_add_response(
    message_id: int, result: LDAPResult, controls: Sequence[Control] = ()
) -> bytes:
    """AddResponse ``[APPLICATION 9]``."""
    return _message(message_id, _ADD_RESPONSE, _result_value(result), controls)


def encode_del_response(
    message_id: int, result: LDAPResult, controls: Sequence[Control] = ()
) -> bytes:
    """DelResponse ``[APPLICATION 11]``."""
    return _message(message_id, _DEL_RESPONSE, _result_value(result), controls)


def encode_modify_dn_response(
    message_id: int, result: LDAPResult, controls: Sequence[Control] = ()
) -> bytes:
    """ModifyDNResponse ``[APPLICATION 13]``."""
    return _message(message_id, _MODIFY_DN_RESPONSE, _result_value(result), controls)


def encode_compare_response(
    message_id: int, result: LDAPResult, controls: Sequence[Control] = ()
) -> bytes:
    """CompareResponse ``[APPLICATION 15]`` (compareTrue 6 / compareFalse 5 as the code)."""
    return _message(message_id, _COMPARE_RESPONSE, _result_value(result), controls)


def encode_extended_response(
    message_id: int,
    result: LDAPResult,
    name: str | None = None,
    value: bytes | None = None,
    controls: Sequence[Control] = (),
) -> bytes:
    """ExtendedResponse ``[APPLICATION 24]`` with responseName [10] and responseValue [11]."""
    body = _result_value(result)
    if name is not None:
        body += encode_octet_string(name.encode("utf-8"), 0x8A)
    if value is not None:
        body += encode_octet_string(value, 0x8B)
    return _message(message_id, _EXTENDED_RESPONSE, body, controls)


def encode_notice_of_disconnection(result_code: int, message: str) -> bytes:
    """The unsolicited ExtendedResponse of RFC 4511 4.4.1 (messageID 0), sent before closing."""
    return encode_extended_response(
        0, LDAPResult(result_code, message), name=NOTICE_OF_DISCONNECTION_OID
    )


class ResultEncoder(Protocol):
    """What every entry of :data:`RESPONSE_ENCODERS` can be called as."""

    def __call__(
        self, message_id: int, result: LDAPResult, *, controls: Sequence[Control] = ...
    ) -> bytes: ...


RESPONSE_ENCODERS: dict[type, ResultEncoder] = {
    BindRequest: encode_bind_response,
    SearchRequest: encode_search_done,
    ModifyRequest: encode_modify_response,
    AddRequest: encode_add_response,
    DelRequest: encode_del_response,
    ModifyDNRequest: encode_modify_dn_response,
    CompareRequest: encode_compare_response,
    ExtendedRequest: encode_extended_response,
}
"""The final response for each request type that has one, so the server can
answer any request (or a :class:`RequestRejected`) with just a result.
Abandon and Unbind are absent on purpose: they are never answered."""


# --------------------------------------------------------------------------- control values


def decode_paged_results_value(value: bytes) -> tuple[int, bytes]:
    """RFC 2696 ``realSearchControlValue``: ``SEQUENCE { size INTEGER, cookie OCTET STRING }``.

    Raises ``ValueError`` when malformed (the server answers protocolError).
    """
    end = len(value)
    start, stop = _expect(value, 0, end, SEQUENCE, "paged results value")
    _end(stop, end, "paged results value")
    ss, se = _expect(value, start, stop, INTEGER, "size")
    cs, ce = _expect(value, se, stop, OCTET_STRING, "cookie")
    _end(ce, stop, "paged results value")
    size = decode_integer(value, ss, se)
    if not 0 <= size <= MAX_INT:
        raise ValueError(f"page size {size} is out of range 0..{MAX_INT}")
    return size, value[cs:ce]


def encode_paged_results_value(size: int, cookie: bytes) -> bytes:
    """RFC 2696 value for the response: size is the server's estimate (0 if unknown)."""
    body = encode_integer(size) + encode_octet_string(cookie)
    return _header(SEQUENCE, len(body)) + body


def decode_password_modify_value(
    value: bytes | None,
) -> tuple[str | None, bytes | None, bytes | None]:
    """RFC 3062 ``PasswdModifyRequestValue`` as ``(user_identity, old, new)``.

    Every field is optional, in the order [0] userIdentity, [1] oldPasswd,
    [2] newPasswd; an absent or empty request value means all absent. Raises
    ``ValueError`` when malformed, including a userIdentity that is not UTF-8.
    """
    if not value:
        return None, None, None
    end = len(value)
    start, stop = _expect(value, 0, end, SEQUENCE, "PasswdModifyRequestValue")
    _end(stop, end, "PasswdModifyRequestValue")
    fields: list[bytes | None] = [None, None, None]
    next_field = 0
    pos = start
    while pos < stop:
        tag, vs, pos = read_tlv(value, pos, stop)
        index = tag - 0x80
        if not next_field <= index <= 2:
            raise ValueError(f"unexpected tag 0x{tag:02x} in PasswdModifyRequestValue")
        fields[index] = value[vs:pos]
        next_field = index + 1
    identity = fields[0]
    try:
        user = None if identity is None else identity.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("userIdentity is not valid UTF-8") from None
    return user, fields[1], fields[2]


def encode_password_modify_response_value(generated: bytes | None) -> bytes | None:
    """RFC 3062 ``PasswdModifyResponseValue``; ``None`` (no value at all) if nothing generated."""
    if generated is None:
        return None
    body = encode_octet_string(generated, 0x80)
    return _header(SEQUENCE, len(body)) + body
