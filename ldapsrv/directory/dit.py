"""The shape of the tree: which DN names what, and what a search base covers.

    <base>                      organization / dcObject (static)
      ou=users,<base>           organizationalUnit (static)
        cn=<name>,ou=users,...  a person (``uid=<name>`` names the same entry)
      ou=groups,<base>          organizationalUnit (static)
        cn=<name>,ou=groups,... a group

Planning a search turns (base DN, scope) into an ordered list of sources; the
order is the order entries are returned in, which paging relies on.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from ldapsrv.directory.dn import DN, MEMO_MAX_CHARS, DNError, escape_value, normalize, parse_dn
from ldapsrv.ldap.messages import SCOPE_BASE, SCOPE_ONE, SCOPE_SUB
from ldapsrv.memo import Memo

USERS_OU = "users"
GROUPS_OU = "groups"


class Kind(Enum):
    USER = "user"  # a person
    SERVICE = "service"  # a service account (also in ou=users)
    GROUP = "group"

    @property
    def in_users(self) -> bool:
        return self is not Kind.GROUP


@dataclass(frozen=True, slots=True)
class StaticEntry:
    """An entry that is not in the database: the base and the two containers."""

    dn: str
    attributes: tuple[tuple[str, tuple[str, ...]], ...]
    has_subordinates: bool = True


@dataclass(frozen=True, slots=True)
class StoredEntries:
    """All entries of one kind, or the one entry named ``name``."""

    kind: Kind
    name: str | None = None


Source = StaticEntry | StoredEntries


@dataclass(frozen=True, slots=True)
class SearchPlan:
    """What to read, in order; ``leaves`` are set when the base names one stored
    entry (a name under ou=users may be a person or a service account), whose
    existence decides between "no entries" and noSuchObject."""

    sources: tuple[Source, ...]
    leaves: tuple[StoredEntries, ...] = ()


@dataclass(frozen=True, slots=True)
class NoSuchBase(Exception):
    """The search base does not exist; ``matched_dn`` is its deepest existing ancestor."""

    matched_dn: str


class Dit:
    def __init__(self, base_dn: str) -> None:
        parsed = parse_dn(base_dn)
        if not parsed:
            raise DNError("the base DN must not be empty")
        self.base: DN = parsed
        self.base_norm = normalize(parsed)
        self.base_dn = ",".join(
            "+".join(f"{a}={escape_value(v)}" for a, v in rdn) for rdn in parsed
        )
        self.users_dn = f"ou={USERS_OU},{self.base_dn}"
        self.groups_dn = f"ou={GROUPS_OU},{self.base_dn}"
        self.base_entry = self._base_entry()
        self.users_entry = StaticEntry(
            self.users_dn, (("objectClass", ("top", "organizationalUnit")), ("ou", (USERS_OU,)))
        )
        self.groups_entry = StaticEntry(
            self.groups_dn, (("objectClass", ("top", "organizationalUnit")), ("ou", (GROUPS_OU,)))
        )
        # Bind DNs and the DNs of who binds, remembered (every bind needs both).
        self._entry_names: Memo[tuple[str, Kind], str | None] = Memo(
            self._read_entry_name, lambda key: len(key[0]) <= MEMO_MAX_CHARS
        )
        self._user_dns: Memo[str, str] = Memo(
            lambda name: f"cn={escape_value(name)},{self.users_dn}",
            lambda name: len(name) <= MEMO_MAX_CHARS,
        )

    def _base_entry(self) -> StaticEntry:
        leaf = self.base[0][0]
        attr, value = leaf
        classes: tuple[str, ...]
        attrs: tuple[tuple[str, tuple[str, ...]], ...]
        if attr == "dc":
            classes = ("top", "dcObject", "organization")
            attrs = (("dc", (value,)), ("o", (value,)))
        elif attr == "o":
            classes = ("top", "organization")
            attrs = (("o", (value,)),)
        elif attr == "ou":
            classes = ("top", "organizationalUnit")
            attrs = (("ou", (value,)),)
        else:
            classes = ("top", "extensibleObject")
            attrs = ((attr, (value,)),)
        return StaticEntry(self.base_dn, (("objectClass", classes), *attrs))

    # -- naming ---------------------------------------------------------------

    def user_dn(self, name: str) -> str:
        """The DN of a person or a service account."""
        return self._user_dns(name)

    def group_dn(self, name: str) -> str:
        return f"cn={escape_value(name)},{self.groups_dn}"

    def static_dn_values(self, kind: Kind) -> dict[str, tuple[str, ...]]:
        """Values of the non-leaf RDN attributes in an entry's DN (for ``:dn:`` filters)."""
        values: dict[str, list[str]] = {"ou": [USERS_OU if kind.in_users else GROUPS_OU]}
        for rdn in self.base:
            for attr, value in rdn:
                values.setdefault(attr, []).append(value)
        return {k: tuple(v) for k, v in values.items()}

    def entry_name(self, dn: DN, kind: Kind) -> str | None:
        """The name of the user/group entry ``dn`` denotes, or None.

        Accepts ``cn=`` (and for people ``uid=``) as the leaf, in any case.
        """
        container = USERS_OU if kind.in_users else GROUPS_OU
        norm = normalize(dn)
        if len(dn) != len(self.base) + 2 or norm[1] != (("ou", container),):
            return None
        if norm[2:] != self.base_norm or len(dn[0]) != 1:
            return None
        attr, value = dn[0][0]
        if attr == "cn" or (attr == "uid" and kind.in_users):
            return value
        return None

    def parse_entry_name(self, text: str, kind: Kind) -> str | None:
        """The name of the user/group entry the DN ``text`` denotes, or None
        (also for text that is no DN)."""
        return self._entry_names((text, kind))

    def _read_entry_name(self, key: tuple[str, Kind]) -> str | None:
        text, kind = key
        try:
            return self.entry_name(parse_dn(text), kind)
        except DNError:
            return None

    # -- search planning -------------------------------------------------------

    def plan(self, base: DN, scope: int) -> SearchPlan:
        """Sources a search covers, in result order. Raises NoSuchBase."""
        norm = normalize(base)
        depth = len(norm) - len(self.base_norm)
        if depth < 0 or norm[depth:] != self.base_norm:
            raise NoSuchBase("")
        users = StoredEntries(Kind.USER)
        services = StoredEntries(Kind.SERVICE)
        groups = StoredEntries(Kind.GROUP)
        if depth == 0:
            if scope == SCOPE_BASE:
                return SearchPlan((self.base_entry,))
            if scope == SCOPE_ONE:
                return SearchPlan((self.users_entry, self.groups_entry))
            return SearchPlan(
                (self.base_entry, self.users_entry, self.groups_entry, users, services, groups)
            )
        container = norm[depth - 1]
        if container not in ((("ou", USERS_OU),), (("ou", GROUPS_OU),)):
            raise NoSuchBase(self.base_dn)
        is_users = container == (("ou", USERS_OU),)
        if depth == 1:
            entry = self.users_entry if is_users else self.groups_entry
            everything: tuple[Source, ...] = (users, services) if is_users else (groups,)
            if scope == SCOPE_BASE:
                return SearchPlan((entry,))
            if scope == SCOPE_ONE:
                return SearchPlan(everything)
            return SearchPlan((entry, *everything))
        kinds = (Kind.USER, Kind.SERVICE) if is_users else (Kind.GROUP,)
        name = self.entry_name(base, kinds[0]) if depth == 2 else None
        if name is None:
            raise NoSuchBase(self.users_dn if is_users else self.groups_dn)
        leaves = tuple(StoredEntries(kind, name) for kind in kinds)
        if scope == SCOPE_ONE:
            return SearchPlan((), leaves)  # leaves have no children
        return SearchPlan(leaves, leaves)

    def container_dn(self, kind: Kind) -> str:
        return self.users_dn if kind.in_users else self.groups_dn


def scope_name(scope: int) -> str:
    return {SCOPE_BASE: "base", SCOPE_ONE: "one", SCOPE_SUB: "sub"}.get(scope, str(scope))
