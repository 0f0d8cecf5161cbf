"""Schema versions, migrations and the models agree; backend set-up holds."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta, timezone

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import insert, select, text

from ldapsrv.errors import SchemaOutdated
from ldapsrv.store.engine import SQLITE_BUSY_TIMEOUT_MS, make_engine
from ldapsrv.store.models import Base, accounts
from ldapsrv.store.schema_version import (
    alembic_config,
    check_schema,
    current_revision,
    head_revision,
    upgrade,
)

from .dbs import fresh_database, load_all_tables


def test_head_revision_is_the_change_counters_one():
    assert head_revision() == "0006"


def test_upgrade_creates_the_schema_on_an_empty_database_and_is_idempotent(database_kind):
    with fresh_database(database_kind, migrate=False) as url:
        engine = make_engine(url)
        try:
            assert current_revision(engine) is None
            assert upgrade(url) == head_revision()
            assert upgrade(url) == head_revision()
            assert current_revision(engine) == head_revision()
            check_schema(engine)
        finally:
            engine.dispose()


def test_two_servers_upgrading_at_once_both_succeed(database_kind):
    # Several servers may run "ldapsrv db upgrade" against one database at
    # start-up: the upgrade lock makes the second a no-op, not a crash.
    with fresh_database(database_kind, migrate=False) as url:
        start = threading.Barrier(2)
        results: list[object] = []

        def upgrade_after_barrier() -> None:
            start.wait()
            try:
                results.append(upgrade(url))
            except Exception as exc:
                results.append(exc)

        threads = [threading.Thread(target=upgrade_after_barrier) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    assert results == [head_revision(), head_revision()]


def test_check_schema_on_an_empty_database_names_the_command_to_run(database_kind):
    with fresh_database(database_kind, migrate=False) as url:
        engine = make_engine(url)
        try:
            with pytest.raises(SchemaOutdated) as caught:
                check_schema(engine)
        finally:
            engine.dispose()
    assert str(caught.value) == (
        f"database schema is at revision none (empty database), this ldapsrv needs "
        f'{head_revision()}: run "ldapsrv db upgrade"'
    )


@pytest.fixture
def own_engine(database_url):
    """An engine on a database of this test's own: these tests change the schema."""
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


def test_downgrade_to_base_and_upgrade_again_round_trip(database_url, own_engine):
    config = alembic_config()
    with own_engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "base")
    with pytest.raises(SchemaOutdated, match=r"revision none \(empty database\)"):
        check_schema(own_engine)
    assert upgrade(database_url) == head_revision()
    check_schema(own_engine)


def test_check_schema_refuses_a_revision_this_code_does_not_know(own_engine):
    with own_engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(SchemaOutdated, match=r"revision 9999, which this ldapsrv does not know"):
        check_schema(own_engine)


def test_migrations_produce_exactly_the_schema_the_models_describe(engine):
    load_all_tables()
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, Base.metadata)
    assert diff == []


def test_timestamps_come_back_as_aware_utc_with_microseconds(engine):
    # Stored from a non-UTC zone: must come back as the same instant, in UTC.
    instant = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=timezone(timedelta(hours=2)))
    with engine.begin() as conn:
        conn.execute(
            insert(accounts).values(
                uuid="00000000-0000-4000-8000-000000000001",
                kind="user",
                name="t",
                name_lower="t",
                disabled=False,
                created_at=instant,
                modified_at=instant,
            )
        )
    with engine.connect() as conn:
        stored = conn.execute(select(accounts.c.created_at)).scalar_one()
    assert stored == instant
    assert stored.tzinfo is UTC
    assert stored.microsecond == 123456


def test_naive_datetimes_are_refused_rather_than_guessed(engine):
    with pytest.raises(Exception, match=r"naive datetime"), engine.begin() as conn:
        conn.execute(
            insert(accounts).values(
                uuid="00000000-0000-4000-8000-000000000002",
                kind="user",
                name="t",
                name_lower="t",
                disabled=False,
                created_at=datetime(2024, 1, 1),
                modified_at=datetime(2024, 1, 1),
            )
        )


def test_account_kind_is_checked_by_the_database(engine):
    with pytest.raises(Exception, match=r"(?i)check|constraint"), engine.begin() as conn:
        conn.execute(
            insert(accounts).values(
                uuid="00000000-0000-4000-8000-000000000003",
                kind="robot",
                name="t",
                name_lower="t",
                disabled=False,
                created_at=datetime.now(UTC),
                modified_at=datetime.now(UTC),
            )
        )


def test_sqlite_connections_use_wal_foreign_keys_and_a_busy_timeout(tmp_path):
    url = f"sqlite:///{tmp_path / 'x.db'}"
    upgrade(url)
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            pragma = {
                name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
                for name in ("journal_mode", "foreign_keys", "busy_timeout", "synchronous")
            }
    finally:
        engine.dispose()
    assert SQLITE_BUSY_TIMEOUT_MS == 2000  # short: a lock held longer answers busy (51)
    assert pragma == {
        "journal_mode": "wal",
        "foreign_keys": 1,
        "busy_timeout": SQLITE_BUSY_TIMEOUT_MS,
        "synchronous": 1,  # NORMAL
    }


def test_sqlite_lower_folds_non_ascii_like_the_other_backends(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT lower('ÉMILE Öz')")).scalar() == "émile öz"
    finally:
        engine.dispose()
