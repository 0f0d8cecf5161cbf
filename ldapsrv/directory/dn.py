"""Distinguished names (RFC 4514): parse, escape, compare.

A parsed DN is a tuple of RDNs, leaf first; an RDN is a tuple of
(attribute type in lower case, value) pairs. Values are compared
case-insensitively because every naming attribute we use (cn, uid, ou, dc)
uses caseIgnoreMatch.
"""

from __future__ import annotations

from functools import lru_cache

from ldapsrv.memo import Memo

AVA = tuple[str, str]
RDN = tuple[AVA, ...]
DN = tuple[RDN, ...]

_SPECIAL = set(',+"\\<>;=')
_HEX = set("0123456789abcdefABCDEF")


class DNError(ValueError):
    """Not a valid distinguished name; the message says where."""


# BER string types a '#' value may carry: OCTET STRING, UTF8String, PrintableString,
# IA5String, TeletexString (read as UTF-8 like the others).
_BER_STRING_TAGS = {0x04, 0x0C, 0x13, 0x14, 0x16}


def _ber_string(encoded: bytes, pos: int) -> str:
    """RFC 4514 2.4: ``#hex`` is the BER encoding of the value; read a string TLV."""
    if len(encoded) < 2 or encoded[0] not in _BER_STRING_TAGS:
        raise DNError(f"hex value at position {pos} is not a BER-encoded string")
    length, start = encoded[1], 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or len(encoded) < 2 + count:
            raise DNError(f"hex value at position {pos} has a bad BER length")
        length = int.from_bytes(encoded[2 : 2 + count], "big")
        start = 2 + count
    if start + length != len(encoded):
        raise DNError(f"hex value at position {pos} has a bad BER length")
    try:
        return encoded[start:].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DNError(f"hex value at position {pos} is not UTF-8") from exc


def _parse_value(text: str, pos: int) -> tuple[str, int]:
    """Read one attribute value from ``pos``; returns (value, next position)."""
    n = len(text)
    if pos < n and text[pos] == "#":
        end = pos + 1
        while end < n and text[end] in _HEX:
            end += 1
        hexpart = text[pos + 1 : end]
        if not hexpart or len(hexpart) % 2:
            raise DNError(f"bad hex value at position {pos}")
        return _ber_string(bytes.fromhex(hexpart), pos), end
    out = bytearray()
    last_significant = 0
    while pos < n:
        ch = text[pos]
        if ch in ",+;":
            break
        if ch == "\\":
            if pos + 1 >= n:
                raise DNError("DN ends with a lone backslash")
            nxt = text[pos + 1]
            if nxt in _HEX and pos + 2 < n and text[pos + 2] in _HEX:
                out.append(int(text[pos + 1 : pos + 3], 16))
                pos += 3
            elif nxt in _SPECIAL or nxt in " #":
                out += nxt.encode()
                pos += 2
            else:
                raise DNError(f"invalid escape \\{nxt} at position {pos}")
            last_significant = len(out)
            continue
        if ch in '"<>' or ch == "\x00":
            raise DNError(f"unescaped {ch!r} in value at position {pos}")
        out += ch.encode("utf-8", "surrogatepass")
        if ch != " ":
            last_significant = len(out)
        pos += 1
    del out[last_significant:]
    try:
        return out.decode("utf-8"), pos
    except UnicodeDecodeError as exc:
        raise DNError("escaped value is not valid UTF-8") from exc


MEMO_MAX_CHARS = 512
"""DNs up to this long are parsed and normalised once and remembered (clients send
the same base and bind DNs over and over); longer ones every time, so that odd
input cannot fill memory."""


def parse_dn(text: str) -> DN:
    """Parse a string DN; the empty string is the root (no RDNs)."""
    if len(text) <= MEMO_MAX_CHARS:
        return _parse_dn_memo(text)
    return _parse_dn(text)


def normalize(dn: DN) -> DN:
    """Case-fold values for comparison (all our naming attributes ignore case)."""
    return _normalized(dn)


def _normalize(dn: DN) -> DN:
    return tuple(tuple((a, v.casefold()) for a, v in rdn) for rdn in dn)


def _small(dn: DN) -> bool:
    return len(dn) <= 8 and sum(len(v) for rdn in dn for _, v in rdn) <= MEMO_MAX_CHARS


_normalized: Memo[DN, DN] = Memo(_normalize, _small)


def _parse_dn(text: str) -> DN:
    rdns: list[RDN] = []
    n = len(text)
    pos = 0
    if text.strip() == "":
        return ()
    while True:
        avas: list[AVA] = []
        while True:
            while pos < n and text[pos] == " ":
                pos += 1
            eq = text.find("=", pos)
            if eq < 0:
                raise DNError(f"missing '=' after position {pos}")
            attr = text[pos:eq].strip()
            if not attr or not all(c.isalnum() or c in "-." for c in attr) or not attr.isascii():
                raise DNError(f"invalid attribute type {attr!r}")
            pos = eq + 1
            while pos < n and text[pos] == " ":
                pos += 1
            value, pos = _parse_value(text, pos)
            avas.append((attr.lower(), value))
            if pos < n and text[pos] == "+":
                pos += 1
                continue
            break
        rdns.append(tuple(sorted(avas)))
        if pos >= n:
            break
        if text[pos] not in ",;":
            raise DNError(f"unexpected {text[pos]!r} at position {pos}")
        pos += 1
        if pos >= n:
            raise DNError("DN ends with a separator")
    return tuple(rdns)


# DNError is raised afresh each time: lru_cache keeps no exceptions.
_parse_dn_memo = lru_cache(maxsize=4096)(_parse_dn)


def escape_value(value: str) -> str:
    """Escape an attribute value for use in a string DN (RFC 4514 2.4)."""
    out = []
    for i, ch in enumerate(value):
        if ch in _SPECIAL or (ch == " " and i in (0, len(value) - 1)) or (ch == "#" and i == 0):
            out.append("\\" + ch)
        elif ch == "\x00":
            out.append("\\00")
        else:
            out.append(ch)
    return "".join(out)


def format_dn(dn: DN) -> str:
    return ",".join("+".join(f"{a}={escape_value(v)}" for a, v in rdn) for rdn in dn)


def is_descendant_or_self(dn: DN, ancestor: DN) -> bool:
    """Both normalised. True when ``dn`` is ``ancestor`` or lies below it."""
    return len(dn) >= len(ancestor) and dn[len(dn) - len(ancestor) :] == ancestor
