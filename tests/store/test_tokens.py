"""Tokens in the store: identifiers, lookups, rotation as a compare-and-swap
(exactly one winner across servers), expiry queries, hooks, last use."""

from __future__ import annotations

import dataclasses
import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event

from ldapsrv.auth.ports import NewSecret, NewToken
from ldapsrv.directory.records import AccountKind, AuditEvent, TokenIntent
from ldapsrv.errors import AlreadyExists, InvalidValue, NotFound
from ldapsrv.store.directory import NewUser, SqlDirectory
from ldapsrv.store.engine import make_engine

from .conftest import GID_RANGE, UID_RANGE

T0 = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
YEAR = 365 * 86400


def spec(identifier: str, account: str = "nas", **changes: object) -> NewToken:
    base = NewToken(
        identifier=identifier,
        account_name=account,
        intent=TokenIntent.APP_PASSWORD,
        lookup_id="L" + identifier.replace(".", ""),
        secret_hash=f"$2b$10$hash-{identifier}",
        encrypted_value=f"enc-{identifier}",
        expiring=True,
        expires_at=T0 + timedelta(seconds=YEAR),
        lifetime_seconds=YEAR,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def secret(n: int, *, expires_at: datetime | None = T0 + timedelta(seconds=2 * YEAR)) -> NewSecret:
    return NewSecret(
        lookup_id=f"R{n}",
        secret_hash=f"$2b$10$rotated-{n}",
        encrypted_value=f"enc-rotated-{n}",
        expires_at=expires_at,
        rotated_at=T0 + timedelta(seconds=YEAR),
        hook_pending=True,
    )


@pytest.fixture
def nas(directory):
    return directory.create_service_account("nas")[0]


class TestCreateAndRead:
    def test_every_field_is_stored_and_read_back(self, directory, nas, clock):
        created = directory.create_token(spec("nas-backup", "NAS", description="Hyper Backup"))
        assert created == directory.get_token("NAS-BACKUP")
        assert created == directory.find_token("Lnas-backup")
        assert (created.identifier, created.account_name, created.account_kind) == (
            "nas-backup",
            "nas",
            AccountKind.SERVICE_ACCOUNT,
        )
        assert (created.intent, created.description, created.lookup_id) == (
            TokenIntent.APP_PASSWORD,
            "Hyper Backup",
            "Lnas-backup",
        )
        assert (created.secret_hash, created.encrypted_value) == (
            "$2b$10$hash-nas-backup",
            "enc-nas-backup",
        )
        assert (created.expiring, created.expires_at, created.lifetime_seconds) == (
            True,
            T0 + timedelta(seconds=YEAR),
            YEAR,
        )
        assert created.created == clock.now
        assert (created.last_used_at, created.last_used_address, created.rotated_at) == (
            None,
            None,
            None,
        )
        assert (created.generation, created.hook_pending) == (1, False)

    def test_a_person_may_have_an_app_password(self, directory):
        directory.create_user(NewUser("alice"))
        token = directory.create_token(spec("alice-mail", "alice"))
        assert token.account_kind is AccountKind.USER

    def test_a_non_expiring_api_token_without_viewable_copy(self, directory, nas):
        token = directory.create_token(
            spec(
                "ci",
                intent=TokenIntent.API,
                expiring=False,
                expires_at=None,
                lifetime_seconds=None,
                encrypted_value=None,
            )
        )
        assert (token.intent, token.expiring, token.expires_at, token.encrypted_value) == (
            TokenIntent.API,
            False,
            None,
            None,
        )

    def test_identifiers_are_unique_case_insensitively(self, directory, nas):
        directory.create_token(spec("NAS-1"))
        with pytest.raises(AlreadyExists, match=r'^token "NAS-1" already exists$'):
            directory.create_token(spec("nas-1", lookup_id="Lother"))

    def test_a_taken_lookup_id_asks_the_caller_to_draw_another(self, directory, nas):
        directory.create_token(spec("a", lookup_id="Lsame"))
        with pytest.raises(AlreadyExists, match=r"lookup id is already in use"):
            directory.create_token(spec("b", lookup_id="Lsame"))

    def test_the_account_must_exist(self, directory):
        with pytest.raises(NotFound, match=r'^account "ghost" not found$'):
            directory.create_token(spec("t", "ghost"))

    @pytest.mark.parametrize("identifier", ["a", "A.b-c_9", "x" * 100])
    def test_valid_identifiers(self, directory, nas, identifier):
        assert directory.create_token(spec(identifier, lookup_id="Lx")).identifier == identifier

    @pytest.mark.parametrize("identifier", ["", "x" * 101, "has space", "a/b", "é", "a\x00"])
    def test_invalid_identifiers_are_refused(self, directory, nas, identifier):
        with pytest.raises(InvalidValue, match=r"token identifier must be 1-100 characters"):
            directory.create_token(spec(identifier, lookup_id="Lx"))
        assert directory.list_tokens() == []

    @pytest.mark.parametrize(
        ("changes", "message"),
        [
            ({"intent": "ldap"}, "token intent must be app_password or api"),
            ({"expires_at": None}, "an expiring token needs an expiry"),
            ({"expiring": False}, "a non-expiring one must have none"),
            ({"lifetime_seconds": 0}, "token lifetime must be positive"),
            ({"lookup_id": "has space"}, "token lookup id"),
            ({"lookup_id": "x" * 33}, "token lookup id"),
            ({"secret_hash": ""}, "token hash must not be empty"),
            ({"description": "a\nb"}, "description must not contain control"),
            ({"expires_at": datetime(2025, 1, 1)}, "token expiry must carry a time zone"),
        ],
    )
    def test_invalid_fields_are_refused_naming_the_rule(self, directory, nas, changes, message):
        with pytest.raises(InvalidValue, match=message):
            directory.create_token(spec("t", **changes))

    def test_missing_tokens(self, directory, nas):
        with pytest.raises(NotFound, match=r'^token "nope" not found$'):
            directory.get_token("nope")
        assert directory.find_token("Lnope") is None
        assert directory.find_token("L\x00") is None
        with pytest.raises(NotFound, match=r'^token "nope" not found$'):
            directory.delete_token("nope")

    def test_find_token_is_one_query(self, directory, nas):
        directory.create_token(spec("t"))
        statements: list[str] = []

        def record(conn, cursor, statement, *args):
            statements.append(statement)

        event.listen(directory.engine, "before_cursor_execute", record)
        try:
            assert directory.find_token("Lt") is not None
        finally:
            event.remove(directory.engine, "before_cursor_execute", record)
        assert len([s for s in statements if s.lstrip().upper().startswith("SELECT")]) == 1

    def test_list_tokens_by_identifier_all_or_of_one_account(self, directory, nas):
        directory.create_user(NewUser("alice"))
        directory.create_token(spec("zz"))
        directory.create_token(spec("Aa", "alice"))
        directory.create_token(spec("mm"))
        assert [t.identifier for t in directory.list_tokens()] == ["Aa", "mm", "zz"]
        assert [t.identifier for t in directory.list_tokens("NAS")] == ["mm", "zz"]
        with pytest.raises(NotFound, match=r'^account "ghost" not found$'):
            directory.list_tokens("ghost")

    def test_delete_revokes_at_once_and_is_audited(self, directory, nas):
        directory.create_token(spec("t"))
        audit = AuditEvent("admin", "control-socket", "token.delete", "token t")
        directory.delete_token("T", audit=audit)
        assert directory.find_token("Lt") is None
        assert [e for _, e in directory.list_audit()] == [audit]


class TestRotation:
    def test_replace_secret_writes_the_new_secret_and_the_next_generation(self, directory, nas):
        old = directory.create_token(spec("t", description="keep me"))
        audit = AuditEvent("ldapsrv (rotation)", "server", "token.rotate", "token t")
        new = directory.replace_secret("T", 1, secret(1), audit=audit)
        assert new is not None
        assert (new.lookup_id, new.secret_hash, new.encrypted_value) == (
            "R1",
            "$2b$10$rotated-1",
            "enc-rotated-1",
        )
        assert (new.generation, new.hook_pending) == (2, True)
        assert (new.expires_at, new.rotated_at) == (
            T0 + timedelta(seconds=2 * YEAR),
            T0 + timedelta(seconds=YEAR),
        )
        # Same settings: only the secret and its dates change.
        assert (new.id, new.identifier, new.description, new.lifetime_seconds, new.created) == (
            old.id,
            old.identifier,
            old.description,
            old.lifetime_seconds,
            old.created,
        )
        assert directory.find_token(old.lookup_id) is None  # the old value stops at once
        assert directory.find_token("R1") == new
        assert [e for _, e in directory.list_audit()] == [audit]

    def test_a_stale_generation_changes_nothing_and_writes_no_audit(self, directory, nas):
        directory.create_token(spec("t"))
        directory.replace_secret("t", 1, secret(1))
        audit = AuditEvent("ldapsrv (rotation)", "server", "token.rotate", "token t")
        assert directory.replace_secret("t", 1, secret(2), audit=audit) is None
        assert directory.get_token("t").lookup_id == "R1"
        assert directory.list_audit() == []

    def test_a_missing_token_is_not_found(self, directory, nas):
        with pytest.raises(NotFound, match=r'^token "t" not found$'):
            directory.replace_secret("t", 1, secret(1))

    def test_the_new_secret_keeps_the_tokens_expiring_setting(self, directory, nas):
        directory.create_token(spec("t"))
        with pytest.raises(InvalidValue, match=r"is expiring: its new secret must have an expiry"):
            directory.replace_secret("t", 1, secret(1, expires_at=None))

    def test_a_lookup_id_of_another_token_is_refused(self, directory, nas):
        directory.create_token(spec("a"))
        directory.create_token(spec("b"))
        with pytest.raises(AlreadyExists, match=r"lookup id is already in use"):
            directory.replace_secret("b", 1, dataclasses.replace(secret(1), lookup_id="La"))


def test_two_servers_rotating_the_same_token_at_once_rotate_it_exactly_once(database_url):
    """Four threads on each of two engines (two servers) all try to rotate
    generation 1: exactly one wins, the others see None, and the row holds the
    winner's secret at generation 2."""
    engines = [make_engine(database_url, pool_size=4) for _ in range(2)]
    directories = [SqlDirectory(e, uid_range=UID_RANGE, gid_range=GID_RANGE) for e in engines]
    try:
        directories[0].create_service_account("nas", token=spec("t"))
        threads = 8
        start = threading.Barrier(threads)
        results: list[object] = [None] * threads

        def rotate(n: int) -> None:
            try:
                start.wait()
                results[n] = directories[n % 2].replace_secret("t", 1, secret(n))
            except BaseException as exc:  # re-raised in the main thread
                results[n] = exc

        workers = [threading.Thread(target=rotate, args=(n,)) for n in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=60)
        errors = [r for r in results if isinstance(r, BaseException)]
        assert not errors, errors
        winners = [n for n, r in enumerate(results) if r is not None]
        assert len(winners) == 1
        final = directories[1].get_token("t")
        assert (final.generation, final.lookup_id) == (2, f"R{winners[0]}")
    finally:
        for engine in engines:
            engine.dispose()


class TestExpiry:
    def test_tokens_due_are_the_expiring_ones_at_or_before_now_soonest_first(self, directory, nas):
        directory.create_token(spec("later", expires_at=T0 + timedelta(seconds=1)))
        directory.create_token(spec("exact", expires_at=T0))
        directory.create_token(spec("earlier", expires_at=T0 - timedelta(days=1)))
        directory.create_token(spec("never", expiring=False, expires_at=None))
        assert [t.identifier for t in directory.tokens_due(T0)] == ["earlier", "exact"]
        assert [t.identifier for t in directory.tokens_due(T0, limit=1)] == ["earlier"]
        assert directory.tokens_due(T0 - timedelta(days=2)) == []
        assert directory.tokens_due(T0, limit=0) == []

    def test_next_expiry_is_the_earliest_expiry_of_expiring_tokens(self, directory, nas):
        assert directory.next_expiry() is None
        directory.create_token(spec("never", expiring=False, expires_at=None))
        assert directory.next_expiry() is None
        directory.create_token(spec("b", expires_at=T0 + timedelta(hours=1)))
        directory.create_token(spec("a", expires_at=T0 + timedelta(microseconds=5)))
        assert directory.next_expiry() == T0 + timedelta(microseconds=5)

    def test_expiry_instants_keep_microseconds(self, directory, nas):
        # "Fails at its expiry instant": the stored instant must be the exact one.
        instant = T0 + timedelta(microseconds=123456)
        directory.create_token(spec("t", expires_at=instant))
        assert directory.get_token("t").expires_at == instant
        assert directory.tokens_due(instant - timedelta(microseconds=1)) == []
        assert [t.identifier for t in directory.tokens_due(instant)] == ["t"]


class TestHooks:
    def test_pending_hooks_are_listed_until_cleared_for_their_generation(self, directory, nas):
        directory.create_token(spec("a"))
        directory.create_token(spec("b"))
        directory.replace_secret("a", 1, secret(1))
        directory.replace_secret("b", 1, secret(2))
        assert [t.identifier for t in directory.tokens_with_pending_hook()] == ["a", "b"]
        directory.clear_hook_pending("A", 2)
        assert [t.identifier for t in directory.tokens_with_pending_hook()] == ["b"]

    def test_clearing_an_older_generation_leaves_the_newer_hook_pending(self, directory, nas):
        directory.create_token(spec("a"))
        directory.replace_secret("a", 1, secret(1))
        directory.replace_secret("a", 2, dataclasses.replace(secret(2), lookup_id="R2b"))
        directory.clear_hook_pending("a", 2)
        assert [t.generation for t in directory.tokens_with_pending_hook()] == [3]
        directory.clear_hook_pending("ghost", 1)  # nothing to clear is not an error


class TestLastUse:
    def test_first_use_is_recorded_with_its_address(self, directory, nas):
        directory.create_token(spec("t"))
        directory.record_token_use("Lt", T0, "192.0.2.7")
        token = directory.get_token("t")
        assert (token.last_used_at, token.last_used_address) == (T0, "192.0.2.7")

    def test_uses_within_a_minute_are_not_written(self, directory, nas):
        directory.create_token(spec("t"))
        directory.record_token_use("Lt", T0, "192.0.2.7")
        writes: list[str] = []

        def record(conn, cursor, statement, *args):
            if statement.lstrip().upper().startswith("UPDATE"):
                writes.append(statement)

        event.listen(directory.engine, "before_cursor_execute", record)
        try:
            directory.record_token_use("Lt", T0 + timedelta(seconds=59), "192.0.2.8")
        finally:
            event.remove(directory.engine, "before_cursor_execute", record)
        assert writes == []
        assert directory.get_token("t").last_used_at == T0
        directory.record_token_use("Lt", T0 + timedelta(seconds=60), "192.0.2.8")
        token = directory.get_token("t")
        assert (token.last_used_at, token.last_used_address) == (
            T0 + timedelta(seconds=60),
            "192.0.2.8",
        )

    def test_unknown_lookup_ids_and_long_addresses_do_not_fail(self, directory, nas):
        directory.create_token(spec("t"))
        directory.record_token_use("Lnope", T0, None)
        directory.record_token_use("L\x00", T0, None)
        directory.record_token_use("Lt", T0, "f" * 100)
        assert directory.get_token("t").last_used_address == "f" * 64
