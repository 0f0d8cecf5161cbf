"""Change counters for caches that stay correct across servers (issue 5).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29

``change_counters`` holds one row per kind of change (``directory``,
``throttle``); every transaction making such a change adds one to its row
before it commits. A server answers a search or a warm token bind from memory
only after reading the counters and finding them where they were when the
answer was computed. Rows are created by the first change (an absent row reads
as 0), so the migration only creates the table.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "change_counters",
        sa.Column("name", sa.String(16), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_change_counters")),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_nopad_bin",
    )


def downgrade() -> None:
    op.drop_table("change_counters")
