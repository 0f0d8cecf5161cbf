"""In-memory stand-ins for the store and the thread pool, for fast protocol tests.

``FakeDirectory`` implements ``ldapsrv.directory.ports.DirectoryReader`` by
evaluating predicate trees in Python with RFC 4511's three-valued logic: small
and obviously right, so that protocol tests check the protocol, not a database.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from twisted.internet import defer

from ldapsrv.directory import predicates as p
from ldapsrv.directory.records import (
    AccountKind,
    Credentials,
    GroupRecord,
    ServiceAccountRecord,
    UserRecord,
)

T0 = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)


def user(id: int, name: str, *, groups: Iterable[str] = (), **fields: Any) -> UserRecord:
    values: dict[str, Any] = {
        "uuid": f"00000000-0000-4000-8000-{id:012d}",
        "uid_number": 10000 + id,
        "gid_number": 10000,
        "display_name": name.title(),
        "given_name": name.title(),
        "surname": "Example",
        "mail": f"{name}@example.org",
        "home_directory": f"/home/{name}",
        "login_shell": "/bin/bash",
        "gecos": None,
        "created": T0,
        "modified": T0,
    }
    values.update(fields)
    return UserRecord(id=id, name=name, group_names=tuple(groups), **values)


def service(
    id: int, name: str, *, groups: Iterable[str] = (), **fields: Any
) -> ServiceAccountRecord:
    values: dict[str, Any] = {
        "uuid": f"00000000-0000-4000-a000-{id:012d}",
        "kind": AccountKind.SERVICE_ACCOUNT,
        "description": None,
        "created": T0,
        "modified": T0,
    }
    values.update(fields)
    return ServiceAccountRecord(id=id, name=name, group_names=tuple(groups), **values)


def group(id: int, name: str, *, members: Iterable[str] = (), **fields: Any) -> GroupRecord:
    values: dict[str, Any] = {
        "uuid": f"00000000-0000-4000-9000-{id:012d}",
        "gid_number": 10000 + id,
        "description": None,
        "created": T0,
        "modified": T0,
    }
    values.update(fields)
    return GroupRecord(id=id, name=name, member_names=tuple(members), **values)


def _kleene_and(results: Iterable[bool | None]) -> bool | None:
    out: bool | None = True
    for r in results:
        if r is False:
            return False
        if r is None:
            out = None
    return out


def _kleene_or(results: Iterable[bool | None]) -> bool | None:
    out: bool | None = False
    for r in results:
        if r is True:
            return True
        if r is None:
            out = None
    return out


def _fold(value: object, case_exact: bool) -> object:
    return value if case_exact or not isinstance(value, str) else value.casefold()


Visibility = Callable[[str, "UserRecord | ServiceAccountRecord | GroupRecord | str"], bool]


def everything_visible(viewer: str, what: object) -> bool:
    """The fake's default: every bound account sees everything (a full grant)."""
    return True


def holds(
    pred: p.Predicate,
    record: UserRecord | ServiceAccountRecord | GroupRecord,
    visible: Visibility = everything_visible,
) -> bool | None:
    """Three-valued truth of ``pred`` for one record (NULL field -> FALSE).
    ``visible(viewer, record_or_name)`` stands in for the grants (VisibleTo)."""
    match pred:
        case p.VisibleTo(viewer):
            return visible(viewer, record)
        case p.Disabled():
            return isinstance(record, UserRecord) and record.disabled
        case p.Const(value):
            return value
        case p.AllOf(items):
            return _kleene_and(holds(i, record, visible) for i in items)
        case p.AnyOf(items):
            return _kleene_or(holds(i, record, visible) for i in items)
        case p.Negation(item):
            r = holds(item, record, visible)
            return None if r is None else not r
        case p.FieldEquals(name, value, case_exact):
            actual = getattr(record, name)
            return actual is not None and _fold(actual, case_exact) == _fold(value, case_exact)
        case p.FieldSubstrings(name, initial, any_, final, case_exact):
            actual = getattr(record, name)
            if actual is None:
                return False
            rx = re.escape(initial or "")
            for piece in any_:
                rx += ".*" + re.escape(piece)
            rx += ".*" + re.escape(final or "")
            flags = re.DOTALL | (0 if case_exact else re.IGNORECASE)
            return re.fullmatch(rx, actual, flags) is not None
        case p.FieldCompare(name, op, value):
            actual = getattr(record, name)
            if actual is None:
                return False
            return bool(actual >= value if op == ">=" else actual <= value)
        case p.FieldPresent(name):
            return getattr(record, name) is not None
        case p.InGroup(group_name, viewer):
            assert not isinstance(record, GroupRecord)
            names = _seen(record.group_names, viewer, visible)
            return group_name.casefold() in {g.casefold() for g in names}
        case p.HasMember(account_name, viewer):
            assert isinstance(record, GroupRecord)
            names = _seen(record.member_names, viewer, visible)
            return account_name.casefold() in {m.casefold() for m in names}
        case p.HasAnyMember(viewer):
            assert isinstance(record, GroupRecord)
            return bool(_seen(record.member_names, viewer, visible))
        case p.InAnyGroup(viewer):
            assert not isinstance(record, GroupRecord)
            return bool(_seen(record.group_names, viewer, visible))
    raise TypeError(f"not a predicate: {pred!r}")


