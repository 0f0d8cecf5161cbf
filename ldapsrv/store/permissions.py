"""Grants: who may see and do what (``PermissionStore`` of ldapsrv.auth.ports).

A grant gives one permission to one account or to one group (its direct
members inherit it; groups do not nest, so "the viewer's groups" is one join).
``search`` is scoped to a group (see that group and its members),
``search_full_directory`` is never scoped, ``reset_password`` may be (people
in that group) or not (every person). The CHECK constraints of the table say
the same; they are checked here first so an admin gets a sentence, not a
constraint name.

Internal service accounts (the server's own, such as the health check's) may
not hold a grant directly: what they may see is the server's decision, made
through a group an admin can inspect, so a grant cannot quietly widen one.

Visibility itself is not decided here but in SQL (``sqlfilter``'s ``VisibleTo``)
so that paging and limits count only visible rows. ``effective_permissions``
is for decisions that are not a search: Password Modify, the LDAP layer's
"may this account see operational attributes".
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, delete, exists, insert, or_, select
from sqlalchemy.engine import Connection

from ldapsrv.directory.records import (
    MANAGEMENT_PERMISSIONS,
    AccountKind,
    AuditEvent,
    EffectivePermissions,
    GrantRecord,
    Permission,
)
from ldapsrv.errors import AlreadyExists, InvalidValue, NotFound
from ldapsrv.store.audit import AuditLog, encode_details
from ldapsrv.store.base import name_key
from ldapsrv.store.engine import run
from ldapsrv.store.models import accounts, grants, groups, memberships

_ONE_SUBJECT = "a grant goes to exactly one account or one group (not both, not none)"


def _grants_of_statement() -> Any:
    """(permission, scope group name) of every grant an account holds directly or
    through its groups; the account's lower-case name is the ``name_lower`` parameter."""
    viewer = (
        select(accounts.c.id)
        .where(accounts.c.name_lower == bindparam("name_lower"))
        .scalar_subquery()
    )
    own_groups = select(memberships.c.group_id).where(memberships.c.account_id == viewer)
    scope = groups.alias("scope_group")
    return (
        select(grants.c.permission, scope.c.name_lower)
        .select_from(grants)
        .outerjoin(scope, scope.c.id == grants.c.scope_group_id)
        .where(
            or_(
                grants.c.subject_account_id == viewer,
                grants.c.subject_group_id.in_(own_groups),
            )
        )
    )


# Built once: every bind runs it, and constructing it costs more than running it.
_GRANTS_OF = _grants_of_statement()


def check_permission(permission: Permission | str) -> Permission:
    """``permission`` as a Permission, or InvalidValue listing the known ones."""
    try:
        return Permission(permission)
    except ValueError:
        known = ", ".join(p.value for p in Permission)
        raise InvalidValue(f"unknown permission {permission!r}; known: {known}") from None


def _check_shape(
    permission: Permission, account: str | None, group: str | None, scope_group: str | None
) -> None:
    """The rules on a grant's shape, as sentences (the table's CHECKs, in words)."""
    if (account is None) == (group is None):
        raise InvalidValue(_ONE_SUBJECT)
    if permission is Permission.SEARCH and scope_group is None:
        raise InvalidValue(
            "permission 'search' needs a scope group (the group whose entries it shows); "
            "use 'search_full_directory' to see everything"
        )
    if permission in MANAGEMENT_PERMISSIONS and scope_group is not None:
        raise InvalidValue(
            f"permission '{permission.value}' is a management permission and takes no "
            "scope group: it applies to the whole directory"
        )
    if permission is Permission.SEARCH_FULL_DIRECTORY and scope_group is not None:
        raise InvalidValue(
            "permission 'search_full_directory' takes no scope group; "
            "use 'search' to see one group and its members"
        )


def grant_key(
    permission: Permission, account_id: int | None, group_id: int | None, scope_id: int | None
) -> str:
    """The unique key of a grant: NULL ids spelled as empty, so duplicates collide
    on every backend (see ``models.Grant``)."""

    def part(prefix: str, value: int | None) -> str:
        return prefix + ("" if value is None else str(value))

    return ":".join(
        (permission.value, part("a", account_id), part("g", group_id), part("s", scope_id))
    )


