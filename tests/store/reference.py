"""A deliberately plain Python evaluator of predicates over records.

It is the specification the SQL compiler is tested against: RFC 4511
three-valued logic (None is Undefined), an absent value makes a comparison
FALSE, case-insensitive matching lower-cases both sides, substrings are
matched in order without overlapping, integers compare as integers and
strings by code point. It shares no code with ``ldapsrv.store.sqlfilter``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ldapsrv.directory.predicates import (
    AllOf,
    AnyOf,
    Const,
    FieldCompare,
    FieldEquals,
    FieldPresent,
    FieldSubstrings,
    HasAnyMember,
    HasMember,
    InAnyGroup,
    InGroup,
    Negation,
    Predicate,
)
from ldapsrv.directory.records import GroupRecord, UserRecord

USER_KINDS = {
    "name": "name",
    "uuid": "uuid",
    "uid_number": "int",
    "gid_number": "int",
    "display_name": "text",
    "given_name": "text",
    "surname": "text",
    "mail": "text",
    "home_directory": "text",
    "login_shell": "text",
    "gecos": "text",
    "created": "datetime",
    "modified": "datetime",
}
GROUP_KINDS = {
    "name": "name",
    "uuid": "uuid",
    "gid_number": "int",
    "description": "text",
    "created": "datetime",
    "modified": "datetime",
}


def _integer(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return None
    return None


def _instant(value: Any) -> datetime | None:
    if not isinstance(value, datetime):
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _string(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    return None


def _pieces_match(text: str, initial: str | None, any_: tuple[str, ...], final: str | None) -> bool:
    start, end = 0, len(text)
    if initial:
        if not text.startswith(initial):
            return False
        start = len(initial)
    if final:
        if end - start < len(final) or not text.endswith(final):
            return False
        end -= len(final)
    for piece in any_:
        found = text.find(piece, start, end)
        if found < 0:
            return False
        start = found + len(piece)
    return True


def _value(record: Any, field: str) -> Any:
    return getattr(record, field)


def evaluate(pred: Predicate, record: UserRecord | GroupRecord) -> bool | None:
    """TRUE, FALSE or Undefined (None) of ``pred`` for ``record``."""
    kinds = USER_KINDS if isinstance(record, UserRecord) else GROUP_KINDS
    match pred:
        case Const(value=value):
            return value
        case Negation(item=item):
            inner = evaluate(item, record)
            return None if inner is None else not inner
        case AllOf(items=items):
            results = [evaluate(i, record) for i in items]
            if False in results:
                return False
            return None if None in results else True
        case AnyOf(items=items):
            results = [evaluate(i, record) for i in items]
            if True in results:
                return True
            return None if None in results else False
        case FieldPresent(field=field):
            return field in kinds and _value(record, field) is not None
        case FieldEquals(field=field, value=value, case_exact=exact):
            if field not in kinds:
                return False
            kind, actual = kinds[field], _value(record, field)
            if kind == "int":
                wanted = _integer(value)
                return None if wanted is None else actual is not None and actual == wanted
            if kind == "datetime":
                when = _instant(value)
                return None if when is None else actual == when
            text = _string(value)
            if text is None:
                return None
            if actual is None:
                return False
            return actual == text if exact else actual.lower() == text.lower()
        case FieldSubstrings(field=field, initial=initial, any=any_, final=final, case_exact=exact):
            if field not in kinds:
                return False
            kind, actual = kinds[field], _value(record, field)
            if kind in ("int", "datetime"):
                return None
            if actual is None:
                return False
            if exact:
                return _pieces_match(actual, initial, any_, final)
            return _pieces_match(
                actual.lower(),
                initial.lower() if initial else initial,
                tuple(p.lower() for p in any_),
                final.lower() if final else final,
            )
        case FieldCompare(field=field, op=op, value=value):
            if field not in kinds:
                return False
            kind, actual = kinds[field], _value(record, field)
            wanted: Any
            if kind == "int":
                wanted = _integer(value)
            elif kind == "datetime":
                wanted = _instant(value)
            else:
                text = _string(value)
                wanted = None if text is None else text.lower()
                actual = None if actual is None else actual.lower()
            if wanted is None:
                return None
            if actual is None:
                return False
            return actual >= wanted if op == ">=" else actual <= wanted
        case InGroup(group_name=name):
            return isinstance(record, UserRecord) and name.lower() in {
                g.lower() for g in record.group_names
            }
        case InAnyGroup():
            return isinstance(record, UserRecord) and bool(record.group_names)
        case HasMember(account_name=name):
            return isinstance(record, GroupRecord) and name.lower() in {
                m.lower() for m in record.member_names
            }
        case HasAnyMember():
            return isinstance(record, GroupRecord) and bool(record.member_names)
    raise AssertionError(f"unknown predicate {pred!r}")
