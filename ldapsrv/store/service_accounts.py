"""Service accounts: machine identities under ``ou=users`` that bind with tokens.

They share the ``accounts`` table (and so the name namespace, the bind DN form
and group memberships) with people, but use none of a person's columns: no
password hash, no uid/gid numbers, no home or shell. That is what keeps them
out of every posixAccount search and every password path; the people-side
methods of ``SqlDirectory`` also filter on ``kind = 'user'``, so a person's
command never reaches a service account by name.

Internal service accounts belong to the server (e.g. the account its health
check binds with): admins cannot delete them, only the server's own
housekeeping can (``allow_internal``).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.engine import Connection

from ldapsrv.auth.ports import NewToken
from ldapsrv.directory.names import validate_account_name, validate_group_name
from ldapsrv.directory.predicates import TRUE, Predicate
from ldapsrv.directory.records import AccountKind, AuditEvent, ServiceAccountRecord, TokenRecord
from ldapsrv.errors import AlreadyExists, InvalidValue, NotFound
from ldapsrv.store.audit import encode_details
from ldapsrv.store.base import account_group_names, check_text, name_key
from ldapsrv.store.engine import run
from ldapsrv.store.models import accounts, memberships
from ldapsrv.store.sqlfilter import compile_condition
from ldapsrv.store.tokens import Tokens, check_new_token

MACHINE_KINDS = (AccountKind.SERVICE_ACCOUNT.value, AccountKind.INTERNAL_SERVICE_ACCOUNT.value)

_SERVICE_COLUMNS = (
    accounts.c.id,
    accounts.c.uuid,
    accounts.c.name,
    accounts.c.kind,
    accounts.c.description,
    accounts.c.created_at,
    accounts.c.modified_at,
)


def _service_records(
    conn: Connection, rows: Sequence[Any], visible_to: str | None = None
) -> list[ServiceAccountRecord]:
    names = account_group_names(conn, rows, visible_to)
    return [
        ServiceAccountRecord(
            id=row.id,
            uuid=row.uuid,
            name=row.name,
            kind=AccountKind(row.kind),
            description=row.description,
            created=row.created_at,
            modified=row.modified_at,
            group_names=names.get(row.id, ()),
        )
        for row in rows
    ]


class ServiceAccounts(Tokens):
    """``ServiceAccountStore`` (ldapsrv.auth.ports) and the LDAP search of service
    accounts, on the accounts table."""

    def search_service_accounts(
        self,
        predicate: Predicate,
        *,
        after_id: int = 0,
        limit: int,
        name: str | None = None,
        visible_to: str | None = None,
    ) -> list[ServiceAccountRecord]:
        """Service accounts (both kinds) matching ``predicate`` with ``id > after_id``,
        in id order, at most ``limit``; like ``search_users``, with ``group_names``
        from one more query per page (trimmed to what ``visible_to`` may see)."""
        condition = compile_condition(predicate, "service_accounts")
        if condition is False or limit <= 0:
            return []

        def work(conn: Connection) -> list[ServiceAccountRecord]:
            query = select(*_SERVICE_COLUMNS).where(
                accounts.c.kind.in_(MACHINE_KINDS), accounts.c.id > after_id
            )
            if name is not None:
                query = query.where(accounts.c.name_lower == name_key(name))
            if condition is not True:
                query = query.where(condition)
            rows = conn.execute(query.order_by(accounts.c.id).limit(limit)).all()
            return _service_records(conn, rows, visible_to)

        return run(self.engine, work, write=False)

    def get_service_account(self, name: str) -> ServiceAccountRecord:
        """The service account (either kind) called ``name``, or NotFound."""
        found = self.search_service_accounts(TRUE, name=name, limit=1)
        if not found:
            raise NotFound(f'service account "{name}" not found')
        return found[0]

    def list_service_accounts(self, *, include_internal: bool = True) -> list[ServiceAccountRecord]:
        """Every service account, ordered by name case-insensitively."""
        kinds = MACHINE_KINDS if include_internal else (AccountKind.SERVICE_ACCOUNT.value,)

        def work(conn: Connection) -> list[ServiceAccountRecord]:
            rows = conn.execute(
                select(*_SERVICE_COLUMNS)
                .where(accounts.c.kind.in_(kinds))
                .order_by(accounts.c.name_lower)
            ).all()
            return _service_records(conn, rows)

        return run(self.engine, work, write=False)

    def create_service_account(
        self,
        name: str,
        *,
        kind: AccountKind = AccountKind.SERVICE_ACCOUNT,
        description: str | None = None,
        create_group: bool = False,
        token: NewToken | None = None,
        audit: AuditEvent | None = None,
    ) -> tuple[ServiceAccountRecord, TokenRecord | None]:
        """All or nothing: the account, its group (named after it, with it as
        member, gid allocated like any group's) and its first token, with the
        audit event, in one transaction.

        AlreadyExists names what is taken: the account name among accounts of
        every kind (case-insensitive), the group name, or the token identifier.
        """
        name = validate_account_name(name)
        if kind not in MACHINE_KINDS:
            raise InvalidValue(f"a service account's kind must be one of {MACHINE_KINDS}")
        if create_group:
            validate_group_name(name)
        checked_description = check_text("description", description)
        token_values = None
        if token is not None:
            if name_key(token.account_name) != name.lower():
                raise InvalidValue(
                    f'the first token of "{name}" must belong to it, not to "{token.account_name}"'
                )
            token_values = check_new_token(token)
        if audit is not None:
            encode_details(audit.details)

        def work(conn: Connection) -> tuple[ServiceAccountRecord, TokenRecord | None]:
            now = self._now()
            self._refuse_existing_account(conn, name)
            group_id = None
            if create_group:
                if self._group_row(conn, name) is not None:
                    raise AlreadyExists(f'group "{name}" already exists')
                group_id = self._insert_group(conn, name, self._allocate(conn, "gid"), None, now)
            account_id = conn.execute(
                insert(accounts).values(
                    uuid=str(uuid.uuid4()),
                    kind=AccountKind(kind).value,
                    name=name,
                    name_lower=name.lower(),
                    disabled=False,
                    description=checked_description,
                    created_at=now,
                    modified_at=now,
                )
            ).inserted_primary_key[0]  # type: ignore[index]
            if group_id is not None:
                conn.execute(insert(memberships).values(group_id=group_id, account_id=account_id))
            first_token = None
            if token_values is not None:
                token_id = self._insert_token(conn, token_values, account_id)
                first_token = self._load_token(conn, token_id)
            if audit is not None:
                self._insert_audit(conn, audit)
            rows = conn.execute(select(*_SERVICE_COLUMNS).where(accounts.c.id == account_id)).all()
            return _service_records(conn, rows)[0], first_token

        return run(self.engine, work, write=True)

    def delete_service_account(
        self, name: str, *, allow_internal: bool = False, audit: AuditEvent | None = None
    ) -> None:
        """Delete the account; its tokens and memberships go with it (ON DELETE
        CASCADE), and its groups count as modified. InvalidValue for an internal
        account unless ``allow_internal`` (the server's own housekeeping)."""
        if audit is not None:
            encode_details(audit.details)

        def work(conn: Connection) -> None:
            row = conn.execute(
                select(accounts.c.id, accounts.c.name, accounts.c.kind).where(
                    accounts.c.name_lower == name_key(name), accounts.c.kind.in_(MACHINE_KINDS)
                )
            ).first()
            if row is None:
                raise NotFound(f'service account "{name}" not found')
            if row.kind == AccountKind.INTERNAL_SERVICE_ACCOUNT and not allow_internal:
                raise InvalidValue(
                    f'"{row.name}" is an internal service account managed by the server'
                )
            group_ids = (
                conn.execute(
                    select(memberships.c.group_id).where(memberships.c.account_id == row.id)
                )
                .scalars()
                .all()
            )
            self._touch_groups(conn, group_ids, self._now())
            conn.execute(delete(accounts).where(accounts.c.id == row.id))
            if audit is not None:
                self._insert_audit(conn, audit)

        run(self.engine, work, write=True)
