"""LDIF content records (RFC 2849): read what slapcat, ldapsearch -LLL, lldap and
389-ds' db2ldif write, and write what ``ldapsrv export`` hands out.

Reading understands ``version: 1``, comments (folded ones too), line folding,
``attr:: base64`` values, attribute options (kept in the name, e.g.
``userCertificate;binary``) and ``changetype: add`` (an entry like any other).
Other change records and ``attr:< URL`` values are refused with the line at
fault: an import must not guess. Values stay bytes; the mapping decides what
is text.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

_LINE_WIDTH = 76
_ATTRIBUTE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.;-]*$")


class LdifError(ValueError):
    """Malformed LDIF; the message names the line."""


@dataclass(slots=True)
class LdifEntry:
    """One content record: its DN, its attributes (lower-case names, values in
    file order) and the line it starts on (for error messages)."""

    dn: str
    line: int
    attributes: dict[str, list[bytes]] = field(default_factory=dict)

    def values(self, name: str) -> list[bytes]:
        """Values of ``name`` (any case, options ignored: ``cn;lang-en`` counts as ``cn``)."""
        wanted = name.lower()
        found: list[bytes] = []
        for key, values in self.attributes.items():
            if key.split(";", 1)[0] == wanted:
                found.extend(values)
        return found

    def text(self, name: str) -> list[str]:
        """Values of ``name`` as UTF-8 text; LdifError for a value that is not."""
        try:
            return [value.decode("utf-8") for value in self.values(name)]
        except UnicodeDecodeError as exc:
            raise LdifError(f"line {self.line}: {name} of {self.dn} is not UTF-8 text") from exc

    def first(self, name: str) -> str | None:
        texts = self.text(name)
        return texts[0] if texts else None


def _logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """(number of the first physical line, unfolded line); blank lines as ""."""
    current: list[str] = []
    start = 0
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.removesuffix("\r")
        if line.startswith(" ") and current:
            current.append(line[1:])
            continue
        if current:
            yield start, "".join(current)
            current = []
        if line == "":
            yield number, ""
        else:
            current, start = [line], number
    if current:
        yield start, "".join(current)


def _records(text: str) -> Iterator[list[tuple[int, str]]]:
    record: list[tuple[int, str]] = []
    for number, line in _logical_lines(text):
        if line == "":
            if record:
                yield record
            record = []
        elif not line.startswith("#"):
            record.append((number, line))
    if record:
        yield record


def _split(number: int, line: str) -> tuple[str, bytes]:
    name, sep, rest = line.partition(":")
    if not sep or not _ATTRIBUTE.match(name):
        raise LdifError(f"line {number}: expected 'attribute: value', got {line[:40]!r}")
    if rest.startswith(":"):
        try:
            return name, base64.b64decode(rest[1:].strip(), validate=True)
        except binascii.Error as exc:
            raise LdifError(f"line {number}: {name} has an invalid base64 value") from exc
    if rest.startswith("<"):
        raise LdifError(f"line {number}: {name} refers to a URL; only inline values are read")
    return name, rest.lstrip(" ").encode("utf-8")


def parse_ldif(text: str) -> list[LdifEntry]:
    """Every content record of ``text`` in file order. Raises LdifError."""
    entries: list[LdifEntry] = []
    first = True
    for record in _records(text):
        if first and record[0][1].lower().replace(" ", "") == "version:1":
            record = record[1:]
        first = False
        if not record:
            continue
        number, line = record[0]
        name, value = _split(number, line)
        if name.lower() != "dn":
            raise LdifError(f"line {number}: a record must start with 'dn:', got {name!r}")
        try:
            dn = value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise LdifError(f"line {number}: the DN is not UTF-8") from exc
        entry = LdifEntry(dn=dn, line=number)
        for number, line in record[1:]:
            name, value = _split(number, line)
            key = name.lower()
            if key == "changetype":
                if value.strip().lower() != b"add":
                    raise LdifError(
                        f"line {number}: change records ({value.decode(errors='replace')}) "
                        "are not imported; export the directory's content (slapcat, "
                        "ldapsearch -LLL)"
                    )
                continue
            entry.attributes.setdefault(key, []).append(value)
        entries.append(entry)
    return entries


def _is_safe(value: bytes) -> bool:
    """RFC 2849 SAFE-STRING: printable ASCII, not starting with space, ':' or '<',
    and (so that readers which strip do not change it) not ending with a space."""
    if not value:
        return True
    if value[0] in b" :<" or value[-1:] == b" ":
        return False
    return all(0x20 <= byte < 0x7F for byte in value)


def _fold(line: str) -> str:
    if len(line) <= _LINE_WIDTH:
        return line
    parts = [line[:_LINE_WIDTH]]
    rest = line[_LINE_WIDTH:]
    while rest:
        parts.append(" " + rest[: _LINE_WIDTH - 1])
        rest = rest[_LINE_WIDTH - 1 :]
    return "\n".join(parts)


def format_attribute(name: str, value: bytes) -> str:
    if _is_safe(value):
        return _fold(f"{name}: {value.decode('ascii')}")
    return _fold(f"{name}:: {base64.b64encode(value).decode('ascii')}")


def format_entry(dn: str, attributes: Iterable[tuple[str, Sequence[bytes]]]) -> str:
    """One record, ending with its blank line."""
    lines = [format_attribute("dn", dn.encode("utf-8"))]
    for name, values in attributes:
        lines.extend(format_attribute(name, value) for value in values)
    return "\n".join(lines) + "\n\n"
