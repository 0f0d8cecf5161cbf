"""Management permissions for the management API (issue 8).

Revision ID: 0005
Revises: 0004
Create Date: 2025-03-15

``grants.permission`` may now also hold the management permissions
(``manage_accounts``, ``manage_groups``, ``manage_tokens``,
``manage_permissions``, ``read_audit``, ``rotate_own_tokens``). Only the CHECK
changes; every grant is kept. Downgrading deletes the management grants (the
narrower CHECK cannot hold them) and restores the old CHECK. On SQLite a CHECK
changes only by rebuilding the table (batch mode), as in 0002.
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_OLD = ("search_full_directory", "search", "reset_password")
_NEW = (
    *_OLD,
    "manage_accounts",
    "manage_groups",
    "manage_tokens",
    "manage_permissions",
    "read_audit",
    "rotate_own_tokens",
)


def _condition(permissions: tuple[str, ...]) -> str:
    return "permission IN (" + ", ".join(f"'{p}'" for p in permissions) + ")"


def _replace_permission_check(permissions: tuple[str, ...]) -> None:
    name = op.f("ck_grants_permission")
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table(
            "grants", recreate="always", table_kwargs={"sqlite_autoincrement": True}
        ) as batch:
            batch.drop_constraint(name, type_="check")
            batch.create_check_constraint(name, _condition(permissions))
        return
    op.drop_constraint(name, "grants", type_="check")
    op.create_check_constraint(name, "grants", _condition(permissions))


def upgrade() -> None:
    _replace_permission_check(_NEW)


def downgrade() -> None:
    op.execute("DELETE FROM grants WHERE " + _condition(_NEW[len(_OLD) :]))
    _replace_permission_check(_OLD)
