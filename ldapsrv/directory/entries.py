"""Records -> LDAP entries, with the client's attribute selection applied.

A ``Renderer`` is built once per search: it resolves the requested attribute
list (``*``, ``+``, ``1.1``, names in any case, aliases, OIDs) against the
schema into a fixed list of (attribute name, getter) pairs per kind, so that
rendering each entry is a straight loop. Secrets are never rendered: there is
no getter for them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ldapsrv.directory.dit import Dit, Kind, StaticEntry
from ldapsrv.directory.filtering import (
    CLASSES,
    STRUCTURAL,
    SUBSCHEMA_DN,
    format_generalized_time,
)
from ldapsrv.directory.records import GroupRecord, ServiceAccountRecord, UserRecord
from ldapsrv.directory.schema import Schema

Attribute = tuple[str, Sequence[bytes]]
# "Locked until an administrator unlocks" in draft-behera-ldap-password-policy.
LOCKED_FOREVER = b"000001010000Z"
STATE_ATTRIBUTES = frozenset({"pwdAccountLockedTime", "nsAccountLock"})
Entry = tuple[str, list[Attribute]]


@dataclass(frozen=True, slots=True)
class Selection:
    """Which attributes a search returns."""

    all_user: bool
    all_operational: bool
    names: frozenset[str]  # lower-case canonical names explicitly asked for
    types_only: bool = False

    @classmethod
    def parse(cls, requested: Iterable[str], schema: Schema, types_only: bool = False) -> Selection:
        asked = [a.strip() for a in requested]
        if not asked:
            return cls(True, False, frozenset(), types_only)
        all_user = "*" in asked
        all_operational = "+" in asked
        names: set[str] = set()
        for a in asked:
            if a in ("*", "+", "1.1"):
                continue
            at = schema.lookup(a)
            names.add(at.name.lower() if at is not None else a.split(";", 1)[0].lower())
        return cls(all_user, all_operational, frozenset(names), types_only)

    def wants(self, name: str, operational: bool) -> bool:
        if name.lower() in self.names:
            return True
        return self.all_operational if operational else self.all_user


def _s(value: str) -> list[bytes]:
    return [value.encode("utf-8")]


def _opt(value: str | None) -> list[bytes]:
    return [] if value is None else [value.encode("utf-8")]


def _i(value: int) -> list[bytes]:
    return [str(value).encode("ascii")]


@functools.lru_cache(maxsize=4096)
def _time(moment: datetime) -> list[bytes]:
    """A timestamp as GeneralizedTime. Memoised: timestamps are whole seconds and
    entries written together share them, and strftime is the dearest getter an
    enumeration runs. (The list is never modified by the encoder.)"""
    return [format_generalized_time(moment).encode("ascii")]


UserGetter = Callable[[UserRecord], list[bytes]]
GroupGetter = Callable[[GroupRecord], list[bytes]]
ServiceGetter = Callable[[ServiceAccountRecord], list[bytes]]


class Renderer:
    def __init__(
        self, dit: Dit, schema: Schema, selection: Selection, show_state: bool = True
    ) -> None:
        self.dit = dit
        self.selection = selection
        user_dn, group_dn = dit.user_dn, dit.group_dn
        user_classes = [c.encode() for c in CLASSES[Kind.USER]]
        group_classes = [c.encode() for c in CLASSES[Kind.GROUP]]
        schema_dn = [SUBSCHEMA_DN.encode()]
        no = [b"FALSE"]

        user_all: list[tuple[str, bool, UserGetter]] = [
            ("objectClass", False, lambda r: user_classes),
            ("cn", False, lambda r: _s(r.name)),
            ("uid", False, lambda r: _s(r.name)),
            ("sn", False, lambda r: _opt(r.surname)),
            ("givenName", False, lambda r: _opt(r.given_name)),
            ("displayName", False, lambda r: _opt(r.display_name)),
            ("mail", False, lambda r: _opt(r.mail)),
            ("uidNumber", False, lambda r: _i(r.uid_number)),
            ("gidNumber", False, lambda r: _i(r.gid_number)),
            ("homeDirectory", False, lambda r: _s(r.home_directory)),
            ("loginShell", False, lambda r: _s(r.login_shell)),
            ("gecos", False, lambda r: _opt(r.gecos)),
            ("memberOf", False, lambda r: [group_dn(g).encode() for g in r.group_names]),
            ("entryUUID", True, lambda r: _s(r.uuid)),
            ("entryDN", True, lambda r: _s(user_dn(r.name))),
            # A disabled person is locked the ways SSSD checks (ppolicy lockout and
            # the 389ds-style flag); shown only to full-directory searchers.
            ("pwdAccountLockedTime", True, lambda r: [LOCKED_FOREVER] if r.disabled else []),
            ("nsAccountLock", True, lambda r: [b"TRUE"] if r.disabled else []),
            ("createTimestamp", True, lambda r: _time(r.created)),
            ("modifyTimestamp", True, lambda r: _time(r.modified)),
            ("structuralObjectClass", True, lambda r: _s(STRUCTURAL[Kind.USER])),
            ("subschemaSubentry", True, lambda r: schema_dn),
            ("hasSubordinates", True, lambda r: no),
        ]
        group_all: list[tuple[str, bool, GroupGetter]] = [
            ("objectClass", False, lambda r: group_classes),
            ("cn", False, lambda r: _s(r.name)),
            ("gidNumber", False, lambda r: _i(r.gid_number)),
            ("description", False, lambda r: _opt(r.description)),
            ("member", False, lambda r: [user_dn(m).encode() for m in r.member_names]),
            ("memberUid", False, lambda r: [m.encode() for m in r.member_names]),
            ("entryUUID", True, lambda r: _s(r.uuid)),
            ("entryDN", True, lambda r: _s(group_dn(r.name))),
            ("createTimestamp", True, lambda r: _time(r.created)),
            ("modifyTimestamp", True, lambda r: _time(r.modified)),
            ("structuralObjectClass", True, lambda r: _s(STRUCTURAL[Kind.GROUP])),
            ("subschemaSubentry", True, lambda r: schema_dn),
            ("hasSubordinates", True, lambda r: no),
        ]
        service_classes = [c.encode() for c in CLASSES[Kind.SERVICE]]
        service_all: list[tuple[str, bool, ServiceGetter]] = [
            ("objectClass", False, lambda r: service_classes),
            ("cn", False, lambda r: _s(r.name)),
            ("uid", False, lambda r: _s(r.name)),
            ("description", False, lambda r: _opt(r.description)),
            ("memberOf", False, lambda r: [group_dn(g).encode() for g in r.group_names]),
            ("entryUUID", True, lambda r: _s(r.uuid)),
            ("entryDN", True, lambda r: _s(user_dn(r.name))),
            ("createTimestamp", True, lambda r: _time(r.created)),
            ("modifyTimestamp", True, lambda r: _time(r.modified)),
            ("structuralObjectClass", True, lambda r: _s(STRUCTURAL[Kind.SERVICE])),
            ("subschemaSubentry", True, lambda r: schema_dn),
            ("hasSubordinates", True, lambda r: no),
        ]
        if not show_state:
            user_all = [a for a in user_all if a[0] not in STATE_ATTRIBUTES]
        self._user = [(n, g) for n, op, g in user_all if selection.wants(n, op)]
        self._service = [(n, g) for n, op, g in service_all if selection.wants(n, op)]
        self._group = [(n, g) for n, op, g in group_all if selection.wants(n, op)]

    def user(self, record: UserRecord) -> Entry:
        return self.dit.user_dn(record.name), self._finish([(n, g(record)) for n, g in self._user])

    def service(self, record: ServiceAccountRecord) -> Entry:
        return self.dit.user_dn(record.name), self._finish(
            [(n, g(record)) for n, g in self._service]
        )

    def for_kind(self, kind: Kind) -> Callable[[Any], Entry]:
        """The renderer for rows of this kind (the search loop is kind-agnostic)."""
        if kind is Kind.USER:
            return self.user
        if kind is Kind.SERVICE:
            return self.service
        return self.group

    def group(self, record: GroupRecord) -> Entry:
        return self.dit.group_dn(record.name), self._finish(
            [(n, g(record)) for n, g in self._group]
        )

    def static(self, entry: StaticEntry) -> Entry:
        sel = self.selection
        attrs: list[Attribute] = [
            (n, [v.encode() for v in values])
            for n, values in entry.attributes
            if sel.wants(n, False)
        ]
        operational: list[tuple[str, list[bytes]]] = [
            ("entryDN", [entry.dn.encode()]),
            ("structuralObjectClass", [_structural(entry).encode()]),
            ("subschemaSubentry", [SUBSCHEMA_DN.encode()]),
            ("hasSubordinates", [b"TRUE" if entry.has_subordinates else b"FALSE"]),
        ]
        attrs.extend((n, v) for n, v in operational if sel.wants(n, True))
        return entry.dn, self._finish(attrs)

    def _finish(self, attrs: list[tuple[str, Sequence[bytes]]]) -> list[Attribute]:
        if self.selection.types_only:
            return [(n, ()) for n, v in attrs if v]
        return [(n, v) for n, v in attrs if v]


def _structural(entry: StaticEntry) -> str:
    for name, values in entry.attributes:
        if name == "objectClass":
            for c in values:
                if c in ("organization", "organizationalUnit"):
                    return c
            return values[-1]
    return "top"


def static_attribute_map(entry: StaticEntry) -> dict[str, list[str]]:
    """Lower-case name -> values, including operational ones, for filter evaluation."""
    attrs = {n.lower(): list(v) for n, v in entry.attributes}
    attrs["entrydn"] = [entry.dn]
    attrs["structuralobjectclass"] = [_structural(entry)]
    attrs["subschemasubentry"] = [SUBSCHEMA_DN]
    attrs["hassubordinates"] = ["TRUE" if entry.has_subordinates else "FALSE"]
    return attrs
