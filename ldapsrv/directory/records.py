"""What the store hands to the directory layer: plain rows, no ORM objects."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


@dataclass(frozen=True, slots=True)
class UserRecord:
    """A person. ``group_names`` are the groups the user is a direct member of."""

    id: int
    uuid: str
    name: str
    uid_number: int
    gid_number: int
    display_name: str | None
    given_name: str | None
    surname: str | None
    mail: str | None
    home_directory: str
    login_shell: str
    gecos: str | None
    created: datetime
    modified: datetime
    group_names: tuple[str, ...] = ()
    disabled: bool = False


@dataclass(frozen=True, slots=True)
class GroupRecord:
    """A group. ``member_names`` are its direct members' account names."""

    id: int
    uuid: str
    name: str
    gid_number: int
    description: str | None
    created: datetime
    modified: datetime
    member_names: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Credentials:
    """What a bind needs to know about an account: never leaves the server."""

    account_id: int
    name: str
    password_hash: str | None
    disabled: bool
    kind: str = "user"  # an AccountKind value


class AccountKind(StrEnum):
    """People log in; service accounts are machines; internal ones belong to the server."""

    USER = "user"
    SERVICE_ACCOUNT = "service_account"
    INTERNAL_SERVICE_ACCOUNT = "internal_service_account"


class TokenIntent(StrEnum):
    APP_PASSWORD = "app_password"  # binds over LDAP
    API = "api"  # authenticates management API calls, never an LDAP bind


@dataclass(frozen=True, slots=True)
class ServiceAccountRecord:
    """A machine identity in ou=users. Never a posixAccount, never has a password."""

    id: int
    uuid: str
    name: str
    kind: AccountKind
    description: str | None
    created: datetime
    modified: datetime
    group_names: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """A token as stored: the bcrypt hash checks binds, the encrypted copy (when
    viewable copies are on) lets an admin read the value again. ``generation``
    grows with every rotation so that exactly one server wins a rotation."""

    id: int
    identifier: str
    account_name: str
    account_kind: AccountKind
    intent: TokenIntent
    description: str | None
    lookup_id: str
    secret_hash: str
    encrypted_value: str | None
    expiring: bool
    expires_at: datetime | None
    lifetime_seconds: int | None
    created: datetime
    last_used_at: datetime | None
    last_used_address: str | None
    rotated_at: datetime | None
    generation: int
    hook_pending: bool


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One line of the append-only audit trail. Never holds a secret."""

    actor: str  # e.g. "control-socket uid=0", "ldapsrv (rotation)"
    channel: str  # "control-socket", "server", "ldap"
    action: str  # e.g. "token.rotate", "service_account.create"
    target: str  # what it acted on, e.g. "token nas-backup"
    details: tuple[tuple[str, str], ...] = ()


class Permission(StrEnum):
    SEARCH_FULL_DIRECTORY = "search_full_directory"  # see every entry
    SEARCH = "search"  # scoped to a group: see that group and its members
    RESET_PASSWORD = "reset_password"  # set people's passwords (optionally scoped)
    # Management permissions: what a caller of the management API may do (never scoped).
    MANAGE_ACCOUNTS = "manage_accounts"  # people and service accounts
    MANAGE_GROUPS = "manage_groups"  # groups and their members
    MANAGE_TOKENS = "manage_tokens"  # anyone's tokens (but the server's own)
    MANAGE_PERMISSIONS = "manage_permissions"  # grant and revoke permissions
    READ_AUDIT = "read_audit"  # the audit trail and the server's status
    ROTATE_OWN_TOKENS = "rotate_own_tokens"  # rotate the tokens of the caller's own account


MANAGEMENT_PERMISSIONS = frozenset(
    {
        Permission.MANAGE_ACCOUNTS,
        Permission.MANAGE_GROUPS,
        Permission.MANAGE_TOKENS,
        Permission.MANAGE_PERMISSIONS,
        Permission.READ_AUDIT,
        Permission.ROTATE_OWN_TOKENS,
    }
)
"""Permissions that decide management API calls; they never take a scope group."""


@dataclass(frozen=True, slots=True)
class GrantRecord:
    """A permission held by an account or by a group (its members inherit it)."""

    id: int
    permission: Permission
    account_name: str | None  # exactly one of account_name / group_name is set
    group_name: str | None
    scope_group: str | None  # the group a scoped grant applies to
    created: datetime


@dataclass(frozen=True, slots=True)
class EffectivePermissions:
    """What an account may do, directly or through its groups (one query)."""

    full_directory: bool = False
    search_scopes: frozenset[str] = frozenset()  # lower-case group names
    reset_password_everyone: bool = False
    reset_password_scopes: frozenset[str] = frozenset()
    management: frozenset[Permission] = frozenset()  # of MANAGEMENT_PERMISSIONS
