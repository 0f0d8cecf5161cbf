"""Migration 0002 (service accounts, tokens, audit) upgrades a 0001 database in use."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from alembic import command
from sqlalchemy import Engine, insert, select, text

from ldapsrv.directory.predicates import TRUE
from ldapsrv.store.directory import SqlDirectory
from ldapsrv.store.engine import make_engine
from ldapsrv.store.models import accounts, groups, memberships
from ldapsrv.store.schema_version import alembic_config, current_revision, head_revision, upgrade

from .conftest import GID_RANGE, UID_RANGE
from .dbs import fresh_database

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def _migrate(engine: Engine, revision: str, *, down: bool = False) -> None:
    """Move to ``revision`` as ``ldapsrv db upgrade`` would (on SQLite with
    foreign keys off, so rebuilding a table does not cascade)."""
    config = alembic_config()
    sqlite = engine.dialect.name == "sqlite"
    with engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        if sqlite:
            raw.execute("PRAGMA foreign_keys = OFF")  # only works outside a transaction
        with conn.begin():
            config.attributes["connection"] = conn
            (command.downgrade if down else command.upgrade)(config, revision)
        if sqlite:
            raw.execute("PRAGMA foreign_keys = ON")


def _account(i: int, name: str) -> dict[str, object]:
    return {
        "uuid": f"00000000-0000-4000-8000-{i:012d}",
        "kind": "user",
        "name": name,
        "name_lower": name.lower(),
        "password_hash": f"hash-{name}",
        "disabled": False,
        "uid_number": 10000 + i,
        "gid_number": 20000,
        "mail": f"{name}@example.org",
        "created_at": T0,
        "modified_at": T0,
    }


@pytest.fixture
def version_0001_with_data(database_kind):
    """A database at 0001 holding two users, a group with both as members, and
    a third user created and deleted again (its id must never come back)."""
    with fresh_database(database_kind, migrate=False) as url:
        engine = make_engine(url)
        try:
            _migrate(engine, "0001")
            with engine.begin() as conn:
                conn.execute(
                    insert(accounts),
                    [_account(1, "Alice"), _account(2, "bob"), _account(3, "gone")],
                )
                conn.execute(
                    insert(groups).values(
                        uuid="00000000-0000-4000-9000-000000000001",
                        name="staff",
                        name_lower="staff",
                        gid_number=20000,
                        created_at=T0,
                        modified_at=T0,
                    )
                )
                ids = dict(conn.execute(select(accounts.c.name, accounts.c.id)).all())
                group_id = conn.execute(select(groups.c.id)).scalar_one()
                conn.execute(
                    insert(memberships),
                    [{"group_id": group_id, "account_id": ids[n]} for n in ("Alice", "bob")],
                )
                conn.execute(accounts.delete().where(accounts.c.name == "gone"))
            yield url, engine, ids
        finally:
            engine.dispose()


def test_upgrading_a_0001_database_keeps_every_row(version_0001_with_data):
    url, engine, ids = version_0001_with_data
    assert current_revision(engine) == "0001"
    assert upgrade(url) == head_revision()
    directory = SqlDirectory(engine, uid_range=UID_RANGE, gid_range=GID_RANGE)
    users = directory.search_users(TRUE, limit=10)
    assert [(u.id, u.name, u.uid_number, u.mail) for u in users] == [
        (ids["Alice"], "Alice", 10001, "Alice@example.org"),
        (ids["bob"], "bob", 10002, "bob@example.org"),
    ]
    assert users[0].created == T0
    assert directory.get_group("staff").member_names == ("Alice", "bob")
    credentials = directory.get_credentials("alice")
    assert credentials is not None
    assert (credentials.password_hash, credentials.kind) == ("hash-Alice", "user")


def test_after_the_upgrade_service_accounts_are_allowed_and_other_kinds_still_refused(
    version_0001_with_data,
):
    url, engine, _ = version_0001_with_data
    upgrade(url)
    with engine.begin() as conn:
        conn.execute(
            insert(accounts).values(
                {**_account(9, "nas"), "kind": "service_account", "uid_number": None}
            )
        )
    with pytest.raises(Exception, match=r"(?i)check|constraint"), engine.begin() as conn:
        conn.execute(insert(accounts).values({**_account(10, "robot"), "kind": "robot"}))


def test_ids_of_accounts_deleted_before_the_upgrade_are_not_handed_out_again(
    version_0001_with_data,
):
    # SQLite rebuilds the accounts table to widen the CHECK; its AUTOINCREMENT
    # counter must survive the rebuild.
    url, engine, ids = version_0001_with_data
    upgrade(url)
    directory = SqlDirectory(engine, uid_range=UID_RANGE, gid_range=GID_RANGE)
    created, _ = directory.create_service_account("nas")
    assert created.id > ids["gone"]


def test_the_upgrade_leaves_foreign_keys_enforced_and_cascading(version_0001_with_data):
    url, engine, ids = version_0001_with_data
    upgrade(url)
    with engine.begin() as conn:
        conn.execute(accounts.delete().where(accounts.c.id == ids["bob"]))
    with engine.connect() as conn:
        left = conn.execute(select(memberships.c.account_id)).scalars().all()
    assert left == [ids["Alice"]]


def test_downgrading_to_0001_drops_machine_accounts_and_keeps_people(version_0001_with_data):
    url, engine, _ = version_0001_with_data
    upgrade(url)
    directory = SqlDirectory(engine, uid_range=UID_RANGE, gid_range=GID_RANGE)
    directory.create_service_account("nas")
    directory.add_member("staff", "nas")
    _migrate(engine, "0001", down=True)
    with engine.connect() as conn:
        names = conn.execute(select(accounts.c.name).order_by(accounts.c.id)).scalars().all()
        members = conn.execute(text("SELECT COUNT(*) FROM memberships")).scalar()
    assert names == ["Alice", "bob"]
    assert members == 2
    assert upgrade(url) == head_revision()
