"""Initial schema: accounts, groups, memberships, id allocators.

Revision ID: 0001
Revises:
Create Date: 2025-01-01

Written out in full rather than importing the models: a migration must keep
producing the schema of its own day after the models move on. Names are
wrapped in ``op.f()`` because Alembic applies the models' naming convention to
constraint names it creates, and these are already final.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_MYSQL: dict[str, Any] = {
    "mysql_engine": "InnoDB",
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_nopad_bin",
}


def _timestamp() -> sa.types.TypeEngine[Any]:
    # Zone-aware on PostgreSQL, microsecond DATETIME holding UTC on MariaDB.
    return sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("uuid", sa.String(36), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("name", sa.String(150), nullable=False),
        sa.Column("name_lower", sa.String(150), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=True),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("uid_number", sa.Integer(), nullable=True),
        sa.Column("gid_number", sa.Integer(), nullable=True),
        sa.Column("display_name", sa.String(255), nullable=True),
        sa.Column("given_name", sa.String(255), nullable=True),
        sa.Column("surname", sa.String(255), nullable=True),
        sa.Column("mail", sa.String(255), nullable=True),
        sa.Column("home_directory", sa.String(255), nullable=True),
        sa.Column("login_shell", sa.String(255), nullable=True),
        sa.Column("gecos", sa.String(255), nullable=True),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.Column("modified_at", _timestamp(), nullable=False),
        sa.CheckConstraint("kind IN ('user')", name=op.f("ck_accounts_kind")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_accounts")),
        sa.UniqueConstraint("uuid", name=op.f("uq_accounts_uuid")),
        sa.UniqueConstraint("name_lower", name=op.f("uq_accounts_name_lower")),
        sa.UniqueConstraint("uid_number", name=op.f("uq_accounts_uid_number")),
        sqlite_autoincrement=True,
        **_MYSQL,
    )
    op.create_index(op.f("ix_accounts_gid_number"), "accounts", ["gid_number"])

    op.create_table(
        "groups",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("uuid", sa.String(36), nullable=False),
        sa.Column("name", sa.String(150), nullable=False),
        sa.Column("name_lower", sa.String(150), nullable=False),
        sa.Column("gid_number", sa.Integer(), nullable=False),
        sa.Column("description", sa.String(255), nullable=True),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.Column("modified_at", _timestamp(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_groups")),
        sa.UniqueConstraint("uuid", name=op.f("uq_groups_uuid")),
        sa.UniqueConstraint("name_lower", name=op.f("uq_groups_name_lower")),
        sa.UniqueConstraint("gid_number", name=op.f("uq_groups_gid_number")),
        sqlite_autoincrement=True,
        **_MYSQL,
    )

    op.create_table(
        "memberships",
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["groups.id"],
            name=op.f("fk_memberships_group_id_groups"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_memberships_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("group_id", "account_id", name=op.f("pk_memberships")),
        **_MYSQL,
    )
    op.create_index(op.f("ix_memberships_account_id"), "memberships", ["account_id"])

    allocators = op.create_table(
        "id_allocators",
        sa.Column("name", sa.String(16), nullable=False),
        sa.Column("next_value", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_id_allocators")),
        **_MYSQL,
    )
    # Seeded so allocation always finds a row to lock; 0 means "the start of
    # whatever range is configured".
    op.bulk_insert(allocators, [{"name": "uid", "next_value": 0}, {"name": "gid", "next_value": 0}])


def downgrade() -> None:
    # Indexes go with their tables (MariaDB refuses to drop an index a
    # foreign key still needs).
    op.drop_table("id_allocators")
    op.drop_table("memberships")
    op.drop_table("groups")
    op.drop_table("accounts")