def _describe(
    permission: Permission, account: str | None, group: str | None, scope_group: str | None
) -> str:
    holder = f'account "{account}"' if account is not None else f'group "{group}"'
    scope = f' scoped to group "{scope_group}"' if scope_group is not None else ""
    return f"{permission.value}{scope} for {holder}"


_GRANT_COLUMNS = (
    grants.c.id,
    grants.c.permission,
    grants.c.created_at,
)


class Permissions(AuditLog):
    """Grants, on the ``grants`` table, with audit events in the same transaction."""

    # ------------------------------------------------------------- helpers

    def _grant_parties(
        self,
        conn: Connection,
        account: str | None,
        group: str | None,
        scope_group: str | None,
    ) -> tuple[Any, Any, Any]:
        """(account row, group row, scope row), each None when not asked for;
        NotFound names the missing one."""
        account_row = group_row = scope_row = None
        if account is not None:
            account_row = conn.execute(
                select(accounts.c.id, accounts.c.name, accounts.c.kind).where(
                    accounts.c.name_lower == name_key(account)
                )
            ).first()
            if account_row is None:
                raise NotFound(f'account "{account}" not found')
        if group is not None:
            group_row = self._group_row(conn, group)
            if group_row is None:
                raise NotFound(f'group "{group}" not found')
        if scope_group is not None:
            scope_row = self._group_row(conn, scope_group)
            if scope_row is None:
                raise NotFound(f'scope group "{scope_group}" not found')
        return account_row, group_row, scope_row

    def _grant_records(self, conn: Connection, where: Any) -> list[GrantRecord]:
        subject_account = accounts.alias("subject_account")
        subject_group = groups.alias("subject_group")
        scope = groups.alias("scope_group")
        query = (
            select(
                *_GRANT_COLUMNS,
                subject_account.c.name.label("account_name"),
                subject_group.c.name.label("group_name"),
                scope.c.name.label("scope_name"),
            )
            .select_from(grants)
            .outerjoin(subject_account, subject_account.c.id == grants.c.subject_account_id)
            .outerjoin(subject_group, subject_group.c.id == grants.c.subject_group_id)
            .outerjoin(scope, scope.c.id == grants.c.scope_group_id)
            .where(where)
            .order_by(grants.c.id)
        )
        return [
            GrantRecord(
                id=row.id,
                permission=Permission(row.permission),
                account_name=row.account_name,
                group_name=row.group_name,
                scope_group=row.scope_name,
                created=row.created_at,
            )
            for row in conn.execute(query)
        ]

    # ---------------------------------------------------------- the port

    def grant(
        self,
        permission: Permission,
        *,
        account: str | None = None,
        group: str | None = None,
        scope_group: str | None = None,
        audit: AuditEvent | None = None,
    ) -> GrantRecord:
        """Give ``permission`` to ``account`` or ``group`` (exactly one), scoped to
        ``scope_group`` where the permission takes one; the audit event is
        written in the same transaction.

        InvalidValue for a bad combination or an internal service account (its
        grants come through a group it is in); NotFound for unknown names;
        AlreadyExists for a grant that is already there.
        """
        permission = check_permission(permission)
        _check_shape(permission, account, group, scope_group)
        if audit is not None:
            encode_details(audit.details)

        def work(conn: Connection) -> GrantRecord:
            account_row, group_row, scope_row = self._grant_parties(
                conn, account, group, scope_group
            )
            if account_row is not None and account_row.kind == AccountKind.INTERNAL_SERVICE_ACCOUNT:
                raise InvalidValue(
                    f'"{account_row.name}" is an internal service account: it cannot receive a '
                    "grant directly; grant it to a group the account is in"
                )
            key = grant_key(
                permission,
                None if account_row is None else account_row.id,
                None if group_row is None else group_row.id,
                None if scope_row is None else scope_row.id,
            )
            described = _describe(
                permission,
                None if account_row is None else account_row.name,
                None if group_row is None else group_row.name,
                None if scope_row is None else scope_row.name,
            )
            taken = conn.execute(select(exists().where(grants.c.grant_key == key))).scalar()
            if taken:
                raise AlreadyExists(f"grant {described} already exists")
            grant_id = conn.execute(
                insert(grants).values(
                    permission=permission.value,
                    subject_account_id=None if account_row is None else account_row.id,
                    subject_group_id=None if group_row is None else group_row.id,
                    scope_group_id=None if scope_row is None else scope_row.id,
                    grant_key=key,
                    created_at=self._now(),
                )
            ).inserted_primary_key[0]  # type: ignore[index]
            if audit is not None:
                self._insert_audit(conn, audit)
            return self._grant_records(conn, grants.c.id == grant_id)[0]

        return run(self.engine, work, write=True)

    def revoke(
        self,
        permission: Permission,
        *,
        account: str | None = None,
        group: str | None = None,
        scope_group: str | None = None,
        audit: AuditEvent | None = None,
    ) -> None:
        """Take back exactly the grant ``grant`` made with the same arguments;
        NotFound names it when there is no such grant (or no such name)."""
        permission = check_permission(permission)
        if (account is None) == (group is None):
            raise InvalidValue(_ONE_SUBJECT)
        if audit is not None:
            encode_details(audit.details)

        def work(conn: Connection) -> None:
            account_row, group_row, scope_row = self._grant_parties(
                conn, account, group, scope_group
            )
            key = grant_key(
                permission,
                None if account_row is None else account_row.id,
                None if group_row is None else group_row.id,
                None if scope_row is None else scope_row.id,
            )
            result = conn.execute(delete(grants).where(grants.c.grant_key == key))
            if result.rowcount == 0:
                described = _describe(
                    permission,
                    None if account_row is None else account_row.name,
                    None if group_row is None else group_row.name,
                    None if scope_row is None else scope_row.name,
                )
                raise NotFound(f"there is no grant {described}")
            if audit is not None:
                self._insert_audit(conn, audit)

        run(self.engine, work, write=True)

    def list_grants(
        self, *, account: str | None = None, group: str | None = None
    ) -> list[GrantRecord]:
        """Grants held directly by ``account`` or by ``group`` (every grant when
        neither is given), oldest first. What an account inherits from its
        groups is ``effective_permissions``. NotFound for an unknown name."""
        if account is not None and group is not None:
            raise InvalidValue("list the grants of one account or one group, not both")

        def work(conn: Connection) -> list[GrantRecord]:
            account_row, group_row, _ = self._grant_parties(conn, account, group, None)
            if account_row is not None:
                where = grants.c.subject_account_id == account_row.id
            elif group_row is not None:
                where = grants.c.subject_group_id == group_row.id
            else:
                where = grants.c.id.is_not(None)
            return self._grant_records(conn, where)

        return run(self.engine, work, write=False)

    def effective_permissions(self, account_name: str) -> EffectivePermissions:
        """What ``account_name`` holds directly or through its groups, in one query.

        An unknown account holds nothing (rather than NotFound): the caller is
        deciding for a bound session, and an account deleted since the bind
        must simply lose every permission."""

        def work(conn: Connection) -> EffectivePermissions:
            rows = conn.execute(_GRANTS_OF, {"name_lower": name_key(account_name)}).all()
            full = reset_all = False
            search_scopes: set[str] = set()
            reset_scopes: set[str] = set()
            management: set[Permission] = set()
            for permission, scope_name in rows:
                if permission in MANAGEMENT_PERMISSIONS:
                    management.add(Permission(permission))
                elif permission == Permission.SEARCH_FULL_DIRECTORY:
                    full = True
                elif permission == Permission.SEARCH and scope_name is not None:
                    search_scopes.add(scope_name)
                elif permission == Permission.RESET_PASSWORD:
                    if scope_name is None:
                        reset_all = True
                    else:
                        reset_scopes.add(scope_name)
            return EffectivePermissions(
                full_directory=full,
                search_scopes=frozenset(search_scopes),
                reset_password_everyone=reset_all,
                reset_password_scopes=frozenset(reset_scopes),
                management=frozenset(management),
            )

        return run(self.engine, work, write=False)

    def is_member(self, group_name: str, account_name: str) -> bool:
        """True when ``account_name`` is a direct member of ``group_name`` (either
        name case-insensitive); False when either does not exist."""

        def work(conn: Connection) -> bool:
            found = conn.execute(
                select(
                    exists()
                    .where(memberships.c.group_id == groups.c.id)
                    .where(memberships.c.account_id == accounts.c.id)
                    .where(groups.c.name_lower == name_key(group_name))
                    .where(accounts.c.name_lower == name_key(account_name))
                )
            ).scalar()
            return bool(found)

        return run(self.engine, work, write=False)


__all__ = ["Permissions", "check_permission", "grant_key"]
