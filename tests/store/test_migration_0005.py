"""Migration 0005 (management permissions) widens the grants CHECK and keeps every grant."""

from __future__ import annotations

import pytest

from ldapsrv.admin.ports import NewUser
from ldapsrv.directory.records import Permission
from ldapsrv.store.directory import SqlDirectory
from ldapsrv.store.engine import WITHOUT_CHANGE_COUNTERS, make_engine
from ldapsrv.store.schema_version import current_revision, head_revision, upgrade

from .conftest import GID_RANGE, UID_RANGE
from .dbs import fresh_database
from .test_migration_0002 import _migrate


@pytest.fixture
def version_0004_with_a_grant(database_kind):
    """A database at 0004: alice in staff, staff holding search_full_directory."""
    with fresh_database(database_kind, migrate=False) as url:
        # Below 0006 there are no change counters for writes to bump.
        engine = make_engine(url).execution_options(**{WITHOUT_CHANGE_COUNTERS: True})
        try:
            _migrate(engine, "0004")
            directory = SqlDirectory(engine, uid_range=UID_RANGE, gid_range=GID_RANGE)
            directory.create_user(NewUser("alice"))
            directory.create_group("staff")
            directory.add_member("staff", "alice")
            directory.grant(Permission.SEARCH_FULL_DIRECTORY, group="staff")
            yield url, engine, directory
        finally:
            engine.dispose()


def test_upgrade_keeps_grants_and_admits_management_permissions(version_0004_with_a_grant):
    url, engine, directory = version_0004_with_a_grant
    assert upgrade(url) == head_revision() == current_revision(engine)
    assert [g.permission for g in directory.list_grants()] == [Permission.SEARCH_FULL_DIRECTORY]
    directory.grant(Permission.MANAGE_TOKENS, account="alice")
    directory.grant(Permission.READ_AUDIT, group="staff")
    effective = directory.effective_permissions("alice")
    assert effective.full_directory is True
    assert effective.management == {Permission.MANAGE_TOKENS, Permission.READ_AUDIT}


def test_downgrade_drops_only_the_management_grants(version_0004_with_a_grant):
    url, engine, directory = version_0004_with_a_grant
    upgrade(url)
    directory.grant(Permission.MANAGE_GROUPS, account="alice")
    _migrate(engine, "0004", down=True)
    assert current_revision(engine) == "0004"
    assert [g.permission for g in directory.list_grants()] == [Permission.SEARCH_FULL_DIRECTORY]
    assert directory.effective_permissions("alice").management == frozenset()
