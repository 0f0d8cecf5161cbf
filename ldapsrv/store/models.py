"""The SQL schema: accounts, groups, memberships, uid/gid allocators, tokens, audit, grants.

The models are the single description of the schema; the Alembic migrations in
``migrations/versions`` must produce exactly this (a test compares them). The
store reads and writes through Core ``select()``/``insert()`` on these tables
rather than through ORM sessions: the directory hands out plain records, and a
500-row page costs a fraction of what identity-mapped objects would.

Portability choices, so SQLite, PostgreSQL and MariaDB behave the same:

* Case-insensitive uniqueness uses a ``name_lower`` column with a UNIQUE index,
  filled by the store from the validated (ASCII-only) name. Functional indexes
  and case-insensitive collations differ on every backend; a plain column does not.
* On MariaDB every text column uses ``utf8mb4_nopad_bin``: comparisons are
  binary and trailing spaces count, as on the other two. (MariaDB's default
  collation would make ``'Alice' = 'alice'`` and ``'a' = 'a '`` true, which would
  break case-exact matching.) Case-insensitive matching is done explicitly with
  ``lower()``.
* Timestamps are stored as UTC. SQLite and MariaDB have no zone-aware type and
  return naive values: ``UtcDateTime`` converts on the way in and out, so code
  only ever sees aware UTC datetimes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    false,
    text,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeEngine

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_N_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
"""Deterministic constraint names, so migrations can drop or alter them by name
on every backend (SQLite batch mode needs names to find constraints)."""

ACCOUNT_KINDS = ("user", "service_account", "internal_service_account")
"""Kinds the ``accounts.kind`` CHECK allows (``AccountKind`` values). People
are ``user``; the other two are machine identities without a password or posix
attributes (migration 0002 widened the CHECK to them)."""

TOKEN_INTENTS = ("app_password", "api")
"""Intents the ``tokens.intent`` CHECK allows (``TokenIntent`` values)."""

PERMISSIONS = (
    "search_full_directory",
    "search",
    "reset_password",
    "manage_accounts",
    "manage_groups",
    "manage_tokens",
    "manage_permissions",
    "read_audit",
    "rotate_own_tokens",
)
"""Permissions the ``grants.permission`` CHECK allows (``Permission`` values)."""

GRANT_ONE_SUBJECT = (
    "(subject_account_id IS NOT NULL AND subject_group_id IS NULL)"
    " OR (subject_account_id IS NULL AND subject_group_id IS NOT NULL)"
)
GRANT_SCOPE = (
    "(permission <> 'search' OR scope_group_id IS NOT NULL)"
    " AND (permission <> 'search_full_directory' OR scope_group_id IS NULL)"
)
"""``search`` is always scoped to a group; ``search_full_directory`` never is."""


def _in_check(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN (" + ", ".join(f"'{v}'" for v in values) + ")"


MYSQL_TABLE_OPTIONS: dict[str, Any] = {
    "mysql_engine": "InnoDB",
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_nopad_bin",
}
"""InnoDB for transactions and row locks; binary no-pad collation, see the module doc."""


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp that is always an aware UTC datetime in Python.

    Stored with microseconds everywhere (MariaDB's DATETIME defaults to whole
    seconds, hence ``fsp=6``). Binding a naive datetime is a programming error:
    its zone is unknown, so it is refused rather than guessed.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r} cannot be stored: its zone is unknown")
        value = value.astimezone(UTC)
        if dialect.name == "postgresql":
            return value
        return value.replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def utcnow() -> datetime:
    """The current instant as an aware UTC datetime (what every timestamp column holds)."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Account(Base):
    """A person or a service account: one entry under ``ou=users``.

    Service accounts use only the identity columns (uuid, kind, name,
    description, timestamps): no password hash, no uid/gid numbers, no posix
    attributes, which is what keeps them from ever becoming a login.
    """

    __tablename__ = "accounts"
    __table_args__ = (
        CheckConstraint(_in_check("kind", ACCOUNT_KINDS), name="kind"),
        {"sqlite_autoincrement": True, **MYSQL_TABLE_OPTIONS},
    )

    # sqlite_autoincrement: ids are never reused after deletion on any backend,
    # so a paged search resuming "after id N" never meets a recycled id.
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True)
    kind: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(150))
    name_lower: Mapped[str] = mapped_column(String(150), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(255))
    disabled: Mapped[bool] = mapped_column(default=False)
    uid_number: Mapped[int | None] = mapped_column(Integer, unique=True)
    gid_number: Mapped[int | None] = mapped_column(Integer, index=True)
    display_name: Mapped[str | None] = mapped_column(String(255))
    given_name: Mapped[str | None] = mapped_column(String(255))
    surname: Mapped[str | None] = mapped_column(String(255))
    mail: Mapped[str | None] = mapped_column(String(255))
    home_directory: Mapped[str | None] = mapped_column(String(255))
    login_shell: Mapped[str | None] = mapped_column(String(255))
    gecos: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    modified_at: Mapped[datetime] = mapped_column(UtcDateTime())
    description: Mapped[str | None] = mapped_column(String(255))


class Group(Base):
    """A POSIX group: one entry under ``ou=groups``."""

    __tablename__ = "groups"
    __table_args__ = ({"sqlite_autoincrement": True, **MYSQL_TABLE_OPTIONS},)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True)
    name: Mapped[str] = mapped_column(String(150))
    name_lower: Mapped[str] = mapped_column(String(150), unique=True)
    gid_number: Mapped[int] = mapped_column(Integer, unique=True)
    description: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    modified_at: Mapped[datetime] = mapped_column(UtcDateTime())


