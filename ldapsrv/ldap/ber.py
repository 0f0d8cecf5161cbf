"""BER primitives for LDAPv3, restricted as RFC 4511 section 5.1 allows.

Why hand-written: ldaptor's ``pureber`` builds an object per TLV, recurses, and
prints its internals on unknown tags; decoding is the hot path of a directory
server, so this module reads a TLV as a plain ``(tag, value_start, value_end)``
triple of offsets into the PDU and never copies or wraps bytes it does not
return.

What is accepted (and why):

* single-octet tags only: every LDAP tag number is below 31, so the
  high-tag-number form can only be garbage;
* definite lengths only (RFC 4511 5.1 forbids the indefinite form);
* long-form lengths of at most 4 octets: a PDU of 4 GiB is already absurd and
  the bound keeps hostile headers cheap to reject;
* non-minimal lengths (``0x84 00 00 00 05``): legal BER that some clients send.

Every violation raises :class:`BERError`, a ``ValueError`` so that callers
outside the wire layer (control-value helpers) can treat it as bad input.
Encoders always produce the minimal (DER-like) form RFC 4511 asks senders for.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "BOOLEAN",
    "ENUMERATED",
    "INTEGER",
    "NULL",
    "OCTET_STRING",
    "SEQUENCE",
    "SET",
    "BERError",
    "Buffer",
    "application",
    "context",
    "decode_boolean",
    "decode_integer",
    "encode_boolean",
    "encode_enumerated",
    "encode_integer",
    "encode_length",
    "encode_octet_string",
    "encode_sequence",
    "encode_set",
    "encode_tlv",
    "integer_content",
    "read_header",
    "read_tlv",
]

Buffer = bytes | bytearray | memoryview
"""Anything the readers index into; indexing yields ``int`` for all three."""

# Universal tags (class bits 00); SEQUENCE and SET carry the constructed bit.
BOOLEAN = 0x01
INTEGER = 0x02
OCTET_STRING = 0x04
NULL = 0x05
ENUMERATED = 0x0A
SEQUENCE = 0x30
SET = 0x31

_CONSTRUCTED = 0x20
_CLASS_APPLICATION = 0x40
_CLASS_CONTEXT = 0x80
_HIGH_TAG = 0x1F
_MAX_LENGTH_OCTETS = 4


class BERError(ValueError):
    """The bytes are not the restricted BER that LDAPv3 uses."""


def application(number: int, constructed: bool = True) -> int:
    """The tag octet of ``[APPLICATION number]``; LDAP ops are mostly constructed."""
    return _CLASS_APPLICATION | (_CONSTRUCTED if constructed else 0) | number


def context(number: int, constructed: bool = False) -> int:
    """The tag octet of ``[number]`` (context-specific), primitive by default."""
    return _CLASS_CONTEXT | (_CONSTRUCTED if constructed else 0) | number


# --------------------------------------------------------------------------- reading


def read_tlv(data: Buffer, offset: int, end: int) -> tuple[int, int, int]:
    """Read the TLV at ``offset``; return ``(tag, value_start, value_end)``.

    ``end`` bounds the enclosing value, so a child that claims to run past its
    parent is caught here rather than by a later, confusing type error.
    The tag is returned as the whole identifier octet (class, constructed bit
    and number), which lets callers compare against one constant.
    """
    if offset + 2 > end:
        raise BERError("truncated TLV header")
    tag = data[offset]
    if tag & _HIGH_TAG == _HIGH_TAG:
        raise BERError(f"multi-octet tag 0x{tag:02x} is not used by LDAP")
    length = data[offset + 1]
    start = offset + 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0:
            raise BERError("indefinite length is not allowed")
        if count > _MAX_LENGTH_OCTETS:
            raise BERError(f"length field of {count} octets is too long")
        if start + count > end:
            raise BERError("truncated length field")
        length = int.from_bytes(data[start : start + count], "big")
        start += count
    stop = start + length
    if stop > end:
        raise BERError("value runs past the end of its container")
    return tag, start, stop


def read_header(data: Buffer, offset: int, end: int) -> tuple[int, int, int] | None:
    """Parse only the tag and length at ``offset`` of a possibly partial buffer.

    Returns ``(tag, header_length, value_length)``, or ``None`` when more bytes
    are needed to know the length. Meant for framing a stream: the value itself
    need not have arrived, which is what lets a framer refuse an oversized PDU
    before buffering it.
    """
    if offset + 2 > end:
        return None
    tag = data[offset]
    if tag & _HIGH_TAG == _HIGH_TAG:
        raise BERError(f"multi-octet tag 0x{tag:02x} is not used by LDAP")
    length = data[offset + 1]
    if not length & 0x80:
        return tag, 2, length
    count = length & 0x7F
    if count == 0:
        raise BERError("indefinite length is not allowed")
    if count > _MAX_LENGTH_OCTETS:
        raise BERError(f"length field of {count} octets is too long")
    if offset + 2 + count > end:
        return None
    return tag, 2 + count, int.from_bytes(data[offset + 2 : offset + 2 + count], "big")


def decode_integer(data: Buffer, start: int, end: int) -> int:
    """Two's-complement INTEGER/ENUMERATED content; empty content is invalid."""
    if start >= end:
        raise BERError("empty INTEGER")
    return int.from_bytes(data[start:end], "big", signed=True)


