"""Service accounts, tokens and the audit trail.

Revision ID: 0002
Revises: 0001
Create Date: 2025-02-01

* ``accounts.kind`` may now also be ``service_account`` or
  ``internal_service_account``; accounts gain a ``description``.
* ``tokens``: the secrets service accounts (and people's apps) bind with.
* ``audit_events``: an append-only trail of who changed what.

Existing rows are kept as they are: every existing account is a ``user``, and
the new column is nullable. On SQLite the CHECK can only change by rebuilding
the table (batch mode: copy, drop, rename); ``schema_version.upgrade`` turns
foreign keys off around it so the drop does not cascade to memberships.
As in 0001, everything is written out rather than imported from the models.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_MYSQL: dict[str, Any] = {
    "mysql_engine": "InnoDB",
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_nopad_bin",
}

_OLD_KINDS = "kind IN ('user')"
_NEW_KINDS = "kind IN ('user', 'service_account', 'internal_service_account')"


def _timestamp() -> sa.types.TypeEngine[Any]:
    return sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def _sqlite_sequence() -> int | None:
    row = (
        op.get_bind()
        .execute(sa.text("SELECT seq FROM sqlite_sequence WHERE name = 'accounts'"))
        .first()
    )
    return None if row is None else int(row[0])


def _restore_sqlite_sequence(seq: int | None) -> None:
    # The rebuilt table's counter restarts at its highest copied id; put the
    # old one back, or the ids of the most recently deleted accounts would be
    # handed out again (a paged search resuming after id N relies on them not).
    if seq is not None:
        op.get_bind().execute(
            sa.text("UPDATE sqlite_sequence SET seq = MAX(seq, :seq) WHERE name = 'accounts'"),
            {"seq": seq},
        )


def _replace_kind_check(condition: str) -> None:
    if op.get_bind().dialect.name == "sqlite":
        seq = _sqlite_sequence()
        # The rebuilt table must keep AUTOINCREMENT (ids never reused), which
        # reflection does not carry over by itself.
        with op.batch_alter_table(
            "accounts", recreate="always", table_kwargs={"sqlite_autoincrement": True}
        ) as batch:
            batch.drop_constraint(op.f("ck_accounts_kind"), type_="check")
            batch.create_check_constraint(op.f("ck_accounts_kind"), condition)
        _restore_sqlite_sequence(seq)
        return
    op.drop_constraint(op.f("ck_accounts_kind"), "accounts", type_="check")
    op.create_check_constraint(op.f("ck_accounts_kind"), "accounts", condition)


def upgrade() -> None:
    op.add_column("accounts", sa.Column("description", sa.String(255), nullable=True))
    _replace_kind_check(_NEW_KINDS)

    op.create_table(
        "tokens",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("identifier", sa.String(100), nullable=False),
        sa.Column("identifier_lower", sa.String(100), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("intent", sa.String(16), nullable=False),
        sa.Column("description", sa.String(255), nullable=True),
        sa.Column("lookup_id", sa.String(32), nullable=False),
        sa.Column("secret_hash", sa.String(255), nullable=False),
        sa.Column("encrypted_value", sa.Text(), nullable=True),
        sa.Column("expiring", sa.Boolean(), nullable=False),
        sa.Column("expires_at", _timestamp(), nullable=True),
        sa.Column("lifetime_seconds", sa.BigInteger(), nullable=True),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.Column("last_used_at", _timestamp(), nullable=True),
        sa.Column("last_used_address", sa.String(64), nullable=True),
        sa.Column("rotated_at", _timestamp(), nullable=True),
        sa.Column("generation", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("hook_pending", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.CheckConstraint("intent IN ('app_password', 'api')", name=op.f("ck_tokens_intent")),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_tokens_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tokens")),
        sa.UniqueConstraint("identifier_lower", name=op.f("uq_tokens_identifier_lower")),
        sa.UniqueConstraint("lookup_id", name=op.f("uq_tokens_lookup_id")),
        sqlite_autoincrement=True,
        **_MYSQL,
    )
    op.create_index(op.f("ix_tokens_account_id"), "tokens", ["account_id"])
    op.create_index(op.f("ix_tokens_expiring_expires_at"), "tokens", ["expiring", "expires_at"])

    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", _timestamp(), nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(255), nullable=False),
        sa.Column("details", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
        sqlite_autoincrement=True,
        **_MYSQL,
    )
    op.create_index(op.f("ix_audit_events_at"), "audit_events", ["at"])


def downgrade() -> None:
    # Machine accounts cannot survive the narrower CHECK: they go, with their
    # memberships (deleted explicitly: SQLite runs this with foreign keys off).
    # Their tokens go with the table.
    op.drop_table("audit_events")
    op.drop_table("tokens")
    machine = "SELECT id FROM accounts WHERE kind <> 'user'"
    op.execute(f"DELETE FROM memberships WHERE account_id IN ({machine})")
    op.execute("DELETE FROM accounts WHERE kind <> 'user'")
    if op.get_bind().dialect.name == "sqlite":
        seq = _sqlite_sequence()
        with op.batch_alter_table(
            "accounts", recreate="always", table_kwargs={"sqlite_autoincrement": True}
        ) as batch:
            batch.drop_constraint(op.f("ck_accounts_kind"), type_="check")
            batch.create_check_constraint(op.f("ck_accounts_kind"), _OLD_KINDS)
            batch.drop_column("description")
        _restore_sqlite_sequence(seq)
        return
    _replace_kind_check(_OLD_KINDS)
    op.drop_column("accounts", "description")
