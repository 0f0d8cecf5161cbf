"""Service accounts in the store: creation all-or-nothing, one name space with
people, deletion cascades, people's commands never reach them, LDAP search."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from ldapsrv.auth.ports import NewToken
from ldapsrv.directory.predicates import (
    TRUE,
    AllOf,
    FieldCompare,
    FieldEquals,
    FieldPresent,
    FieldSubstrings,
    HasMember,
    InAnyGroup,
    InGroup,
    Negation,
)
from ldapsrv.directory.records import AccountKind, AuditEvent, TokenIntent
from ldapsrv.errors import AlreadyExists, InvalidValue, NotFound
from ldapsrv.store.directory import NewUser
from ldapsrv.store.models import accounts, audit_events, groups, memberships, tokens

from .conftest import GID_RANGE

EXPIRY = datetime(2025, 1, 1, tzinfo=UTC)


def new_token(identifier: str, account: str, lookup_id: str | None = None) -> NewToken:
    return NewToken(
        identifier=identifier,
        account_name=account,
        intent=TokenIntent.APP_PASSWORD,
        lookup_id=lookup_id or f"L{identifier.replace('.', '')}",
        secret_hash=f"$2b$10$hash-of-{identifier}",
        encrypted_value=f"enc-{identifier}",
        expiring=True,
        expires_at=EXPIRY,
        lifetime_seconds=360 * 86400,
    )


def count(directory, table) -> int:
    with directory.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


class TestCreate:
    def test_a_service_account_has_no_password_and_no_posix_numbers(self, directory):
        nas, token = directory.create_service_account("nas", description="The NAS")
        assert token is None
        assert (nas.name, nas.kind, nas.description, nas.group_names) == (
            "nas",
            AccountKind.SERVICE_ACCOUNT,
            "The NAS",
            (),
        )
        assert nas.created.tzinfo is UTC and nas.created == nas.modified
        with directory.engine.connect() as conn:
            row = conn.execute(select(accounts).where(accounts.c.id == nas.id)).one()
        assert (row.password_hash, row.uid_number, row.gid_number, row.home_directory) == (
            None,
            None,
            None,
            None,
        )
        assert directory.get_service_account("NAS") == nas

    def test_create_group_makes_a_group_named_after_it_with_it_as_member(self, directory):
        nas, _ = directory.create_service_account("nas", create_group=True)
        group = directory.get_group("nas")
        assert group.member_names == ("nas",)
        assert group.gid_number == GID_RANGE[0]  # allocated like any group's
        assert nas.group_names == ("nas",)

    def test_first_token_and_audit_event_are_written_with_the_account(self, directory):
        audit = AuditEvent("admin", "control-socket", "service_account.create", "nas")
        _, token = directory.create_service_account(
            "nas", token=new_token("nas-1", "NAS"), audit=audit
        )
        assert token is not None
        assert (token.identifier, token.account_name, token.account_kind) == (
            "nas-1",
            "nas",
            AccountKind.SERVICE_ACCOUNT,
        )
        assert token.generation == 1 and token.expires_at == EXPIRY
        assert [e for _, e in directory.list_audit()] == [audit]

    def test_an_internal_service_account_can_be_created_by_the_server(self, directory):
        health, _ = directory.create_service_account(
            "ldapsrv-health", kind=AccountKind.INTERNAL_SERVICE_ACCOUNT
        )
        assert health.kind is AccountKind.INTERNAL_SERVICE_ACCOUNT

    def test_the_user_kind_is_not_a_service_account_kind(self, directory):
        with pytest.raises(InvalidValue, match=r"kind"):
            directory.create_service_account("nas", kind=AccountKind.USER)

    @pytest.mark.parametrize("name", ["", "has space", "x" * 151, "a\x00b"])
    def test_invalid_names_are_refused(self, directory, name):
        with pytest.raises(InvalidValue, match=r"account name"):
            directory.create_service_account(name)
        assert count(directory, accounts) == 0

    def test_a_name_of_150_characters_is_accepted(self, directory):
        assert directory.create_service_account("n" * 150)[0].name == "n" * 150

    def test_names_are_unique_case_insensitively_among_service_accounts(self, directory):
        directory.create_service_account("Nas")
        with pytest.raises(
            AlreadyExists, match=r'^account "Nas" already exists \(a service account\)$'
        ):
            directory.create_service_account("NAS")

    def test_a_name_a_person_has_is_refused(self, directory):
        directory.create_user(NewUser("alice"))
        with pytest.raises(AlreadyExists, match=r'^user "alice" already exists$'):
            directory.create_service_account("ALICE")

    def test_a_person_cannot_take_a_service_accounts_name(self, directory):
        directory.create_service_account("nas")
        with pytest.raises(
            AlreadyExists, match=r'^account "nas" already exists \(a service account\)$'
        ):
            directory.create_user(NewUser("Nas"))
        assert directory.list_users() == []

    def test_a_taken_group_name_creates_nothing_and_names_the_group(self, directory):
        directory.create_group("NAS")
        audit = AuditEvent("admin", "control-socket", "service_account.create", "nas")
        with pytest.raises(AlreadyExists, match=r'^group "nas" already exists$'):
            directory.create_service_account(
                "nas", create_group=True, token=new_token("nas-1", "nas"), audit=audit
            )
        assert count(directory, accounts) == 0
        assert count(directory, tokens) == 0
        assert count(directory, audit_events) == 0
        assert [g.name for g in directory.list_groups()] == ["NAS"]

    def test_a_taken_token_identifier_creates_nothing(self, directory):
        directory.create_service_account("other", token=new_token("shared", "other"))
        with pytest.raises(AlreadyExists, match=r'^token "shared" already exists$'):
            directory.create_service_account(
                "nas", create_group=True, token=new_token("SHARED", "nas", lookup_id="L2")
            )
        assert [a.name for a in directory.list_service_accounts()] == ["other"]
        assert directory.list_groups() == []

    def test_the_first_token_must_belong_to_the_new_account(self, directory):
        with pytest.raises(InvalidValue, match=r"must belong to it"):
            directory.create_service_account("nas", token=new_token("t", "someone-else"))


class TestReadAndList:
    def test_list_is_ordered_by_name_and_can_leave_internal_ones_out(self, directory):
        directory.create_service_account("zeta")
        directory.create_service_account("Alpha")
        directory.create_service_account("health", kind=AccountKind.INTERNAL_SERVICE_ACCOUNT)
        directory.create_user(NewUser("bob"))
        assert [a.name for a in directory.list_service_accounts()] == ["Alpha", "health", "zeta"]
        assert [a.name for a in directory.list_service_accounts(include_internal=False)] == [
            "Alpha",
            "zeta",
        ]

    def test_a_person_is_not_a_service_account(self, directory):
        directory.create_user(NewUser("alice"))
        with pytest.raises(NotFound, match=r'^service account "alice" not found$'):
            directory.get_service_account("alice")

    def test_credentials_carry_the_kind_and_no_password(self, directory):
        directory.create_user(NewUser("alice", password_hash="h"))
        nas, _ = directory.create_service_account("nas")
        directory.create_service_account("health", kind=AccountKind.INTERNAL_SERVICE_ACCOUNT)
        alice = directory.get_credentials("alice")
        machine = directory.get_credentials("NAS")
        internal = directory.get_credentials("health")
        assert (alice.kind, alice.password_hash) == ("user", "h")
        assert (machine.account_id, machine.name, machine.kind, machine.password_hash) == (
            nas.id,
            "nas",
            "service_account",
            None,
        )
        assert (internal.kind, internal.password_hash) == ("internal_service_account", None)


class TestPeoplesCommandsNeverReachAServiceAccount:
    @pytest.fixture
    def nas(self, directory):
        return directory.create_service_account("nas", create_group=True)[0]

    def test_delete_user_says_there_is_no_such_user(self, directory, nas):
        with pytest.raises(NotFound, match=r'^user "nas" not found$'):
            directory.delete_user("nas")
        assert directory.get_service_account("nas") == nas

    def test_set_password_hash_says_there_is_no_such_user(self, directory, nas):
        with pytest.raises(NotFound, match=r'^user "nas" not found$'):
            directory.set_password_hash("nas", "$2b$10$x")
        assert directory.get_credentials("nas").password_hash is None

    def test_get_user_list_users_and_search_users_do_not_see_it(self, directory, nas):
        with pytest.raises(NotFound, match=r'^user "nas" not found$'):
            directory.get_user("nas")
        assert directory.list_users() == []
        assert directory.search_users(TRUE, limit=10) == []
        assert directory.search_users(TRUE, limit=10, name="nas") == []
        assert directory.search_users(InGroup("nas"), limit=10) == []


class TestDelete:
    def test_delete_removes_its_tokens_and_memberships_and_touches_its_groups(self, directory):
        directory.create_service_account("nas", create_group=True, token=new_token("t1", "nas"))
        directory.create_token(new_token("t2", "nas"))
        directory.create_group("readers")
        directory.add_member("readers", "nas")
        directory.create_service_account("keep", token=new_token("t3", "keep"))
        before = directory.get_group("readers")
        audit = AuditEvent("admin", "control-socket", "service_account.delete", "nas")
        directory.delete_service_account("NAS", audit=audit)
        with pytest.raises(NotFound):
            directory.get_service_account("nas")
        assert [t.identifier for t in directory.list_tokens()] == ["t3"]
        assert directory.get_group("readers").member_names == ()
        assert directory.get_group("readers").modified > before.modified
        assert directory.get_group("nas").member_names == ()  # the group itself stays
        with directory.engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(memberships)).scalar() == 0
        assert [e for _, e in directory.list_audit()] == [audit]

    def test_cascades_are_done_by_the_database(self, directory):
        # Deleting the row directly (no store code) still removes tokens and
        # memberships: foreign keys are enforced on every backend, SQLite included.
        directory.create_service_account("nas", create_group=True, token=new_token("t1", "nas"))
        with directory.engine.begin() as conn:
            conn.execute(accounts.delete().where(accounts.c.name_lower == "nas"))
        assert count(directory, tokens) == 0
        assert count(directory, memberships) == 0
        assert count(directory, groups) == 1

    def test_an_internal_account_is_refused_unless_the_server_deletes_it(self, directory):
        directory.create_service_account("health", kind=AccountKind.INTERNAL_SERVICE_ACCOUNT)
        with pytest.raises(
            InvalidValue,
            match=r'^"health" is an internal service account managed by the server$',
        ):
            directory.delete_service_account("HEALTH")
        directory.get_service_account("health")
        directory.delete_service_account("health", allow_internal=True)
        assert directory.list_service_accounts() == []

    def test_deleting_a_person_or_nothing_is_not_found(self, directory):
        directory.create_user(NewUser("alice"))
        with pytest.raises(NotFound, match=r'^service account "alice" not found$'):
            directory.delete_service_account("alice")
        with pytest.raises(NotFound, match=r'^service account "ghost" not found$'):
            directory.delete_service_account("ghost")
        assert [u.name for u in directory.list_users()] == ["alice"]

    def test_a_failed_delete_writes_no_audit_event(self, directory):
        audit = AuditEvent("admin", "control-socket", "service_account.delete", "ghost")
        with pytest.raises(NotFound):
            directory.delete_service_account("ghost", audit=audit)
        assert directory.list_audit() == []


class TestSearch:
    @pytest.fixture
    def populated(self, directory, clock):
        directory.create_user(NewUser("alice"))  # in group "users"
        directory.create_service_account("nas", description="Synology in the rack")
        directory.create_service_account("ci", create_group=True)
        clock.now += timedelta(days=1)
        directory.create_service_account("health", kind=AccountKind.INTERNAL_SERVICE_ACCOUNT)
        directory.create_group("readers")
        directory.add_member("readers", "nas")
        directory.add_member("readers", "alice")
        return directory

    def names(self, directory, predicate, **kwargs):
        return [a.name for a in directory.search_service_accounts(predicate, limit=100, **kwargs)]

    def test_both_kinds_in_id_order_and_never_people(self, populated):
        assert self.names(populated, TRUE) == ["nas", "ci", "health"]

    def test_pages_resume_after_an_id(self, populated):
        first = populated.search_service_accounts(TRUE, limit=2)
        rest = populated.search_service_accounts(TRUE, limit=2, after_id=first[-1].id)
        assert [a.name for a in first + rest] == ["nas", "ci", "health"]

    def test_name_restricts_to_one_entry(self, populated):
        assert self.names(populated, TRUE, name="NAS") == ["nas"]
        assert self.names(populated, TRUE, name="alice") == []
        assert self.names(populated, TRUE, name="nas\x00") == []

    def test_fields_a_service_account_has(self, populated):
        health = populated.get_service_account("health")
        assert self.names(populated, FieldEquals("name", "CI")) == ["ci"]
        assert self.names(populated, FieldSubstrings("description", "syno", (), None)) == ["nas"]
        assert self.names(populated, FieldPresent("description")) == ["nas"]
        assert self.names(populated, Negation(FieldPresent("description"))) == ["ci", "health"]
        assert self.names(populated, FieldEquals("uuid", health.uuid.upper())) == ["health"]
        assert self.names(populated, FieldCompare("created", ">=", health.created)) == ["health"]

    def test_posix_fields_are_absent(self, populated):
        assert self.names(populated, FieldPresent("uid_number")) == []
        assert self.names(populated, FieldEquals("mail", "x")) == []
        assert self.names(populated, Negation(FieldEquals("uid_number", 0))) == [
            "nas",
            "ci",
            "health",
        ]

    def test_group_membership(self, populated):
        assert self.names(populated, InGroup("READERS")) == ["nas"]
        assert self.names(populated, InAnyGroup()) == ["nas", "ci"]
        assert self.names(populated, AllOf((InAnyGroup(), Negation(InGroup("ci"))))) == ["nas"]
        assert self.names(populated, HasMember("nas")) == []  # a group-only test

    def test_records_carry_their_groups(self, populated):
        by_name = {a.name: a for a in populated.search_service_accounts(TRUE, limit=10)}
        assert by_name["nas"].group_names == ("readers",)
        assert by_name["ci"].group_names == ("ci",)
        assert by_name["health"].group_names == ()

    def test_groups_list_members_of_every_kind(self, populated):
        assert populated.get_group("readers").member_names == ("alice", "nas")
        found = populated.search_groups(HasMember("NAS"), limit=10)
        assert [g.name for g in found] == ["readers"]
        assert [g.name for g in populated.search_groups(HasMember("ci"), limit=10)] == ["ci"]