class Membership(Base):
    """A direct membership of an account in a group.

    The primary key (group_id, account_id) serves "members of a group"; the
    index on account_id serves "groups of an account" (memberOf).
    """

    __tablename__ = "memberships"
    __table_args__ = (
        Index(None, "account_id"),
        MYSQL_TABLE_OPTIONS,
    )

    group_id: Mapped[int] = mapped_column(
        ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True
    )
    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )


class IdAllocator(Base):
    """The next uid or gid number to hand out (rows ``uid`` and ``gid``).

    A monotonic counter rather than "max + 1": a number is never handed out
    twice, even after the account holding it is deleted, so files owned by a
    deleted user never become someone else's. The row is locked for the length
    of the allocating transaction, which makes allocation safe across servers.
    """

    __tablename__ = "id_allocators"
    __table_args__ = (MYSQL_TABLE_OPTIONS,)

    name: Mapped[str] = mapped_column(String(16), primary_key=True)
    next_value: Mapped[int] = mapped_column(Integer)


class Token(Base):
    """A token: the password a service account (or a person's app) binds with.

    The value is never stored: ``secret_hash`` (bcrypt) checks binds and
    ``encrypted_value`` lets an admin view it again. ``lookup_id`` is the public
    part embedded in the value, so a bind finds its one row by a unique index
    and costs one bcrypt check. ``generation`` grows by one per rotation: a
    rotation is ``UPDATE ... WHERE generation = <what I read>``, so when several
    servers share the database exactly one of them rotates. ``hook_pending``
    survives a crash between rotating and running the rotation hook.
    The (expiring, expires_at) index serves "which tokens are due".
    """

    __tablename__ = "tokens"
    __table_args__ = (
        CheckConstraint(_in_check("intent", TOKEN_INTENTS), name="intent"),
        Index(None, "account_id"),
        Index("ix_tokens_expiring_expires_at", "expiring", "expires_at"),
        {"sqlite_autoincrement": True, **MYSQL_TABLE_OPTIONS},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    identifier: Mapped[str] = mapped_column(String(100))
    identifier_lower: Mapped[str] = mapped_column(String(100), unique=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    intent: Mapped[str] = mapped_column(String(16))
    description: Mapped[str | None] = mapped_column(String(255))
    lookup_id: Mapped[str] = mapped_column(String(32), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(255))
    encrypted_value: Mapped[str | None] = mapped_column(Text)
    expiring: Mapped[bool] = mapped_column()
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    lifetime_seconds: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    last_used_address: Mapped[str | None] = mapped_column(String(64))
    rotated_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    generation: Mapped[int] = mapped_column(Integer, default=1, server_default=text("1"))
    hook_pending: Mapped[bool] = mapped_column(default=False, server_default=false())


class AuditRecord(Base):
    """One line of the audit trail: who did what to what, when, over which channel.

    Append-only by construction: the store has no code path that updates or
    deletes these rows (deleting an account leaves its history; ``target``
    holds names, not foreign keys). ``details`` is a JSON object as text, so
    any backend stores it the same way and an operator can read it in SQL.
    """

    __tablename__ = "audit_events"
    __table_args__ = (
        Index(None, "at"),
        {"sqlite_autoincrement": True, **MYSQL_TABLE_OPTIONS},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime())
    actor: Mapped[str] = mapped_column(String(255))
    channel: Mapped[str] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(255))
    details: Mapped[str] = mapped_column(Text)


class Grant(Base):
    """A permission held by an account or by a group (whose members inherit it).

    Exactly one subject column is set (CHECK ``one_subject``). ``grant_key``
    is the permission and the three ids spelled out (``search:a:g12:s7``), with
    a UNIQUE index: a UNIQUE over the nullable columns themselves would let
    duplicates through, because every backend treats NULLs as distinct there
    (and PostgreSQL's NULLS NOT DISTINCT is not portable). Ids are never
    reused (autoincrement tables), and every id in the key cascades its row
    away with the account or group, so the key stays true for the row's life.

    The three indexes serve the visibility subqueries of ``sqlfilter``:
    grants held by the viewer, by the viewer's groups, and "is this group a
    scope of one of them".
    """

    __tablename__ = "grants"
    __table_args__ = (
        CheckConstraint(_in_check("permission", PERMISSIONS), name="permission"),
        CheckConstraint(GRANT_ONE_SUBJECT, name="one_subject"),
        CheckConstraint(GRANT_SCOPE, name="scope"),
        Index(None, "subject_account_id"),
        Index(None, "subject_group_id"),
        Index(None, "scope_group_id"),
        {"sqlite_autoincrement": True, **MYSQL_TABLE_OPTIONS},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    permission: Mapped[str] = mapped_column(String(32))
    subject_account_id: Mapped[int | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE")
    )
    subject_group_id: Mapped[int | None] = mapped_column(
        ForeignKey("groups.id", ondelete="CASCADE")
    )
    scope_group_id: Mapped[int | None] = mapped_column(ForeignKey("groups.id", ondelete="CASCADE"))
    grant_key: Mapped[str] = mapped_column(String(100), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


# Core handles on the tables, typed as Table (the declarative attribute is a FromClause).
accounts = cast(Table, Account.__table__)
groups = cast(Table, Group.__table__)
memberships = cast(Table, Membership.__table__)
id_allocators = cast(Table, IdAllocator.__table__)
tokens = cast(Table, Token.__table__)
audit_events = cast(Table, AuditRecord.__table__)
grants = cast(Table, Grant.__table__)
