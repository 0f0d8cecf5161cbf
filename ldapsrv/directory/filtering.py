"""What an LDAP filter means, per kind of entry (RFC 4511 4.5.1.7, RFC 4515).

``FilterResolver.resolve`` turns a filter into a ``Predicate`` over one kind's
stored fields, resolving attribute names (any case, aliases, OIDs), value
syntax (integers as integers, DNs as names), objectClass and memberships here,
so that the store can compile it to SQL. ``evaluate`` applies a filter to the
few entries that are not stored (base, containers, rootDSE, subschema).

Both follow the three-valued logic: an unknown attribute or an assertion value
that is invalid for the attribute's syntax is Undefined, and NOT Undefined is
still Undefined, so such a filter never matches.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from ldapsrv.directory import predicates as p
from ldapsrv.directory.dit import Dit, Kind
from ldapsrv.directory.dn import DNError, normalize, parse_dn
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
from ldapsrv.directory.schema import AttributeType, Schema, Syntax

USER_CLASSES = ("top", "person", "organizationalPerson", "inetOrgPerson", "posixAccount")
SERVICE_CLASSES = ("top", "applicationProcess", "uidObject")
GROUP_CLASSES = ("top", "groupOfNames", "posixGroup")
STRUCTURAL = {
    Kind.USER: "inetOrgPerson",
    Kind.SERVICE: "applicationProcess",
    Kind.GROUP: "groupOfNames",
}
CLASSES = {Kind.USER: USER_CLASSES, Kind.SERVICE: SERVICE_CLASSES, Kind.GROUP: GROUP_CLASSES}
SUBSCHEMA_DN = "cn=Subschema"

# Matching rules by name or OID -> (applies to strings?, case exact?)
_STRING_RULES: dict[str, bool] = {
    "caseignorematch": False,
    "2.5.13.2": False,
    "caseexactmatch": True,
    "2.5.13.5": True,
    "caseignoreia5match": False,
    "1.3.6.1.4.1.1466.109.114.2": False,
    "caseexactia5match": True,
    "1.3.6.1.4.1.1466.109.114.1": True,
    "octetstringmatch": True,
    "2.5.13.17": True,
    "objectidentifiermatch": False,
    "2.5.13.0": False,
}
_OTHER_RULES = {"integermatch", "2.5.13.14", "distinguishednamematch", "2.5.13.1"}

_INTEGER = re.compile(r"-?[0-9]+")
_GENERALIZED_TIME = re.compile(
    r"(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})?(\d{2})?(?:[.,]\d+)?(Z|[+-]\d{2}(?:\d{2})?)"
)


def parse_integer(value: bytes) -> int | None:
    text = value.decode("ascii", "replace").strip()
    return int(text) if _INTEGER.fullmatch(text) else None


def parse_generalized_time(value: bytes) -> datetime | None:
    m = _GENERALIZED_TIME.fullmatch(value.decode("ascii", "replace").strip())
    if m is None:
        return None
    year, month, day, hour, minute, second, zone = m.groups()
    try:
        moment = datetime(
            int(year),
            int(month),
            int(day),
            int(hour),
            int(minute or 0),
            int(second or 0),
            tzinfo=UTC,
        )
    except ValueError:
        return None
    if zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        from datetime import timedelta

        moment -= sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[3:5] or 0))
    return moment


def format_generalized_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%d%H%M%SZ")


# The attributes a disabled person's entry carries, and the value each has.
LOCK_ATTRIBUTES = {"pwdAccountLockedTime": "000001010000z", "nsAccountLock": "true"}


def _lock_assertion(kind: Kind, name: str, op: str, value: bytes) -> p.Predicate:
    """Equality with the lock value matches disabled people; anything else matches
    nothing (enabled people have no lock attribute at all)."""
    text = _text(value)
    if kind is not Kind.USER or op != "eq" or text is None:
        return p.FALSE
    return p.Disabled() if text.strip().lower() == LOCK_ATTRIBUTES[name] else p.FALSE


def _valid_for_syntax(at: AttributeType, value: bytes) -> bool:
    if at.syntax is Syntax.INTEGER:
        return parse_integer(value) is not None
    if at.syntax is Syntax.TIME:
        return parse_generalized_time(value) is not None
    text = _text(value)
    if text is None:
        return False
    if at.syntax is Syntax.DN:
        try:
            parse_dn(text)
        except DNError:
            return False
    if at.syntax is Syntax.BOOLEAN:
        return text.strip().upper() in ("TRUE", "FALSE")
    return True


def _text(value: bytes) -> str | None:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return None


ORDERED_SYNTAXES = frozenset({Syntax.INTEGER, Syntax.TIME, Syntax.UUID})
"""Syntaxes with an ordering rule (>= and <= mean something); for every other
syntax an ordering assertion is Undefined."""


class FilterResolver:
    def __init__(self, schema: Schema, dit: Dit) -> None:
        self.schema = schema
        self.dit = dit
        self._dn_values = {kind: self.dit.static_dn_values(kind) for kind in Kind}

    def fields(self, kind: Kind) -> Mapping[str, str]:
        if kind is Kind.USER:
            return self.schema.user_fields
        if kind is Kind.SERVICE:
            return self.schema.service_fields
        return self.schema.group_fields

    # -- filters -> predicates --------------------------------------------------

    def resolve(self, flt: Filter, kind: Kind) -> p.Predicate:
        return _simplify(self._resolve(flt, kind))

    def _resolve(self, flt: Filter, kind: Kind) -> p.Predicate:
        match flt:
            case And(items):
                return p.AllOf(tuple(self._resolve(i, kind) for i in items))
            case Or(items):
                return p.AnyOf(tuple(self._resolve(i, kind) for i in items))
            case Not(item):
                return p.Negation(self._resolve(item, kind))
            case Equality(attr, value) | Approx(attr, value):
                return self._assertion(kind, attr, "eq", value)
            case GreaterOrEqual(attr, value):
                return self._assertion(kind, attr, ">=", value)
            case LessOrEqual(attr, value):
                return self._assertion(kind, attr, "<=", value)
            case Present(attr):
                return self._present(kind, attr)
            case Substrings(attr, initial, any_, final):
                return self._substrings(kind, attr, initial, any_, final)
            case Extensible():
                return self._extensible(kind, flt)
        raise TypeError(f"not a filter: {flt!r}")

    def _present(self, kind: Kind, attr: str) -> p.Predicate:
        at = self.schema.lookup(attr)
        if at is None:
            return p.UNDEFINED
        name = at.name
        field = self.fields(kind).get(name)
        if field is not None:
            return p.FieldPresent(field)  # type: ignore[arg-type]
        if name in ("objectClass", "entryDN", "structuralObjectClass", "subschemaSubentry"):
            return p.TRUE
        if name == "hasSubordinates":
            return p.TRUE
        if kind is Kind.GROUP and name in ("member", "memberUid"):
            return p.HasAnyMember()
        if kind.in_users and name == "memberOf":
            return p.InAnyGroup()
        if name in LOCK_ATTRIBUTES:
            return p.Disabled() if kind is Kind.USER else p.FALSE
        return p.FALSE

    def _assertion(
        self, kind: Kind, attr: str, op: str, value: bytes, case_exact: bool | None = None
    ) -> p.Predicate:
        at = self.schema.lookup(attr)
        if at is None:
            return p.UNDEFINED
        name = at.name
        field = self.fields(kind).get(name)
        if field is not None:
            return self._field(field, at, op, value, case_exact)
        if name in LOCK_ATTRIBUTES:
            return _lock_assertion(kind, name, op, value)
        if not _valid_for_syntax(at, value):
            return p.UNDEFINED  # an invalid assertion is Undefined for every entry
        if op != "eq":
            # Whether an ordering rule exists is a property of the attribute, not
            # of the entry: absent, an orderable attribute is FALSE; one without
            # an ordering rule is Undefined, as it is where the kind has it.
            return p.FALSE if at.syntax in ORDERED_SYNTAXES else p.UNDEFINED
        text = _text(value)
        if text is None:
            return p.UNDEFINED
        if name == "objectClass":
            wanted = text.strip().lower()
            return p.Const(any(c.lower() == wanted for c in CLASSES[kind]))
        if name == "structuralObjectClass":
            return p.Const(STRUCTURAL[kind].lower() == text.strip().lower())
        if name == "subschemaSubentry":
            return p.Const(text.strip().lower() == SUBSCHEMA_DN.lower())
        if name == "hasSubordinates":
            upper = text.strip().upper()
            return p.Const(upper == "FALSE") if upper in ("TRUE", "FALSE") else p.UNDEFINED
        if name == "entryDN":
            entry = self._dn_name(text, kind)
            return entry if not isinstance(entry, str) else p.FieldEquals("name", entry)
        if kind is Kind.GROUP and name == "member":
            member = self._dn_name(text, Kind.USER)  # people and service accounts
            return member if not isinstance(member, str) else p.HasMember(member)
        if kind is Kind.GROUP and name == "memberUid":
            return p.HasMember(text.strip())
        if kind.in_users and name == "memberOf":
            group = self._dn_name(text, Kind.GROUP)
            return group if not isinstance(group, str) else p.InGroup(group)
        return p.FALSE  # a known attribute this kind of entry does not have

    def _dn_name(self, text: str, kind: Kind) -> str | p.Const:
        """Name of the entry the DN denotes, or FALSE (valid DN, not such an entry)
        or Undefined (not a DN)."""
        try:
            dn = parse_dn(text)
        except DNError:
            return p.UNDEFINED
        name = self.dit.entry_name(dn, kind)
        return p.FALSE if name is None else name

    def _field(
        self, field: str, at: AttributeType, op: str, value: bytes, case_exact: bool | None
    ) -> p.Predicate:
        exact = at.case_exact if case_exact is None else case_exact
        f = field  # a field name from attributes.toml, checked by the store
        if at.syntax is Syntax.INTEGER:
            number = parse_integer(value)
            if number is None:
                return p.UNDEFINED
            return p.FieldEquals(f, number) if op == "eq" else p.FieldCompare(f, op, number)  # type: ignore[arg-type]
        if at.syntax is Syntax.TIME:
            moment = parse_generalized_time(value)
            if moment is None:
                return p.UNDEFINED
            return p.FieldEquals(f, moment) if op == "eq" else p.FieldCompare(f, op, moment)  # type: ignore[arg-type]
        text = _text(value)
        if text is None:
            return p.UNDEFINED
        if at.syntax is Syntax.UUID:
            text = text.strip().lower()
            exact = True
        if op == "eq":
            return p.FieldEquals(f, text, case_exact=exact)  # type: ignore[arg-type]
        if at.syntax is Syntax.UUID:
            return p.FieldCompare(f, op, text)  # type: ignore[arg-type]
        return p.UNDEFINED  # no ordering rule for directory strings in our schema

    def _substrings(
        self,
        kind: Kind,
        attr: str,
        initial: bytes | None,
        any_: Sequence[bytes],
        final: bytes | None,
    ) -> p.Predicate:
        at = self.schema.lookup(attr)
        if at is None:
            return p.UNDEFINED
        field = self.fields(kind).get(at.name)
        if at.syntax is not Syntax.STRING:
            return p.UNDEFINED
        pieces = [initial, *any_, final]
        texts = [None if b is None else _text(b) for b in pieces]
        if any(t is None and b is not None for t, b in zip(texts, pieces, strict=True)):
            return p.UNDEFINED
        if field is None:
            if kind is Kind.GROUP and at.name == "memberUid":
                return p.UNDEFINED
            return p.FALSE
        return p.FieldSubstrings(
            field,  # type: ignore[arg-type]
            texts[0],
            tuple(t for t in texts[1:-1] if t is not None),
            texts[-1],
            case_exact=at.case_exact,
        )

    def _extensible(self, kind: Kind, flt: Extensible) -> p.Predicate:
        exact: bool | None = None
        if flt.rule is not None:
            rule = flt.rule.lower()
            if rule in _STRING_RULES:
                exact = _STRING_RULES[rule]
            elif rule not in _OTHER_RULES:
                return p.UNDEFINED
        if flt.attr is not None:
            match_attr = self._assertion(kind, flt.attr, "eq", flt.value, exact)
        else:
            if exact is None and flt.rule is None:
                return p.UNDEFINED
            candidates: list[p.Predicate] = []
            for name in self.fields(kind):
                at = self.schema.lookup(name)
                if at is not None and at.syntax is Syntax.STRING:
                    candidates.append(self._assertion(kind, name, "eq", flt.value, exact))
            match_attr = p.AnyOf(tuple(candidates))
        if not flt.dn_attributes:
            return match_attr
        return p.AnyOf((match_attr, self._dn_component_match(kind, flt.attr, flt.value, exact)))

    def _dn_component_match(
        self, kind: Kind, attr: str | None, value: bytes, exact: bool | None
    ) -> p.Predicate:
        text = _text(value)
        if text is None:
            return p.UNDEFINED

        def same(a: str) -> bool:
            return a == text if exact else a.lower() == text.lower()

        static = self._dn_values[kind]
        if attr is None:
            hit = any(same(v) for values in static.values() for v in values)
            return p.AnyOf((p.Const(hit), p.FieldEquals("name", text, case_exact=bool(exact))))
        at = self.schema.lookup(attr)
        if at is None:
            return p.UNDEFINED
        leaf = at.name.lower()
        parts: list[p.Predicate] = [p.Const(any(same(v) for v in static.get(leaf, ())))]
        if leaf == "cn" or (leaf == "uid" and kind.in_users):
            parts.append(p.FieldEquals("name", text, case_exact=bool(exact)))
        return p.AnyOf(tuple(parts))


def _simplify(pred: p.Predicate) -> p.Predicate:
    """Fold constants (Kleene logic) so trivial filters give trivial SQL."""
    match pred:
        case p.AllOf(items):
            return _fold(items, absorbing=p.FALSE, neutral=p.TRUE, build=p.AllOf)
        case p.AnyOf(items):
            return _fold(items, absorbing=p.TRUE, neutral=p.FALSE, build=p.AnyOf)
        case p.Negation(item):
            inner = _simplify(item)
            if isinstance(inner, p.Const):
                return p.UNDEFINED if inner.value is None else p.Const(not inner.value)
            if isinstance(inner, p.Negation):
                return inner.item
            return p.Negation(inner)
    return pred


def _fold(
    items: tuple[p.Predicate, ...],
    *,
    absorbing: p.Const,
    neutral: p.Const,
    build: type[p.AllOf] | type[p.AnyOf],
) -> p.Predicate:
    """Simplify an AND (absorbing FALSE, neutral TRUE) or an OR (the reverse).

    Undefined items are kept once: Undefined AND x is FALSE where x is FALSE and
    Undefined otherwise; both exclude the entry, but under a NOT they differ.
    """
    out: list[p.Predicate] = []
    undefined = False
    for item in (_simplify(i) for i in items):
        if item == absorbing:
            return absorbing
        if item == neutral:
            continue
        if item == p.UNDEFINED:
            undefined = True
            continue
        out.append(item)
    if undefined:
        out.append(p.UNDEFINED)
    if not out:
        return neutral
    return out[0] if len(out) == 1 else build(tuple(out))


# -- evaluation of unstored entries ------------------------------------------------


def evaluate(
    flt: Filter,
    attributes: Mapping[str, Sequence[str]],
    schema: Schema,
    dn_values: Mapping[str, Sequence[str]] | None = None,
) -> bool | None:
    """Three-valued evaluation over a small entry; ``attributes`` keyed by lower-case
    canonical name. Used for the base entry, containers, rootDSE and subschema."""
    match flt:
        case And(items):
            result: bool | None = True
            for item in items:
                r = evaluate(item, attributes, schema, dn_values)
                if r is False:
                    return False
                if r is None:
                    result = None
            return result
        case Or(items):
            result = False
            for item in items:
                r = evaluate(item, attributes, schema, dn_values)
                if r is True:
                    return True
                if r is None:
                    result = None
            return result
        case Not(item):
            r = evaluate(item, attributes, schema, dn_values)
            return None if r is None else not r
        case Present(attr):
            at = schema.lookup(attr)
            if at is None:
                return None
            return at.name.lower() in attributes
        case Equality(attr, value) | Approx(attr, value):
            return _compare(attr, value, attributes, schema, None)
        case GreaterOrEqual(attr, value) | LessOrEqual(attr, value):
            at = schema.lookup(attr)
            if at is None or at.syntax not in ORDERED_SYNTAXES:
                return None
            wanted = _ordering_key(at.syntax, value)
            if wanted is None:
                return None
            keys = [
                _ordering_key(at.syntax, v.encode()) for v in attributes.get(at.name.lower(), ())
            ]
            ge = isinstance(flt, GreaterOrEqual)
            return any(k is not None and (k >= wanted if ge else k <= wanted) for k in keys)  # type: ignore[operator]
        case Substrings(attr, initial, any_, final):
            at = schema.lookup(attr)
            if at is None or at.syntax is not Syntax.STRING:
                return None
            parts = [initial, *any_, final]
            texts = [None if b is None else _text(b) for b in parts]
            if any(t is None and b is not None for t, b in zip(texts, parts, strict=True)):
                return None
            rx = _substring_regex(texts[0], [t for t in texts[1:-1] if t], texts[-1])
            flags = 0 if at.case_exact else re.IGNORECASE
            return any(
                re.fullmatch(rx, v, flags | re.DOTALL) is not None
                for v in attributes.get(at.name.lower(), ())
            )
        case Extensible(rule, attr, value, dn_attributes):
            exact: bool | None = None
            if rule is not None:
                if rule.lower() not in _STRING_RULES and rule.lower() not in _OTHER_RULES:
                    return None
                exact = _STRING_RULES.get(rule.lower())
            if attr is None:
                return None
            r = _compare(attr, value, attributes, schema, exact)
            if r is not True and dn_attributes and dn_values:
                at = schema.lookup(attr)
                text = _text(value)
                if at is not None and text is not None:
                    for v in dn_values.get(at.name.lower(), ()):
                        if (v == text) if exact else (v.lower() == text.lower()):
                            return True
            return r
    return None


def _ordering_key(syntax: Syntax, value: bytes) -> int | datetime | str | None:
    """The value as the resolver orders it: integers, instants, lower-case UUIDs."""
    if syntax is Syntax.INTEGER:
        return parse_integer(value)
    if syntax is Syntax.TIME:
        return parse_generalized_time(value)
    text = _text(value)
    return None if text is None else text.strip().lower()


def _substring_regex(initial: str | None, middle: list[str], final: str | None) -> str:
    rx = re.escape(initial or "")
    for piece in middle:
        rx += ".*" + re.escape(piece)
    return rx + ".*" + re.escape(final or "")


def _compare(
    attr: str,
    value: bytes,
    attributes: Mapping[str, Sequence[str]],
    schema: Schema,
    exact: bool | None,
) -> bool | None:
    at = schema.lookup(attr)
    if at is None or not _valid_for_syntax(at, value):
        return None  # as the resolver: an invalid assertion value is Undefined
    present = attributes.get(at.name.lower(), ())
    if at.syntax is Syntax.INTEGER:
        number = parse_integer(value)
        if number is None:
            return None
        return any(parse_integer(v.encode()) == number for v in present)
    text = _text(value)
    if text is None:
        return None
    if at.syntax is Syntax.DN:
        try:
            wanted = normalize(parse_dn(text))
        except DNError:
            return None
        return any(_same_dn(v, wanted) for v in present)
    case_exact = at.case_exact if exact is None else exact
    if case_exact:
        return any(v == text for v in present)
    folded = text.strip().lower()
    return any(v.strip().lower() == folded for v in present)


def _same_dn(text: str, wanted: object) -> bool:
    try:
        return normalize(parse_dn(text)) == wanted
    except DNError:
        return False
