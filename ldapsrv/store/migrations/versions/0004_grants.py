"""Grants: permissions held by accounts or groups (access control, issue 4).

Revision ID: 0004
Revises: 0003
Create Date: 2025-03-01

One new table, ``grants``; nothing existing changes, so upgrading keeps every
row and downgrading only drops the table (and with it every grant). As in
0001/0002, everything is written out rather than imported from the models, so
this revision keeps meaning what it meant when later revisions change them.
See ``models.Grant`` for why uniqueness is a ``grant_key`` string.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_MYSQL: dict[str, Any] = {
    "mysql_engine": "InnoDB",
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_nopad_bin",
}


def _timestamp() -> sa.types.TypeEngine[Any]:
    return sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "grants",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("permission", sa.String(32), nullable=False),
        sa.Column("subject_account_id", sa.Integer(), nullable=True),
        sa.Column("subject_group_id", sa.Integer(), nullable=True),
        sa.Column("scope_group_id", sa.Integer(), nullable=True),
        sa.Column("grant_key", sa.String(100), nullable=False),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.CheckConstraint(
            "permission IN ('search_full_directory', 'search', 'reset_password')",
            name=op.f("ck_grants_permission"),
        ),
        sa.CheckConstraint(
            "(subject_account_id IS NOT NULL AND subject_group_id IS NULL)"
            " OR (subject_account_id IS NULL AND subject_group_id IS NOT NULL)",
            name=op.f("ck_grants_one_subject"),
        ),
        sa.CheckConstraint(
            "(permission <> 'search' OR scope_group_id IS NOT NULL)"
            " AND (permission <> 'search_full_directory' OR scope_group_id IS NULL)",
            name=op.f("ck_grants_scope"),
        ),
        sa.ForeignKeyConstraint(
            ["subject_account_id"],
            ["accounts.id"],
            name=op.f("fk_grants_subject_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["subject_group_id"],
            ["groups.id"],
            name=op.f("fk_grants_subject_group_id_groups"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["scope_group_id"],
            ["groups.id"],
            name=op.f("fk_grants_scope_group_id_groups"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_grants")),
        sa.UniqueConstraint("grant_key", name=op.f("uq_grants_grant_key")),
        sqlite_autoincrement=True,
        **_MYSQL,
    )
    op.create_index(op.f("ix_grants_subject_account_id"), "grants", ["subject_account_id"])
    op.create_index(op.f("ix_grants_subject_group_id"), "grants", ["subject_group_id"])
    op.create_index(op.f("ix_grants_scope_group_id"), "grants", ["scope_group_id"])


def downgrade() -> None:
    op.drop_table("grants")
