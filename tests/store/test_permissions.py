"""Grants in the store, on every backend: the shape rules, internal accounts,
duplicates (NULLs included), cascades, effective permissions, audit in the
same transaction; and the audited people/group writes and ``set_disabled``."""

from __future__ import annotations

import pytest
from sqlalchemy import func, insert, select

from ldapsrv.directory.records import AccountKind, AuditEvent, EffectivePermissions, Permission
from ldapsrv.errors import AlreadyExists, InvalidValue, NotFound
from ldapsrv.store.directory import NewUser
from ldapsrv.store.models import audit_events, grants, utcnow

FULL = Permission.SEARCH_FULL_DIRECTORY
SEARCH = Permission.SEARCH
RESET = Permission.RESET_PASSWORD


def event(action: str, target: str = "x") -> AuditEvent:
    return AuditEvent(actor="test", channel="control-socket", action=action, target=target)


def count(directory, table) -> int:
    with directory.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def actions(directory) -> list[str]:
    return [e.action for _, e in directory.list_audit()]


@pytest.fixture
def populated(directory):
    directory.create_user(NewUser("alice"))
    directory.create_user(NewUser("bob"))
    directory.create_group("staff")
    directory.create_group("nas-users")
    directory.add_member("staff", "alice")
    directory.create_service_account("nas")
    directory.create_service_account("health", kind=AccountKind.INTERNAL_SERVICE_ACCOUNT)
    return directory


class TestGrant:
    def test_a_grant_to_an_account_comes_back_with_names(self, populated):
        record = populated.grant(SEARCH, account="NAS", scope_group="NAS-USERS")
        assert (record.permission, record.account_name, record.group_name, record.scope_group) == (
            SEARCH,
            "nas",
            None,
            "nas-users",
        )
        assert record.created.tzinfo is not None
        assert populated.list_grants(account="nas") == [record]

    def test_a_grant_to_a_group(self, populated):
        record = populated.grant(FULL, group="staff")
        assert (record.account_name, record.group_name, record.scope_group) == (
            None,
            "staff",
            None,
        )
        assert populated.list_grants(group="STAFF") == [record]
        assert populated.list_grants(account="alice") == []  # inherited ones are not listed

    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            ({}, "exactly one account or one group"),
            ({"account": "alice", "group": "staff"}, "exactly one account or one group"),
        ],
    )
    def test_exactly_one_subject(self, populated, kwargs, message):
        with pytest.raises(InvalidValue, match=message):
            populated.grant(FULL, **kwargs)

    def test_search_needs_a_scope_and_full_directory_takes_none(self, populated):
        with pytest.raises(InvalidValue, match="'search' needs a scope group"):
            populated.grant(SEARCH, account="nas")
        with pytest.raises(InvalidValue, match="'search_full_directory' takes no scope"):
            populated.grant(FULL, account="nas", scope_group="staff")

    def test_reset_password_takes_a_scope_or_none(self, populated):
        populated.grant(RESET, account="alice")
        populated.grant(RESET, account="alice", scope_group="staff")
        assert len(populated.list_grants(account="alice")) == 2

    def test_unknown_permission_lists_the_known_ones(self, populated):
        with pytest.raises(InvalidValue, match="unknown permission 'sudo'; known: "):
            populated.grant("sudo", account="alice")  # type: ignore[arg-type]

    def test_an_internal_service_account_cannot_hold_a_grant_directly(self, populated):
        with pytest.raises(InvalidValue, match="grant it to a group the account is in"):
            populated.grant(FULL, account="health")
        populated.create_group("monitoring")
        populated.add_member("monitoring", "health")
        populated.grant(FULL, group="monitoring")
        assert populated.effective_permissions("health").full_directory

    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            ({"account": "nobody"}, 'account "nobody" not found'),
            ({"group": "nogroup"}, 'group "nogroup" not found'),
            ({"account": "alice", "scope_group": "nogroup"}, 'scope group "nogroup" not found'),
        ],
    )
    def test_unknown_names_are_not_found(self, populated, kwargs, message):
        permission = SEARCH if "scope_group" in kwargs else FULL
        with pytest.raises(NotFound, match=message):
            populated.grant(permission, **kwargs)

    def test_duplicates_are_refused_even_with_null_columns(self, populated):
        populated.grant(FULL, account="alice")
        with pytest.raises(AlreadyExists, match='search_full_directory for account "alice"'):
            populated.grant(FULL, account="ALICE")
        populated.grant(RESET, group="staff")
        with pytest.raises(AlreadyExists, match="reset_password for group"):
            populated.grant(RESET, group="staff")
        populated.grant(SEARCH, group="staff", scope_group="nas-users")
        with pytest.raises(AlreadyExists, match='scoped to group "nas-users"'):
            populated.grant(SEARCH, group="staff", scope_group="nas-users")
        assert count(populated, grants) == 3

    def test_the_database_itself_refuses_a_duplicate_and_a_shapeless_row(self, populated):
        populated.grant(FULL, account="alice")
        with (
            pytest.raises(Exception, match=r"(?i)unique|duplicate"),
            populated.engine.begin() as conn,
        ):
            conn.execute(
                insert(grants).values(
                    permission="search_full_directory",
                    subject_account_id=populated.get_user("alice").id,
                    grant_key=f"search_full_directory:a{populated.get_user('alice').id}:g:s",
                    created_at=utcnow(),
                )
            )
        with pytest.raises(Exception, match=r"(?i)check|constraint"), populated.engine.begin() as c:
            c.execute(
                insert(grants).values(
                    permission="search_full_directory", grant_key="k", created_at=utcnow()
                )
            )

    def test_grants_go_with_their_account_group_or_scope(self, populated):
        populated.grant(FULL, account="bob")
        populated.grant(SEARCH, group="staff", scope_group="nas-users")
        populated.grant(SEARCH, account="nas", scope_group="staff")
        populated.delete_user("bob")
        assert count(populated, grants) == 2
        populated.delete_group("nas-users")
        assert count(populated, grants) == 1
        populated.delete_group("staff")
        assert count(populated, grants) == 0
        populated.grant(FULL, account="nas")
        populated.delete_service_account("nas")
        assert count(populated, grants) == 0

    def test_grant_and_revoke_write_their_audit_event_with_the_change(self, populated):
        populated.grant(FULL, account="alice", audit=event("permission.grant"))
        with pytest.raises(AlreadyExists):
            populated.grant(FULL, account="alice", audit=event("permission.grant"))
        populated.revoke(FULL, account="alice", audit=event("permission.revoke"))
        with pytest.raises(NotFound):
            populated.revoke(FULL, account="alice", audit=event("permission.revoke"))
        assert actions(populated) == ["permission.grant", "permission.revoke"]


