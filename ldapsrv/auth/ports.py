"""What tokens and service accounts need from the store, as Protocols.

Every method blocks (SQL): run them in the thread pool. ``SqlDirectory``
(ldapsrv/store) implements both. Errors are the domain errors of
``ldapsrv.errors`` (NotFound, AlreadyExists, InvalidValue, StoreUnavailable).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from ldapsrv.directory.records import (
    AccountKind,
    AuditEvent,
    EffectivePermissions,
    GrantRecord,
    Permission,
    ServiceAccountRecord,
    TokenIntent,
    TokenRecord,
)


@dataclass(frozen=True, slots=True)
class NewToken:
    """A token to store. The value itself is never stored in clear: only its bcrypt
    hash and, when viewable copies are on, an encrypted copy."""

    identifier: str
    account_name: str
    intent: TokenIntent
    lookup_id: str
    secret_hash: str
    encrypted_value: str | None
    expiring: bool
    expires_at: datetime | None
    lifetime_seconds: int | None
    description: str | None = None


@dataclass(frozen=True, slots=True)
class NewSecret:
    """What a rotation writes: a whole new token value for the same row."""

    lookup_id: str
    secret_hash: str
    encrypted_value: str | None
    expires_at: datetime | None
    rotated_at: datetime
    hook_pending: bool


class TokenStore(Protocol):
    def create_token(self, spec: NewToken, audit: AuditEvent | None = None) -> TokenRecord:
        """AlreadyExists when the identifier is taken (case-insensitive); NotFound when
        the account does not exist."""
        ...

    def get_token(self, identifier: str) -> TokenRecord: ...

    def find_token(self, lookup_id: str) -> TokenRecord | None:
        """The token with this public lookup id (one indexed query per bind)."""
        ...

    def list_tokens(self, account_name: str | None = None) -> list[TokenRecord]: ...

    def delete_token(self, identifier: str, audit: AuditEvent | None = None) -> None: ...

    def replace_secret(
        self,
        identifier: str,
        expected_generation: int,
        secret: NewSecret,
        audit: AuditEvent | None = None,
    ) -> TokenRecord | None:
        """Compare-and-swap on ``generation``: writes the new secret and generation+1
        and returns the new row, or returns None when another server rotated first."""
        ...

    def tokens_due(self, now: datetime, limit: int = 100) -> list[TokenRecord]:
        """Expiring tokens whose expiry is at or before ``now`` (to rotate)."""
        ...

    def next_expiry(self) -> datetime | None:
        """The earliest expiry among expiring tokens (to schedule the next rotation)."""
        ...

    def tokens_with_pending_hook(self) -> list[TokenRecord]: ...

    def clear_hook_pending(self, identifier: str, generation: int) -> None: ...

    def record_token_use(self, lookup_id: str, at: datetime, address: str | None) -> None:
        """Last-used time and address; cheap, and skipped when already recorded within
        the last minute so a busy host does not write on every bind."""
        ...


class ServiceAccountStore(Protocol):
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
        """All or nothing: the account, its group (named after it, with it as member)
        and its first token are created in one transaction. AlreadyExists names what
        is taken (account name among all accounts, case-insensitive, or group name)."""
        ...

    def get_service_account(self, name: str) -> ServiceAccountRecord: ...

    def list_service_accounts(
        self, *, include_internal: bool = True
    ) -> list[ServiceAccountRecord]: ...

    def delete_service_account(
        self, name: str, *, allow_internal: bool = False, audit: AuditEvent | None = None
    ) -> None:
        """Deletes the account, its tokens and its memberships. InvalidValue for an
        internal account unless ``allow_internal`` (the server's own housekeeping)."""
        ...

    def record_audit(self, event: AuditEvent) -> None: ...


class PermissionStore(Protocol):
    """Grants of permissions to accounts or groups (issue 4). Blocking."""

    def grant(
        self,
        permission: Permission,
        *,
        account: str | None = None,
        group: str | None = None,
        scope_group: str | None = None,
        audit: AuditEvent | None = None,
    ) -> GrantRecord:
        """Exactly one of account/group. ``search`` needs ``scope_group``;
        ``search_full_directory`` takes none; ``reset_password`` takes one or none
        (none: every person). InvalidValue for an internal service account (grant it
        through a group) or a bad combination; NotFound for unknown names;
        AlreadyExists for a duplicate grant."""
        ...

    def revoke(
        self,
        permission: Permission,
        *,
        account: str | None = None,
        group: str | None = None,
        scope_group: str | None = None,
        audit: AuditEvent | None = None,
    ) -> None: ...

    def list_grants(
        self, *, account: str | None = None, group: str | None = None
    ) -> list[GrantRecord]: ...

    def effective_permissions(self, account_name: str) -> EffectivePermissions:
        """Direct grants plus those of the account's groups."""
        ...

    def is_member(self, group_name: str, account_name: str) -> bool: ...
