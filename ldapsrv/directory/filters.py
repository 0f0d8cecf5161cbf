"""The LDAP search filter as a typed tree (RFC 4511 section 4.5.1.7).

The wire codec produces these nodes; the directory layer turns them into
kind-specific predicates (see ``predicates.py``) that the store compiles to SQL.
Assertion values stay ``bytes`` because their meaning depends on the attribute's
syntax, which only the directory layer knows.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class And:
    """All items must be TRUE. An empty And is absolute TRUE (RFC 4526)."""

    items: tuple[Filter, ...]


@dataclass(frozen=True, slots=True)
class Or:
    """Any item must be TRUE. An empty Or is absolute FALSE (RFC 4526)."""

    items: tuple[Filter, ...]


@dataclass(frozen=True, slots=True)
class Not:
    item: Filter


@dataclass(frozen=True, slots=True)
class Equality:
    attr: str
    value: bytes


@dataclass(frozen=True, slots=True)
class Substrings:
    attr: str
    initial: bytes | None
    any: tuple[bytes, ...]
    final: bytes | None


@dataclass(frozen=True, slots=True)
class GreaterOrEqual:
    attr: str
    value: bytes


@dataclass(frozen=True, slots=True)
class LessOrEqual:
    attr: str
    value: bytes


@dataclass(frozen=True, slots=True)
class Present:
    attr: str


@dataclass(frozen=True, slots=True)
class Approx:
    attr: str
    value: bytes


@dataclass(frozen=True, slots=True)
class Extensible:
    """``(attr:dn:rule:=value)``; attr or rule may be absent, not both."""

    rule: str | None
    attr: str | None
    value: bytes
    dn_attributes: bool


Filter = (
    And
    | Or
    | Not
    | Equality
    | Substrings
    | GreaterOrEqual
    | LessOrEqual
    | Present
    | Approx
    | Extensible
)