def decode_boolean(data: Buffer, start: int, end: int) -> bool:
    """BOOLEAN content: exactly one octet, any non-zero value is TRUE (X.690 8.2.2).

    Senders must use 0xFF (RFC 4511 5.1), but accepting other non-zero values
    costs nothing and matches what every other server does.
    """
    if end - start != 1:
        raise BERError("BOOLEAN must have exactly one content octet")
    return data[start] != 0


# --------------------------------------------------------------------------- writing

_SHORT_LENGTHS = [bytes((n,)) for n in range(0x80)]


def encode_length(length: int) -> bytes:
    """Definite length in the shortest form."""
    if length < 0x80:
        return _SHORT_LENGTHS[length]
    if length < 0x100:
        return bytes((0x81, length))
    if length < 0x10000:
        return bytes((0x82, length >> 8, length & 0xFF))
    size = (length.bit_length() + 7) // 8
    if size > _MAX_LENGTH_OCTETS:
        raise BERError(f"length {length} does not fit in {_MAX_LENGTH_OCTETS} octets")
    return bytes((0x80 | size,)) + length.to_bytes(size, "big")


def encode_tlv(tag: int, value: bytes) -> bytes:
    """One TLV; the building block every other encoder reduces to."""
    length = len(value)
    if length < 0x80:
        return bytes((tag, length)) + value
    return bytes((tag,)) + encode_length(length) + value


def integer_content(value: int) -> bytes:
    """Minimal two's-complement octets of ``value`` (X.690 8.3.2)."""
    magnitude = value if value >= 0 else ~value
    return value.to_bytes(magnitude.bit_length() // 8 + 1, "big", signed=True)


_SMALL_INTEGERS = [bytes((INTEGER, 1, n)) for n in range(0x80)]
_SMALL_ENUMS = [bytes((ENUMERATED, 1, n)) for n in range(0x80)]


def encode_integer(value: int, tag: int = INTEGER) -> bytes:
    """INTEGER (or any tag with INTEGER content); small values come from a table."""
    if 0 <= value < 0x80 and tag == INTEGER:
        return _SMALL_INTEGERS[value]
    return encode_tlv(tag, integer_content(value))


def encode_enumerated(value: int) -> bytes:
    """ENUMERATED; result codes are always small, hence the table."""
    if 0 <= value < 0x80:
        return _SMALL_ENUMS[value]
    return encode_tlv(ENUMERATED, integer_content(value))


_TRUE = bytes((BOOLEAN, 1, 0xFF))
_FALSE = bytes((BOOLEAN, 1, 0x00))


def encode_boolean(value: bool, tag: int = BOOLEAN) -> bytes:
    """BOOLEAN with TRUE as 0xFF, as RFC 4511 5.1 requires of senders."""
    if tag == BOOLEAN:
        return _TRUE if value else _FALSE
    return bytes((tag, 1, 0xFF if value else 0x00))


def encode_octet_string(value: bytes, tag: int = OCTET_STRING) -> bytes:
    """OCTET STRING in the primitive form (the only form LDAP allows)."""
    return encode_tlv(tag, value)


def encode_sequence(parts: Iterable[bytes], tag: int = SEQUENCE) -> bytes:
    """SEQUENCE (or any constructed tag) around already-encoded elements."""
    return encode_tlv(tag, b"".join(parts))


def encode_set(parts: Iterable[bytes]) -> bytes:
    """SET OF around already-encoded elements, kept in the given order.

    LDAP does not need DER's sorted SET OF: attribute values keep the order
    the directory stores them in, which clients tend to show verbatim.
    """
    return encode_tlv(SET, b"".join(parts))
