"""A filter tree back in its RFC 4515 string form, for the access log.

Values are escaped as the RFC requires (``*``, ``(``, ``)``, ``\\``, NUL) and so
are bytes that are not printable UTF-8, so a log line never carries control
characters or invalid text from a client.
"""

from __future__ import annotations

import re

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

_SPECIAL = frozenset("*()\\\x00")


_NEEDS_ESCAPING = re.compile(rb"[^ -~]|[*()\\]")  # outside printable ASCII, or special


def escape_value(value: bytes) -> str:
    """An assertion value as RFC 4515 text: specials and non-printables as ``\\XX``."""
    if _NEEDS_ESCAPING.search(value) is None:
        return value.decode("ascii")
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return "".join(f"\\{b:02x}" for b in value)
    out: list[str] = []
    for char in text:
        if char in _SPECIAL or not char.isprintable():
            out.extend(f"\\{b:02x}" for b in char.encode("utf-8"))
        else:
            out.append(char)
    return "".join(out)


def filter_text(node: Filter) -> str:
    """``node`` as an RFC 4515 string, e.g. ``(&(uid=alice)(objectClass=*))``."""
    match node:
        case And(items):
            return "(&" + "".join(filter_text(item) for item in items) + ")"
        case Or(items):
            return "(|" + "".join(filter_text(item) for item in items) + ")"
        case Not(item):
            return f"(!{filter_text(item)})"
        case Equality(attr, value):
            return f"({attr}={escape_value(value)})"
        case GreaterOrEqual(attr, value):
            return f"({attr}>={escape_value(value)})"
        case LessOrEqual(attr, value):
            return f"({attr}<={escape_value(value)})"
        case Approx(attr, value):
            return f"({attr}~={escape_value(value)})"
        case Present(attr):
            return f"({attr}=*)"
        case Substrings(attr, initial, middle, final):
            parts = [escape_value(initial or b"")]
            parts += [escape_value(part) for part in middle]
            parts.append(escape_value(final or b""))
            return f"({attr}=" + "*".join(parts) + ")"
        case Extensible(rule, attr, value, dn_attributes):
            head = (attr or "") + (":dn" if dn_attributes else "") + (f":{rule}" if rule else "")
            return f"({head}:={escape_value(value)})"
    raise TypeError(f"not a filter node: {node!r}")
