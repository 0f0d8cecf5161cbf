"""Failed-bind throttling: the ``bind_failures`` counters.

Revision ID: 0003
Revises: 0002
Create Date: 2025-02-15

One row per throttled key: a bind DN (``dn``), a client address
(``address``) or a (DN, address) pair (``pair``). Every server sharing the
database reads and bumps the same rows, so a lock-out holds across all of them.

Keys are attacker-controlled (a bind DN can be kilobytes long and hold
anything, NUL included), so rows are found by ``key_hash``, the SHA-256 of the
normalised key, which has a fixed width every backend can index; ``subject``
keeps a printable, truncated copy for ``ldapsrv status``. The primary key
(key_kind, key_hash) is what concurrent upserts collide on. The index on
``last_failure_at`` serves pruning of expired rows and the status listing.

As in 0001 and 0002, everything is written out rather than imported from the models.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0003"
down_revision = "0002"
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
        "bind_failures",
        sa.Column("key_kind", sa.String(8), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("subject", sa.String(255), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("first_failure_at", _timestamp(), nullable=False),
        sa.Column("last_failure_at", _timestamp(), nullable=False),
        sa.Column("locked_until", _timestamp(), nullable=True),
        sa.CheckConstraint(
            "key_kind IN ('dn', 'address', 'pair')", name=op.f("ck_bind_failures_key_kind")
        ),
        sa.PrimaryKeyConstraint("key_kind", "key_hash", name=op.f("pk_bind_failures")),
        **_MYSQL,
    )
    op.create_index(op.f("ix_bind_failures_last_failure_at"), "bind_failures", ["last_failure_at"])


def downgrade() -> None:
    op.drop_table("bind_failures")