class TestRevokeAndList:
    def test_revoke_takes_back_exactly_that_grant(self, populated):
        populated.grant(RESET, account="alice")
        populated.grant(RESET, account="alice", scope_group="staff")
        populated.revoke(RESET, account="alice", scope_group="staff")
        (left,) = populated.list_grants(account="alice")
        assert left.scope_group is None

    def test_revoking_a_missing_grant_names_it(self, populated):
        with pytest.raises(NotFound, match='no grant search scoped to group "staff" for group'):
            populated.revoke(SEARCH, group="nas-users", scope_group="staff")

    def test_list_every_grant_oldest_first(self, populated):
        a = populated.grant(FULL, account="alice")
        b = populated.grant(SEARCH, group="staff", scope_group="nas-users")
        assert populated.list_grants() == [a, b]
        with pytest.raises(NotFound):
            populated.list_grants(account="ghost")
        with pytest.raises(InvalidValue):
            populated.list_grants(account="alice", group="staff")


class TestEffective:
    def test_direct_and_inherited_grants_combine(self, populated):
        populated.grant(SEARCH, account="alice", scope_group="nas-users")
        populated.grant(RESET, group="staff", scope_group="Staff")
        assert populated.effective_permissions("ALICE") == EffectivePermissions(
            full_directory=False,
            search_scopes=frozenset({"nas-users"}),
            reset_password_everyone=False,
            reset_password_scopes=frozenset({"staff"}),
        )
        populated.grant(RESET, group="staff")
        populated.grant(FULL, group="staff")
        got = populated.effective_permissions("alice")
        assert got.full_directory and got.reset_password_everyone

    def test_nothing_for_non_members_and_unknown_accounts(self, populated):
        populated.grant(FULL, group="staff")
        assert populated.effective_permissions("bob") == EffectivePermissions()
        assert populated.effective_permissions("ghost") == EffectivePermissions()
        assert populated.effective_permissions("gh\x00ost") == EffectivePermissions()

    def test_is_member(self, populated):
        assert populated.is_member("STAFF", "Alice")
        assert not populated.is_member("staff", "bob")
        assert not populated.is_member("nogroup", "alice")
        assert not populated.is_member("staff", "nobody")


class TestAuditedDirectoryWrites:
    def test_every_people_and_group_write_can_carry_its_audit_event(self, directory):
        directory.create_user(NewUser("alice"), audit=event("user.add"))
        directory.create_group("staff", audit=event("group.add"))
        directory.add_member("staff", "alice", audit=event("group.add_member"))
        directory.remove_member("staff", "alice", audit=event("group.remove_member"))
        directory.set_password_hash("alice", "$2b$h", audit=event("user.set_password"))
        directory.set_disabled("alice", True, audit=event("user.disable"))
        directory.delete_group("staff", audit=event("group.delete"))
        directory.delete_user("alice", audit=event("user.delete"))
        assert actions(directory) == [
            "user.add",
            "group.add",
            "group.add_member",
            "group.remove_member",
            "user.set_password",
            "user.disable",
            "group.delete",
            "user.delete",
        ]

    def test_a_refused_write_leaves_no_audit_event(self, directory):
        directory.create_user(NewUser("alice"))
        with pytest.raises(AlreadyExists):
            directory.create_user(NewUser("ALICE"), audit=event("user.add"))
        with pytest.raises(NotFound):
            directory.delete_group("nope", audit=event("group.delete"))
        with pytest.raises(NotFound):
            directory.set_disabled("nope", True, audit=event("user.disable"))
        assert count(directory, audit_events) == 0


class TestDisabled:
    def test_disable_and_enable_a_person(self, directory, clock):
        directory.create_user(NewUser("alice"))
        before = directory.get_user("alice")
        assert not before.disabled
        directory.set_disabled("ALICE", True)
        after = directory.get_user("alice")
        assert after.disabled and after.modified > before.modified
        assert directory.get_credentials("alice").disabled
        directory.set_disabled("alice", True)  # again: no error, no change
        assert directory.get_user("alice").modified == after.modified
        directory.set_disabled("alice", False)
        assert not directory.get_credentials("alice").disabled

    def test_only_people(self, directory):
        directory.create_service_account("nas")
        with pytest.raises(NotFound, match='user "nas" not found'):
            directory.set_disabled("nas", True)
