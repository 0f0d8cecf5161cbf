"""service_account.* commands over the in-memory store, with real token values."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, ParamSpec, TypeVar

import bcrypt
import pytest
from twisted.internet.defer import Deferred

from ldapsrv.admin import issuing
from ldapsrv.admin.context import Caller
from ldapsrv.admin.ports import NewUser
from ldapsrv.admin.testing import AdminHarness, InMemoryDirectory, SyncBlocking, in_memory_context
from ldapsrv.auth.internal import HEALTH_ACCOUNT, ensure_health_account
from ldapsrv.auth.tokens import TOKEN_LENGTH, IssuedToken, looks_like_token
from ldapsrv.auth.vault import TokenVault
from ldapsrv.config import load_config
from ldapsrv.directory.records import AccountKind, TokenIntent

P = ParamSpec("P")
T = TypeVar("T")

NOW = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
CALLER = Caller("control-socket", uid=0, gid=0, pid=4242)
BASE = "dc=example,dc=org"


class GuardedBlocking(SyncBlocking):
    """Knows whether work is running "in the pool" (inside ``run``)."""

    def __init__(self) -> None:
        super().__init__()
        self.inside = False

    def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> Deferred[T]:
        self.inside = True
        try:
            return super().run(fn, *args, **kwargs)
        finally:
            self.inside = False


class Env:
    def __init__(self, monkeypatch: pytest.MonkeyPatch, viewable: bool = True) -> None:
        self.config = load_config(
            None,
            {"security.bcrypt_cost": 4, "tokens.bcrypt_cost": 4, "tokens.viewable": viewable},
            environ={},
        )
        self.blocking = GuardedBlocking()
        self.store = InMemoryDirectory(clock=lambda: NOW)
        self.vault = TokenVault.generate()
        self.issued: list[IssuedToken] = []
        context = in_memory_context(
            self.config, self.store, self.blocking, vault=self.vault, clock=lambda: NOW
        )
        self.admin = AdminHarness(context, CALLER)
        real_issue = issuing.issue_token

        def guarded_issue(cost: int, vault: TokenVault | None) -> IssuedToken:
            assert self.blocking.inside, "bcrypt must run in the thread pool"
            assert cost == 4, "the tokens.bcrypt_cost setting"
            issued = real_issue(cost, vault)
            self.issued.append(issued)
            return issued

        monkeypatch.setattr(issuing, "issue_token", guarded_issue)

    def call(self, command: str, **args: Any) -> Any:
        return self.admin.call(command, **args)

    def error(self, command: str, **args: Any) -> Any:
        return self.admin.error(command, **args)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> Env:
    return Env(monkeypatch)


def test_create_returns_the_bind_dn_and_a_working_token_once(env: Env) -> None:
    result = env.call("service_account.create", name="nas-backup")
    assert result["name"] == "nas-backup"
    assert result["dn"] == f"cn=nas-backup,ou=users,{BASE}"
    assert result["kind"] == "service_account"
    assert result["token_identifier"] == "nas-backup"
    assert result["intent"] == "app_password"
    assert result["expiring"] is True
    assert result["expires"] == "2026-02-24T12:00:00Z"  # 360 days after NOW
    assert result["group"] is None
    value = result["token"]
    assert looks_like_token(value) and len(value) == TOKEN_LENGTH
    assert "ldapsrv token view nas-backup" in result["notice"]
    assert "safely" in result["notice"]

    stored = env.store.get_token("nas-backup")
    assert bcrypt.checkpw(value.encode(), stored.secret_hash.encode())
    assert stored.encrypted_value is not None
    assert env.vault.decrypt(stored.encrypted_value, stored.lookup_id) == value
    assert stored.intent is TokenIntent.APP_PASSWORD
    assert stored.lifetime_seconds == 360 * 86400
    assert stored.account_kind is AccountKind.SERVICE_ACCOUNT
    # the result carries the value but no stored secret
    assert stored.secret_hash not in repr(result)
    assert stored.encrypted_value not in repr(result)
    assert not {"secret_hash", "encrypted_value", "lookup_id"} & set(result)


def test_create_is_one_thread_hop(env: Env) -> None:
    before = env.blocking.calls
    env.call("service_account.create", name="nas")
    assert env.blocking.calls == before + 1


def test_create_with_group_makes_a_group_with_the_account_as_member(env: Env) -> None:
    result = env.call("service_account.create", name="sync", create_group=True)
    assert result["group"] == "sync"
    assert result["groups"] == ["sync"]
    assert env.store.get_group("sync").member_names == ("sync",)


def test_create_writes_one_audit_event_without_the_token(env: Env) -> None:
    result = env.call("service_account.create", name="nas", create_group=True, expires="30d")
    [event] = env.store.audit
    assert event.action == "service_account.create"
    assert event.actor == CALLER.describe()
    assert event.channel == "control-socket"
    assert event.target == "service account nas"
    assert dict(event.details) == {
        "create_group": "true",
        "expires": "2025-03-31T12:00:00Z",
        "token": "nas",
    }
    assert result["token"] not in repr(event)


@pytest.mark.parametrize(
    ("expires", "expected", "lifetime"),
    [
        ("90d", "2025-05-30T12:00:00Z", 90 * 86400),
        ("12h", "2025-03-02T00:00:00Z", 12 * 3600),
        ("2025-06-01", "2025-06-02T00:00:00Z", None),
        ("2025-04-01T00:00:00+02:00", "2025-03-31T22:00:00Z", None),
    ],
)
def test_create_with_an_expiry(env: Env, expires: str, expected: str, lifetime: int | None) -> None:
    result = env.call("service_account.create", name="nas", expires=expires)
    assert result["expires"] == expected
    stored = env.store.get_token("nas")
    assert stored.expires_at == datetime.fromisoformat(expected)
    assert stored.expires_at is not None
    assert stored.lifetime_seconds == int((stored.expires_at - NOW).total_seconds())
    if lifetime is not None:
        assert stored.lifetime_seconds == lifetime


def test_create_without_expiry(env: Env) -> None:
    result = env.call("service_account.create", name="nas", expiring=False)
    assert (result["expiring"], result["expires"]) == (False, None)
    stored = env.store.get_token("nas")
    assert (stored.expiring, stored.expires_at, stored.lifetime_seconds) == (False, None, None)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ({"expires": "tomorrow"}, "cannot read expiry 'tomorrow'"),
        ({"expires": "2020-01-01"}, "in the past"),
        ({"expires": "0d"}, "in the past"),
        ({"expires": "90d", "expiring": False}, "cannot be combined with expiring=false"),
    ],
)
def test_a_bad_expiry_is_invalid_names_the_argument_and_creates_nothing(
    env: Env, args: dict[str, Any], fragment: str
) -> None:
    error = env.error("service_account.create", name="nas", **args)
    assert error.kind == "invalid"
    assert error.message.startswith("argument 'expires': ")
    assert fragment in error.message
    assert env.store.list_service_accounts() == []
    assert env.issued == []  # refused before any bcrypt


def test_a_taken_name_is_already_exists_whatever_the_case_and_kind(env: Env) -> None:
    env.store.create_user(NewUser(name="Alice"))
    env.call("service_account.create", name="nas")
    for name in ("alice", "NAS"):
        error = env.error("service_account.create", name=name)
        assert error.kind == "already_exists"
        assert name.lower() in error.message.lower()
    assert [t.identifier for t in env.store.list_tokens()] == ["nas"]


def test_a_taken_group_name_creates_nothing_at_all(env: Env) -> None:
    env.store.create_group("sync")
    error = env.error("service_account.create", name="sync", create_group=True)
    assert error.kind == "already_exists" and "group" in error.message
    assert env.store.list_service_accounts() == []
    assert env.store.list_tokens() == []
    assert env.store.audit == []


def test_an_invalid_name_is_refused_before_any_bcrypt(env: Env) -> None:
    error = env.error("service_account.create", name="has space")
    assert error.kind == "invalid" and "has space" in error.message
    assert env.issued == []
    error = env.error("service_account.create", name="")
    assert error.kind == "invalid" and "'name'" in error.message


def test_the_first_token_gets_a_free_identifier_when_the_name_is_taken(env: Env) -> None:
    env.store.create_user(NewUser(name="alice"))
    env.call("token.create", identifier="nas", user="alice")
    result = env.call("service_account.create", name="nas")
    assert result["token_identifier"] == "nas-2"
    assert env.store.get_token("nas-2").account_name == "nas"


def test_a_150_character_name_gets_an_identifier_the_store_accepts(env: Env) -> None:
    name = "n" * 150
    result = env.call("service_account.create", name=name)
    assert result["token_identifier"] == "n" * 100
    assert result["dn"] == f"cn={name},ou=users,{BASE}"


def test_with_viewable_copies_off_the_value_is_only_in_the_result(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = Env(monkeypatch, viewable=False)
    result = env.call("service_account.create", name="nas")
    assert env.store.get_token("nas").encrypted_value is None
    assert "will not be shown again" in result["notice"]
    assert looks_like_token(result["token"])


def test_internal_accounts_cannot_be_created(env: Env) -> None:
    error = env.error("service_account.create", name="x", kind="internal_service_account")
    assert error.kind == "invalid" and "unknown argument 'kind'" in error.message


def test_list_and_show_include_internal_accounts_with_their_kind(env: Env) -> None:
    ensure_health_account(env.store, env.vault, 4, NOW)
    env.call("service_account.create", name="nas", description="the NAS")
    listed = env.call("service_account.list")["service_accounts"]
    assert [(a["name"], a["kind"]) for a in listed] == [
        (HEALTH_ACCOUNT, "internal_service_account"),
        ("nas", "service_account"),
    ]
    assert listed[1]["description"] == "the NAS"
    shown = env.call("service_account.show", name="NAS")
    assert shown["name"] == "nas" and shown["dn"] == f"cn=nas,ou=users,{BASE}"
    [token] = shown["tokens"]
    assert token["identifier"] == "nas" and token["viewable"] is True
    assert "value" not in token
    assert not {"secret_hash", "encrypted_value", "lookup_id"} & set(token)
    health = env.call("service_account.show", name=HEALTH_ACCOUNT)
    assert health["kind"] == "internal_service_account"
    assert health["tokens"][0]["viewable"] is False  # never through token view


def test_show_of_a_person_or_nobody_is_not_found(env: Env) -> None:
    env.store.create_user(NewUser(name="alice"))
    assert env.error("service_account.show", name="alice").kind == "not_found"
    assert env.error("service_account.show", name="ghost").kind == "not_found"


def test_delete_revokes_tokens_and_memberships_and_audits(env: Env) -> None:
    env.store.create_group("backup")
    env.call("service_account.create", name="nas", create_group=True)
    env.store.add_member("backup", "nas")
    env.call("token.create", identifier="nas-api", user="nas", intent="api")
    result = env.call("service_account.delete", name="nas")
    assert result == {"name": "nas", "deleted": True, "tokens_revoked": 2}
    assert env.store.list_tokens() == []
    assert env.store.get_group("backup").member_names == ()
    assert env.store.get_group("nas").member_names == ()
    assert env.error("service_account.show", name="nas").kind == "not_found"
    event = env.store.audit[-1]
    assert (event.action, event.target, event.actor) == (
        "service_account.delete",
        "service account nas",
        CALLER.describe(),
    )
    assert env.error("service_account.delete", name="nas").kind == "not_found"


def test_an_internal_account_cannot_be_deleted(env: Env) -> None:
    ensure_health_account(env.store, env.vault, 4, NOW)
    error = env.error("service_account.delete", name="LDAPSRV-HEALTH")
    assert error.kind == "forbidden"
    assert "internal service account" in error.message and "deleted" in error.message
    assert env.store.get_service_account(HEALTH_ACCOUNT).kind is (
        AccountKind.INTERNAL_SERVICE_ACCOUNT
    )
    assert env.store.get_token("ldapsrv-health") is not None


def test_a_person_is_not_deleted_through_service_account_delete(env: Env) -> None:
    env.store.create_user(NewUser(name="alice"))
    assert env.error("service_account.delete", name="alice").kind == "not_found"
    assert env.store.get_user("alice").name == "alice"


def test_expiry_counts_from_whole_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    env = Env(monkeypatch)
    env.admin.context = in_memory_context(
        env.config,
        env.store,
        env.blocking,
        vault=env.vault,
        clock=lambda: NOW + timedelta(microseconds=999_999),
    )
    result = env.call("service_account.create", name="nas", expires="1d")
    assert result["expires"] == "2025-03-02T12:00:00Z"
    assert env.store.get_token("nas").lifetime_seconds == 86400


def test_setting_a_password_on_a_service_account_is_refused_clearly(env: Env) -> None:
    env.call("service_account.create", name="nas")
    error = env.error("user.set_password", name="nas", password="a-New-Password-1")
    assert error.kind == "forbidden"
    assert "service account" in error.message and "token" in error.message
    assert "a-New-Password-1" not in error.message
    assert env.store.password_hashes.get("nas") is None
    assert env.error("user.set_password", name="ghost", password="x").kind == "not_found"


def test_people_commands_point_at_service_account_commands(env: Env) -> None:
    env.call("service_account.create", name="nas")
    for command, hint in (
        ("user.show", "ldapsrv service-account show nas"),
        ("user.delete", "ldapsrv service-account delete nas"),
    ):
        error = env.error(command, name="nas")
        assert error.kind == "not_found"
        assert "is a service account, not a person" in error.message and hint in error.message
    assert env.store.get_service_account("nas").name == "nas"
    assert "ghost" in env.error("user.show", name="ghost").message


def test_a_fractional_expiry_is_kept_to_the_second(env: Env) -> None:
    result = env.call("service_account.create", name="nas", expires="2025-03-02T12:00:00.75Z")
    assert result["expires"] == "2025-03-02T12:00:00Z"
    assert env.store.get_token("nas").lifetime_seconds == 86400
    error = env.error("service_account.create", name="nas2", expires="2025-03-01T12:00:00.5Z")
    assert (error.kind, error.message) == ("invalid", "argument 'expires': must be in the future")
