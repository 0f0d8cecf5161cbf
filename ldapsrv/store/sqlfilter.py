"""Compile a directory predicate to a SQL condition on the accounts or groups table.

Three targets: ``users`` and ``service_accounts`` (both on the accounts table,
each with its own fields; the caller restricts the kind) and ``groups``.

Predicates use LDAP's three-valued logic (TRUE, FALSE, Undefined) and SQL has
its own (TRUE, FALSE, NULL) that does not line up with it: ``NOT (mail = 'x')``
is NULL, not TRUE, for a user without mail, whereas LDAP says ``(!(mail=x))``
matches that user. So instead of translating NOT to SQL NOT, every node compiles
to two conditions::

    T: the rows where the predicate is TRUE
    F: the rows where the predicate is FALSE

and the rows where neither holds are the Undefined ones. Negation swaps T and
F; AND is (T1 AND T2, F1 OR F2); OR is (T1 OR T2, F1 AND F2). No SQL NOT is ever
applied to a comparison that might be NULL, and F of a nullable column says
explicitly ``col IS NULL OR col <> v``. Only T of the root becomes the WHERE clause.

Conditions are folded while they are built (``x AND TRUE`` is ``x``, ``x OR TRUE``
is TRUE, ...), so ``(objectClass=*)`` produces no WHERE clause at all and
``(objectClass=sudoRole)`` produces the constant False, which lets the caller
skip the query.

Matching rules, identical on SQLite, PostgreSQL and MariaDB:

* Case-insensitive matching (the default) compares ``lower()`` of both sides in
  SQL, or ``name_lower`` for names. Case-exact matching relies on binary
  comparison, which the schema guarantees (binary collation on MariaDB).
* Ordering (``>=``, ``<=``) of strings is by code point of the lower-cased
  values; on PostgreSQL that needs ``COLLATE "C"``, since the database's
  collation may be a locale's.
* Substrings become LIKE with ``%``, ``_`` and the escape character escaped.
* An integer field asserted with a string that is not an integer, a datetime
  field asserted with a non-datetime, or substrings on a non-string field is
  Undefined (RFC 4511: an assertion the matching rule cannot evaluate).
* A field the table does not have (``uid_number`` of a group) and a membership
  test that does not apply to the kind (InGroup on groups) is an absent
  attribute: FALSE, and its negation TRUE.
* A value no column can hold (an integer beyond 32 bits, a string with NUL)
  is decided without asking the database, which would refuse to bind it.

Visibility (``VisibleTo``, and membership tests with ``visible_to``) compiles
to EXISTS subqueries over ``grants`` and ``memberships`` (see
``visible_account``/``visible_group``), so the database applies access control
in the same WHERE clause as the filter: paging, limits and counts only ever
see visible rows. Its conditions are built never to be NULL (EXISTS and
comparisons of NOT NULL columns only), so F is simply NOT T.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, assert_never

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    String,
    Table,
    and_,
    bindparam,
    false,
    func,
    or_,
    select,
    true,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from ldapsrv.directory.predicates import (
    AllOf,
    AnyOf,
    Const,
    Disabled,
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
    Value,
    VisibleTo,
)
from ldapsrv.store.models import accounts, grants, groups, memberships

Condition = bool | ColumnElement[bool]
"""A folded condition: a Python bool when it is the same for every row."""

Target = Literal["users", "service_accounts", "groups"]

LIKE_ESCAPE = "!"

FieldKind = Literal["name", "uuid", "text", "int", "datetime"]


@dataclass(frozen=True, slots=True)
class _Field:
    kind: FieldKind
    column: Any  # Column[Any]; Any so comparisons type-check without casts
    nullable: bool


def _fields(table: Table, *, kinds: dict[str, FieldKind]) -> dict[str, _Field]:
    column_names = {"created": "created_at", "modified": "modified_at"}
    out = {}
    for field, kind in kinds.items():
        column = table.c[column_names.get(field, field)]
        out[field] = _Field(kind, column, bool(column.nullable))
    return out


_USER_FIELDS = _fields(
    accounts,
    kinds={
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
    },
)
_SERVICE_ACCOUNT_FIELDS = _fields(
    accounts,
    kinds={
        "name": "name",
        "uuid": "uuid",
        "description": "text",
        "created": "datetime",
        "modified": "datetime",
    },
)
"""A service account has no posix attributes: uid_number, mail, ... are absent."""
_GROUP_FIELDS = _fields(
    groups,
    kinds={
        "name": "name",
        "uuid": "uuid",
        "gid_number": "int",
        "description": "text",
        "created": "datetime",
        "modified": "datetime",
    },
)


class codepoint_order(FunctionElement[str]):
    """Its argument, ordered by code point: ``x COLLATE "C"`` on PostgreSQL.

    SQLite (BINARY) and MariaDB (the schema's ``utf8mb4_nopad_bin``) already
    compare by code point, so elsewhere this renders the argument unchanged.
    """

    type = String()
    inherit_cache = True
    name = "codepoint_order"


@compiles(codepoint_order)
def _codepoint_order_default(element: codepoint_order, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element.clauses, **kw)


@compiles(codepoint_order, "postgresql")
def _codepoint_order_pg(element: codepoint_order, compiler: SQLCompiler, **kw: Any) -> str:
    return f'{compiler.process(element.clauses, **kw)} COLLATE "C"'


def _and(items: list[Condition]) -> Condition:
    exprs: list[ColumnElement[bool]] = []
    for item in items:
        if item is False:
            return False
        if item is not True:
            exprs.append(item)
    if not exprs:
        return True
    return exprs[0] if len(exprs) == 1 else and_(*exprs)


def _or(items: list[Condition]) -> Condition:
    exprs: list[ColumnElement[bool]] = []
    for item in items:
        if item is True:
            return True
        if item is not False:
            exprs.append(item)
    if not exprs:
        return False
    return exprs[0] if len(exprs) == 1 else or_(*exprs)


def as_sql(condition: Condition) -> ColumnElement[bool]:
    """The SQL form of a folded condition (``true()``/``false()`` for constants)."""
    if condition is True:
        return true()
    if condition is False:
        return false()
    return condition


def escape_like(text: str) -> str:
    """``text`` with LIKE's wildcards and the escape character escaped."""
    return (
        text.replace(LIKE_ESCAPE, LIKE_ESCAPE * 2)
        .replace("%", LIKE_ESCAPE + "%")
        .replace("_", LIKE_ESCAPE + "_")
    )


def like_pattern(initial: str | None, any_: tuple[str, ...], final: str | None) -> str:
    """The LIKE pattern matching ``initial*any1*any2*final`` (pieces in order,
    not overlapping, as RFC 4517 substrings matching requires)."""
    return (
        escape_like(initial or "")
        + "%"
        + "".join(escape_like(piece) + "%" for piece in any_)
        + escape_like(final or "")
    )


_INTEGER = re.compile(r"[+-]?[0-9]+")


def as_integer(value: Value) -> int | None:
    """``value`` as an integer assertion, or None when it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
        return int(value)
    return None


def as_datetime(value: Value) -> datetime | None:
    """``value`` as an aware datetime assertion (naive means UTC), or None."""
    if not isinstance(value, datetime):
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def as_text(value: Value) -> str | None:
    """``value`` as a string assertion (integers spelled out), or None."""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


_UNDEFINED: tuple[Condition, Condition] = (False, False)
_ABSENT: tuple[Condition, Condition] = (False, True)
_NEVER: tuple[Condition, Condition] = (False, True)
"""A comparison no stored value can satisfy: FALSE for every row."""

INT_MIN, INT_MAX = -(2**31), 2**31 - 1
"""The range of the INTEGER columns; assertions beyond it are decided here
(SQLite's driver cannot even bind integers beyond 64 bits)."""


def storable(text: str) -> bool:
    """False for strings no column holds: NUL characters (PostgreSQL refuses
    them even as parameters; the store refuses control characters on write)."""
    return "\x00" not in text


def _nullable_false(field: _Field, false_when_present: Condition) -> Condition:
    """F of a comparison: the value is absent, or present and not matching."""
    if not field.nullable:
        return false_when_present
    return _or([field.column.is_(None), false_when_present])


def _present(field: _Field) -> tuple[Condition, Condition]:
    if not field.nullable:
        return (True, False)
    return (field.column.is_not(None), field.column.is_(None))


class _Compiler:
    def __init__(self, target: Target) -> None:
        self.target = target
        self.fields = {
            "users": _USER_FIELDS,
            "service_accounts": _SERVICE_ACCOUNT_FIELDS,
            "groups": _GROUP_FIELDS,
        }[target]

    def compile(self, pred: Predicate) -> tuple[Condition, Condition]:
        match pred:
            case Const(value=value):
                if value is None:
                    return _UNDEFINED
                return (value, not value)
            case Negation(item=item):
                t, f = self.compile(item)
                return (f, t)
            case AllOf(items=items):
                pairs = [self.compile(i) for i in items]
                return (_and([t for t, _ in pairs]), _or([f for _, f in pairs]))
            case AnyOf(items=items):
                pairs = [self.compile(i) for i in items]
                return (_or([t for t, _ in pairs]), _and([f for _, f in pairs]))
            case FieldPresent(field=name):
                field = self.fields.get(name)
                if field is None:
                    return _ABSENT
                return _present(field)
            case FieldEquals(field=name, value=value, case_exact=case_exact):
                field = self.fields.get(name)
                if field is None:
                    return _ABSENT
                return self._equals(field, value, case_exact)
            case FieldSubstrings(
                field=name, initial=initial, any=any_, final=final, case_exact=case_exact
            ):
                field = self.fields.get(name)
                if field is None:
                    return _ABSENT
                return self._substrings(field, like_pattern(initial, any_, final), case_exact)
            case FieldCompare(field=name, op=op, value=value):
                field = self.fields.get(name)
                if field is None:
                    return _ABSENT
                return self._compare(field, op, value)
            case InGroup(group_name=group_name, visible_to=viewer):
                if self.target == "groups":
                    return _ABSENT
                return self._exists_membership(group_name=group_name, viewer=viewer)
            case InAnyGroup(visible_to=viewer):
                if self.target == "groups":
                    return _ABSENT
                return self._exists_membership(viewer=viewer)
            case HasMember(account_name=account_name, visible_to=viewer):
                if self.target != "groups":
                    return _ABSENT
                return self._exists_membership(account_name=account_name, viewer=viewer)
            case HasAnyMember(visible_to=viewer):
                if self.target != "groups":
                    return _ABSENT
                return self._exists_membership(viewer=viewer)
            case Disabled():
                if self.target != "users":
                    return _ABSENT
                return (accounts.c.disabled == true(), accounts.c.disabled == false())
            case VisibleTo(viewer=viewer):
                if self.target == "groups":
                    visible = visible_group(groups, viewer)
                else:
                    visible = visible_account(accounts, viewer)
                return (visible, _not(visible))
            case _:
                assert_never(pred)

    def _equals(self, field: _Field, value: Value, case_exact: bool) -> tuple[Condition, Condition]:
        col = field.column
        match field.kind:
            case "int":
                number = as_integer(value)
                if number is None:
                    return _UNDEFINED
                if not INT_MIN <= number <= INT_MAX:
                    return _NEVER  # no column can hold it (and drivers would choke)
                return (col == number, _nullable_false(field, col != number))
            case "datetime":
                instant = as_datetime(value)
                if instant is None:
                    return _UNDEFINED
                return (col == instant, _nullable_false(field, col != instant))
        text = as_text(value)
        if text is None:
            return _UNDEFINED
        if not storable(text):
            return _NEVER
        match field.kind:
            case "name":
                lowered = self.fields["name"].column.table.c.name_lower
                if case_exact:
                    # name_lower first: the unique index finds the row, the
                    # exact comparison then checks the case.
                    return (
                        and_(lowered == text.lower(), col == text),
                        or_(lowered != text.lower(), col != text),
                    )
                return (lowered == text.lower(), lowered != text.lower())
            case "uuid":
                # Stored in canonical lower case; UUID matching ignores case.
                wanted = text if case_exact else text.lower()
                return (col == wanted, col != wanted)
            case "text":
                if case_exact:
                    return (col == text, _nullable_false(field, col != text))
                lhs, rhs = func.lower(col), func.lower(text)
                return (lhs == rhs, _nullable_false(field, lhs != rhs))
        raise AssertionError(f"unhandled field kind {field.kind!r}")

    def _substrings(
        self, field: _Field, pattern: str, case_exact: bool
    ) -> tuple[Condition, Condition]:
        col = field.column
        lhs: Any
        rhs: Any
        match field.kind:
            case "int" | "datetime":
                return _UNDEFINED
            case "name":
                if case_exact:
                    lhs, rhs = col, pattern
                else:
                    lhs, rhs = col.table.c.name_lower, pattern.lower()
            case "uuid":
                lhs, rhs = col, pattern if case_exact else pattern.lower()
            case "text":
                if case_exact:
                    lhs, rhs = col, pattern
                else:
                    lhs, rhs = func.lower(col), func.lower(pattern)
            case _:
                assert_never(field.kind)
        if not storable(pattern):
            return _NEVER
        if pattern == "%":
            # No pieces: matches every present value, like a presence test.
            return _present(field)
        return (
            lhs.like(rhs, escape=LIKE_ESCAPE),
            _nullable_false(field, lhs.not_like(rhs, escape=LIKE_ESCAPE)),
        )

    def _compare(
        self, field: _Field, op: Literal[">=", "<="], value: Value
    ) -> tuple[Condition, Condition]:
        col = field.column
        lhs: Any
        rhs: Any
        strict = False
        match field.kind:
            case "int":
                rhs = as_integer(value)
                if rhs is None:
                    return _UNDEFINED
                if not INT_MIN <= rhs <= INT_MAX:
                    # Beyond every storable value: all or nothing.
                    return _present(field) if (rhs > INT_MAX) == (op == "<=") else _NEVER
                lhs = col
            case "datetime":
                rhs = as_datetime(value)
                if rhs is None:
                    return _UNDEFINED
                lhs = col
            case "name" | "uuid" | "text":
                text = as_text(value)
                if text is None:
                    return _UNDEFINED
                if not storable(text):
                    # No stored value contains NUL, so for s without NUL and
                    # p the part before the first NUL: s >= p+NUL+... iff
                    # s > p, and s <= p+NUL+... iff s <= p.
                    text = text.split("\x00", 1)[0]
                    strict = op == ">="
                if field.kind == "text":
                    lhs, rhs = codepoint_order(func.lower(col)), func.lower(text)
                else:
                    source = col.table.c.name_lower if field.kind == "name" else col
                    lhs, rhs = codepoint_order(source), text.lower()
            case _:
                assert_never(field.kind)
        if op == ">=":
            if strict:
                return (lhs > rhs, _nullable_false(field, lhs <= rhs))
            return (lhs >= rhs, _nullable_false(field, lhs < rhs))
        return (lhs <= rhs, _nullable_false(field, lhs > rhs))

    def _exists_membership(
        self,
        *,
        group_name: str | None = None,
        account_name: str | BindParameter[str] | None = None,
        viewer: str | None = None,
    ) -> tuple[Condition, Condition]:
        names = (group_name, account_name)
        if not all(storable(n) for n in names if isinstance(n, str)):
            return _NEVER
        m = _TESTED_MEMBERSHIP
        if self.target != "groups":
            query = select(m.c.group_id).where(m.c.account_id == accounts.c.id)
            if group_name is not None or viewer is not None:
                g = _TESTED_GROUP
                query = query.join(g, g.c.id == m.c.group_id)
                if group_name is not None:
                    query = query.where(g.c.name_lower == group_name.lower())
                if viewer is not None:
                    query = query.where(as_sql(visible_group(g, viewer)))
            query = query.correlate(accounts)
        else:
            query = select(m.c.account_id).where(m.c.group_id == groups.c.id)
            if account_name is not None or viewer is not None:
                a = _TESTED_ACCOUNT
                query = query.join(a, a.c.id == m.c.account_id)
                if isinstance(account_name, str):
                    query = query.where(a.c.name_lower == account_name.lower())
                elif account_name is not None:  # bound at run time, already lower-cased
                    query = query.where(a.c.name_lower == account_name)
                if viewer is not None:
                    query = query.where(as_sql(visible_account(a, viewer)))
            query = query.correlate(groups)
        found = query.exists()
        return (found, ~found)


def _not(condition: Condition) -> Condition:
    """NOT of a condition known never to be NULL (so SQL's NOT is LDAP's)."""
    if isinstance(condition, bool):
        return not condition
    return ~condition


# --- visibility ------------------------------------------------------------------
#
# Every subquery below aliases the tables it reads, so it correlates only with
# the row it is given (``row``: the accounts or groups table of the outer query,
# or an alias of it inside a membership test) and never by accident with a
# table of the enclosing statement. The viewer-only parts (its id, its groups,
# "holds search_full_directory") reference no outer row: every backend
# evaluates such uncorrelated subqueries once per statement, not once per row,
# which is what keeps a restricted search as cheap as an unrestricted one.


# The aliases are built once: an alias computes its column collection on first
# use, which cost ~3 ms per restricted query when every call made new ones. Each
# name appears only inside its own subquery, so sharing the objects between
# statements (and between sibling subqueries) cannot correlate them by accident.
_VIEWER = accounts.alias("viewer")
_VIEWER_MEMBERSHIP = memberships.alias("viewer_membership")
_FULL_GRANT = grants.alias("full_grant")
_SCOPE_GRANT = grants.alias("scope_grant")
_ROW_MEMBERSHIP = memberships.alias("row_membership")
_VIEWER_IN_ROW = memberships.alias("viewer_in_row")
# The membership tests of filters (member=, memberUid=, memberOf=): one alias each,
# built once. Each test is its own EXISTS, so two tests in one filter may use the
# same names; a fresh alias per test would copy every column of the table and
# defeat the memoised visibility conditions, which are keyed by the alias.
_TESTED_MEMBERSHIP = memberships.alias("tested_membership")
_TESTED_GROUP = groups.alias("tested_group")
_TESTED_ACCOUNT = accounts.alias("tested_account")
_ROW_SCOPE_GRANT = grants.alias("row_scope_grant")


def _viewer_id(viewer: str) -> Any:
    """The viewer's account id as a scalar subquery (NULL for an unknown viewer,
    which then matches no grant, no membership and no row)."""
    v = _VIEWER
    return select(v.c.id).where(v.c.name_lower == viewer.lower()).scalar_subquery()


def _held_by_viewer(grant: Any, viewer: str) -> ColumnElement[bool]:
    """``grant`` is held by the viewer directly or by a group it is a direct member of."""
    vm = _VIEWER_MEMBERSHIP
    viewer_id = _viewer_id(viewer)
    return or_(
        grant.c.subject_account_id == viewer_id,
        grant.c.subject_group_id.in_(select(vm.c.group_id).where(vm.c.account_id == viewer_id)),
    )


def _full_directory(viewer: str) -> ColumnElement[bool]:
    """The viewer (or one of its groups) holds ``search_full_directory``. Uncorrelated."""
    g = _FULL_GRANT
    return (
        select(g.c.id)
        .where(g.c.permission == "search_full_directory", _held_by_viewer(g, viewer))
        .exists()
    )


def _scope_groups(viewer: str) -> Any:
    """Ids of the groups a ``search`` grant held by the viewer is scoped to. Uncorrelated."""
    g = _SCOPE_GRANT
    return select(g.c.scope_group_id).where(
        g.c.permission == "search",
        g.c.scope_group_id.is_not(None),
        _held_by_viewer(g, viewer),
    )


# The visibility conditions depend only on the row's table and the viewer's name,
# and building them costs far more than running them: each is built once per
# (table, viewer) and reused. Reuse is safe: they hold no grant or membership,
# only the subqueries that look them up when the statement runs, so a grant or a
# revocation still counts from the next search on.
# Bounded small: a lookup's condition is unique to its value and is not worth
# keeping; what repeats (viewers, paged and batched searches) fits easily.
_VISIBILITY_CACHE = 256


@functools.lru_cache(maxsize=_VISIBILITY_CACHE)
def visible_account(row: Any, viewer: str) -> Condition:
    """Accounts table (or alias) ``row`` may be seen by ``viewer``: it holds full
    search, or the row is the viewer, or the row is a member of one of the
    viewer's scope groups. Never NULL."""
    if not storable(viewer):
        return False  # no account has that name: an unknown viewer sees nothing
    rm = _ROW_MEMBERSHIP
    in_scope = (
        select(rm.c.group_id)
        .where(rm.c.account_id == row.c.id, rm.c.group_id.in_(_scope_groups(viewer)))
        .correlate(row)
        .exists()
    )
    return or_(_full_directory(viewer), row.c.name_lower == viewer.lower(), in_scope)


@functools.lru_cache(maxsize=_VISIBILITY_CACHE)
def visible_group(row: Any, viewer: str) -> Condition:
    """Groups table (or alias) ``row`` may be seen by ``viewer``: it holds full
    search, or it is a member of the row, or the row is one of its scope
    groups. Never NULL."""
    if not storable(viewer):
        return False
    vm = _VIEWER_IN_ROW
    member = (
        select(vm.c.account_id)
        .where(vm.c.group_id == row.c.id, vm.c.account_id == _viewer_id(viewer))
        .correlate(row)
        .exists()
    )
    sg = _ROW_SCOPE_GRANT
    scope = (
        select(sg.c.id)
        .where(
            sg.c.scope_group_id == row.c.id,
            sg.c.permission == "search",
            _held_by_viewer(sg, viewer),
        )
        .correlate(row)
        .exists()
    )
    return or_(_full_directory(viewer), member, scope)


@functools.lru_cache(maxsize=_VISIBILITY_CACHE)
def compile_condition(predicate: Predicate, target: Target) -> Condition:
    """The folded WHERE condition selecting the rows for which ``predicate`` is TRUE.

    ``target`` is ``"users"`` or ``"service_accounts"`` (the accounts table; the
    caller adds the kind restriction) or ``"groups"``. A result of
    ``True`` means no restriction, ``False`` means no row can match. Memoised:
    a predicate is an immutable value, and so is the condition (values are bound
    in it, grants are looked up when it runs), so a repeated filter, a paged
    search's every page and an enumeration's every batch compile once.
    """
    t, _ = _Compiler(target).compile(predicate)
    return t


MEMBER_KEY = "member_lower"
"""The bound parameter of ``member_condition``: the member's name, lower-cased."""


@functools.lru_cache(maxsize=_VISIBILITY_CACHE)
def member_condition(visible_to: str | None) -> ColumnElement[bool]:
    """Groups having as a member the account named by the ``member_lower``
    parameter (counted only if ``visible_to`` may see it): ``HasMember`` with
    the name bound at run time, for one statement shared by every name."""
    found, _ = _Compiler("groups")._exists_membership(
        account_name=bindparam(MEMBER_KEY), viewer=visible_to
    )
    assert not isinstance(found, bool)
    return found


def compile_predicate(predicate: Predicate, target: Target) -> ColumnElement[bool]:
    """Like ``compile_condition`` but always a SQL expression."""
    return as_sql(compile_condition(predicate, target))