def _seen(names: tuple[str, ...], viewer: str | None, visible: Visibility) -> tuple[str, ...]:
    if viewer is None:
        return names
    return tuple(n for n in names if visible(viewer, n))


@dataclass
class FakeDirectory:
    """A ``DirectoryReader`` over lists of records, ordered by id like the store."""

    users: list[UserRecord] = field(default_factory=list)
    groups: list[GroupRecord] = field(default_factory=list)
    services: list[ServiceAccountRecord] = field(default_factory=list)
    password_hashes: dict[str, str] = field(default_factory=dict)  # lower-case name -> hash
    disabled: set[str] = field(default_factory=set)
    calls: list[tuple[str, object]] = field(default_factory=list)
    visible: Visibility = everything_visible

    def _select(
        self,
        records: list[Any],
        predicate: p.Predicate,
        after_id: int,
        limit: int,
        name: str | None,
        visible_to: str | None = None,
    ) -> list[Any]:
        out = []
        for record in sorted(records, key=lambda r: r.id):
            if record.id <= after_id:
                continue
            if name is not None and record.name.casefold() != name.casefold():
                continue
            if holds(predicate, record, self.visible) is True:
                if visible_to is not None and isinstance(record, GroupRecord):
                    trimmed = _seen(record.member_names, visible_to, self.visible)
                    record = replace(record, member_names=trimmed)
                elif visible_to is not None:
                    trimmed = _seen(record.group_names, visible_to, self.visible)
                    record = replace(record, group_names=trimmed)
                out.append(record)
            if len(out) == limit:
                break
        return out

    def search_users(
        self,
        predicate: p.Predicate,
        *,
        after_id: int = 0,
        limit: int,
        name: str | None = None,
        visible_to: str | None = None,
    ) -> list[UserRecord]:
        self.calls.append(("search_users", predicate))
        return self._select(self.users, predicate, after_id, limit, name, visible_to)

    def search_groups(
        self,
        predicate: p.Predicate,
        *,
        after_id: int = 0,
        limit: int,
        name: str | None = None,
        visible_to: str | None = None,
    ) -> list[GroupRecord]:
        self.calls.append(("search_groups", predicate))
        return self._select(self.groups, predicate, after_id, limit, name, visible_to)

    def search_service_accounts(
        self,
        predicate: p.Predicate,
        *,
        after_id: int = 0,
        limit: int,
        name: str | None = None,
        visible_to: str | None = None,
    ) -> list[ServiceAccountRecord]:
        self.calls.append(("search_service_accounts", predicate))
        return self._select(self.services, predicate, after_id, limit, name, visible_to)

    def get_credentials(self, name: str) -> Credentials | None:
        self.calls.append(("get_credentials", name))
        for svc in self.services:
            if svc.name.casefold() == name.casefold():
                return Credentials(svc.id, svc.name, None, False, kind=str(svc.kind))
        for record in self.users:
            if record.name.casefold() == name.casefold():
                return Credentials(
                    account_id=record.id,
                    name=record.name,
                    password_hash=self.password_hashes.get(record.name.casefold()),
                    disabled=record.name.casefold() in self.disabled,
                )
        return None

    def set_password_hash(self, name: str, password_hash: str) -> None:
        self.calls.append(("set_password_hash", name))
        self.password_hashes[name.casefold()] = password_hash


def run_blocking(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> defer.Deferred[Any]:
    """The thread pool, synchronously: the result (or failure) is ready at once."""
    try:
        return defer.succeed(fn(*args, **kwargs))
    except Exception:
        return defer.fail()


class ImmediateBlocking:
    """What ``SearchEngine`` needs from ``ldapsrv.blocking.Blocking``: ``run``."""

    def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> defer.Deferred[Any]:
        return run_blocking(fn, *args, **kwargs)
