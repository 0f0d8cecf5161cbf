"""Kind-specific predicates: what a search filter means for one kind of entry.

The directory layer resolves an LDAP filter for users or for groups into this
small typed tree (attribute names, syntaxes, DNs and objectClass are already
understood here), and the store compiles it to a SQL condition. The store never
sees attribute names or DNs; the directory layer never sees SQL.

Evaluation follows RFC 4511's three-valued logic. ``Const(None)`` is Undefined.
A comparison on a field whose value is NULL is FALSE (the attribute is absent),
so ``Negation`` of it is TRUE: compilers must handle NULL explicitly rather than
rely on SQL's own NULL propagation.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

# Columns a predicate may name. ``name`` is the account/group name (cn, uid),
# compared case-insensitively unless ``case_exact``.
UserField = Literal[
    "name",
    "uuid",
    "uid_number",
    "gid_number",
    "display_name",
    "given_name",
    "surname",
    "mail",
    "home_directory",
    "login_shell",
    "gecos",
    "created",
    "modified",
]
GroupField = Literal["name", "uuid", "gid_number", "description", "created", "modified"]
ServiceField = Literal["name", "uuid", "description", "created", "modified"]
Field = UserField | GroupField | ServiceField
Value = str | int | datetime


@dataclass(frozen=True, slots=True)
class Const:
    """TRUE, FALSE or Undefined (None) for every entry of the kind."""

    value: bool | None


@dataclass(frozen=True, slots=True)
class AllOf:
    items: tuple[Predicate, ...]


@dataclass(frozen=True, slots=True)
class AnyOf:
    items: tuple[Predicate, ...]


@dataclass(frozen=True, slots=True)
class Negation:
    item: Predicate


@dataclass(frozen=True, slots=True)
class FieldEquals:
    field: Field
    value: Value
    case_exact: bool = False


@dataclass(frozen=True, slots=True)
class FieldSubstrings:
    """String fields only; pieces are matched in order, like SQL LIKE a%b%c."""

    field: Field
    initial: str | None
    any: tuple[str, ...]
    final: str | None
    case_exact: bool = False


@dataclass(frozen=True, slots=True)
class FieldCompare:
    """``>=`` or ``<=`` in the field's own ordering (integers as integers)."""

    field: Field
    op: Literal[">=", "<="]
    value: Value


@dataclass(frozen=True, slots=True)
class FieldPresent:
    field: Field


@dataclass(frozen=True, slots=True)
class InGroup:
    """Accounts: member of the group with this name (case-insensitive). memberOf.
    With ``visible_to``, only a group that account may see counts."""

    group_name: str
    visible_to: str | None = None


@dataclass(frozen=True, slots=True)
class HasMember:
    """Groups: has the account with this name (case-insensitive) as a member.
    With ``visible_to``, only a member that account may see counts."""

    account_name: str
    visible_to: str | None = None


@dataclass(frozen=True, slots=True)
class HasAnyMember:
    """Groups: has at least one member (``member=*``, ``memberUid=*``), counting
    only members ``visible_to`` may see when it is set."""

    visible_to: str | None = None


@dataclass(frozen=True, slots=True)
class InAnyGroup:
    """Accounts: member of at least one group (``memberOf=*``), counting only
    groups ``visible_to`` may see when it is set."""

    visible_to: str | None = None


@dataclass(frozen=True, slots=True)
class Disabled:
    """People: the account is disabled (the lock attributes pwdAccountLockedTime
    and nsAccountLock are present). State that only full-directory searchers may
    see: for anyone else ``visibility`` turns it into FALSE, as if absent."""


@dataclass(frozen=True, slots=True)
class VisibleTo:
    """The row may be seen by the account ``viewer`` (access control, issue 4):

    - every row, when the viewer or one of its groups holds ``search_full_directory``;
    - accounts: the viewer itself, and members of any group G for which the viewer
      or one of its groups holds ``search`` scoped to G;
    - groups: groups the viewer is a member of, and every such scope group G.

    Always TRUE or FALSE, never Undefined. Compiled to SQL (EXISTS over grants and
    memberships), so paging, limits and counts see exactly the visible rows.
    """

    viewer: str


Predicate = (
    Const
    | AllOf
    | AnyOf
    | Negation
    | FieldEquals
    | FieldSubstrings
    | FieldCompare
    | FieldPresent
    | InGroup
    | HasMember
    | HasAnyMember
    | InAnyGroup
    | Disabled
    | VisibleTo
)

TRUE = Const(True)
FALSE = Const(False)
UNDEFINED = Const(None)
