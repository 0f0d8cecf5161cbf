"""Lookups by one name: the same statement for every name, the name bound at run time.

Most searches a directory serves look one entry up: SSSD's ``(&(uid=NAME)...)``
for a person, ``(memberUid=NAME)`` or ``(member=DN)`` for the groups of a
person. Compiling such a filter builds a new SQL expression for every name
(and SQLAlchemy a new cache key for it), which costs several times what the
query does. Here the name test is taken out of the conjunction, the rest is
compiled once per filter shape (memoised as any condition is), and the name
becomes a bound parameter of one prepared statement: ``name_lower = :key`` for
an entry's own name, an EXISTS over memberships for a group member.

The split is exact: a conjunction is TRUE exactly when every part is, so
``key test AND rest`` selects the same rows as the whole predicate. Only tests
that compile to a plain comparison of ``name_lower`` are taken out: a
case-insensitive equality on the entry's name with a string value a column
can hold, or a membership test naming one account.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from ldapsrv.directory.dit import Kind
from ldapsrv.directory.predicates import AllOf, FieldEquals, HasMember, Predicate
from ldapsrv.store.sqlfilter import storable

KeyKind = Literal["name", "member"]


@dataclass(frozen=True, slots=True)
class KeyedLookup:
    kind: KeyKind
    key: str  # the name, as the client wrote it (bound lower-cased)
    rest: Predicate  # the other conjuncts
    member_visible_to: str | None = None  # a member test's viewer (kind "member")


def _conjuncts(pred: Predicate) -> Iterator[Predicate]:
    if isinstance(pred, AllOf):
        for item in pred.items:
            yield from _conjuncts(item)
    else:
        yield pred


def split_keyed(pred: Predicate, kinds: tuple[KeyKind, ...]) -> KeyedLookup | None:
    """The first name test of ``pred``'s top-level conjunction, if it has one of ``kinds``."""
    if not isinstance(pred, AllOf | FieldEquals | HasMember):
        return None
    parts = list(_conjuncts(pred))
    for index, part in enumerate(parts):
        found = _key_of(part, kinds)
        if found is not None:
            kind, key, viewer = found
            rest = AllOf(tuple(parts[:index] + parts[index + 1 :]))
            return KeyedLookup(kind, key, rest, viewer)
    return None


def _key_of(part: Predicate, kinds: tuple[KeyKind, ...]) -> tuple[KeyKind, str, str | None] | None:
    if (
        "name" in kinds
        and isinstance(part, FieldEquals)
        and part.field == "name"
        and not part.case_exact
        and isinstance(part.value, str)
        and storable(part.value)
    ):
        return ("name", part.value, None)
    if "member" in kinds and isinstance(part, HasMember) and storable(part.account_name):
        return ("member", part.account_name, part.visible_to)
    return None


def one_name_lookup(kind: Kind, pred: Predicate, name: str | None) -> bool:
    """Whether a read of ``kind`` entries is a lookup of one name through an index: a
    base-scope read of the entry ``name``, or a predicate ``split_keyed`` takes
    apart. Such a read takes a SQLite database well under a millisecond."""
    if name is not None:
        return kind is not Kind.SERVICE
    if kind is Kind.USER:
        return split_keyed(pred, ("name",)) is not None
    if kind is Kind.GROUP:
        return split_keyed(pred, ("name", "member")) is not None
    return False
