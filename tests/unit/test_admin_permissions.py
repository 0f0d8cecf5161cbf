"""permission.*, user.disable/enable, audit.list and the audit events of every
directory command, over the in-memory store; and their CLI rows."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ldapsrv.admin import cli
from ldapsrv.admin.commands_audit import parse_since
from ldapsrv.admin.context import Caller
from ldapsrv.admin.errors import AdminError
from ldapsrv.admin.ports import NewUser
from ldapsrv.admin.testing import AdminHarness, InMemoryDirectory, SyncBlocking, in_memory_context
from ldapsrv.auth.ports import NewToken
from ldapsrv.config import load_config
from ldapsrv.directory.records import AccountKind, TokenIntent

NOW = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
CALLER = Caller("control-socket", uid=0, gid=0, pid=4242)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(clock: Clock) -> InMemoryDirectory:
    store = InMemoryDirectory(clock=clock)
    store.create_user(NewUser("alice"))
    store.create_group("staff")
    store.create_group("nas-users")
    store.create_service_account("nas")
    store.create_service_account("health", kind=AccountKind.INTERNAL_SERVICE_ACCOUNT)
    return store


@pytest.fixture
def admin(store: InMemoryDirectory, clock: Clock) -> AdminHarness:
    config = load_config(None, {"security.bcrypt_cost": 4}, environ={})
    return AdminHarness(in_memory_context(config, store, SyncBlocking(), clock=clock), CALLER)


class TestPermissionCommands:
    def test_grant_list_revoke(self, admin: AdminHarness, store: InMemoryDirectory) -> None:
        granted = admin.call("permission.grant", permission="search", user="nas", scope="nas-users")
        assert {k: granted[k] for k in ("permission", "user", "group", "scope")} == {
            "permission": "search",
            "user": "nas",
            "group": None,
            "scope": "nas-users",
        }
        admin.call("permission.grant", permission="search_full_directory", group="staff")
        listed = admin.call("permission.list")
        assert [g["permission"] for g in listed["grants"]] == ["search", "search_full_directory"]
        assert "effective" not in listed
        revoked = admin.call(
            "permission.revoke", permission="search", user="nas", scope="nas-users"
        )
        assert revoked["revoked"] is True
        assert admin.call("permission.list", user="nas")["grants"] == []

    def test_list_for_a_user_shows_what_it_inherits(self, admin: AdminHarness) -> None:
        admin.call("group.add_member", group="staff", user="alice")
        admin.call("permission.grant", permission="search_full_directory", group="staff")
        admin.call("permission.grant", permission="reset_password", user="alice", scope="staff")
        admin.call("permission.grant", permission="manage_tokens", group="staff")
        listed = admin.call("permission.list", user="alice")
        assert [g["permission"] for g in listed["grants"]] == ["reset_password"]
        assert listed["effective"] == {
            "search_full_directory": True,
            "search_scopes": [],
            "reset_password_everyone": False,
            "reset_password_scopes": ["staff"],
            "management": ["manage_tokens"],
        }

    def test_a_management_permission_takes_no_scope(self, admin: AdminHarness) -> None:
        err = admin.error(
            "permission.grant", permission="manage_groups", user="alice", scope="staff"
        )
        assert err.kind == "invalid"
        assert "manage_groups" in err.message

    def test_internal_service_accounts_are_refused_with_the_rule(self, admin: AdminHarness) -> None:
        err = admin.error("permission.grant", permission="search_full_directory", user="health")
        assert err.kind == "forbidden"
        assert "grant it to a group the account is in" in err.message

    @pytest.mark.parametrize(
        ("args", "kind", "words"),
        [
            ({"permission": "search_full_directory"}, "invalid", "'user' (an account) or 'group'"),
            (
                {"permission": "search_full_directory", "user": "nas", "group": "staff"},
                "invalid",
                "not both",
            ),
            ({"permission": "sudo", "user": "nas"}, "invalid", "must be one of"),
            ({"permission": "search", "user": "nas"}, "invalid", "needs a scope group"),
            (
                {"permission": "search_full_directory", "user": "nas", "scope": "staff"},
                "invalid",
                "takes no scope group",
            ),
            ({"permission": "search_full_directory", "user": "ghost"}, "not_found", "ghost"),
            ({"permission": "search", "user": "nas", "scope": "nope"}, "not_found", "nope"),
        ],
    )
    def test_errors_name_what_was_wrong(
        self, admin: AdminHarness, args: dict[str, Any], kind: str, words: str
    ) -> None:
        err = admin.error("permission.grant", **args)
        assert (err.kind, words in err.message) == (kind, True), err.message

    def test_a_duplicate_and_a_missing_grant(self, admin: AdminHarness) -> None:
        admin.call("permission.grant", permission="search_full_directory", user="nas")
        dup = admin.error("permission.grant", permission="search_full_directory", user="nas")
        assert dup.kind == "already_exists"
        missing = admin.error("permission.revoke", permission="reset_password", user="nas")
        assert missing.kind == "not_found"

    def test_without_a_permission_store_the_commands_are_unavailable(
        self, store: InMemoryDirectory
    ) -> None:
        config = load_config(None, {}, environ={})
        context = in_memory_context(config, store, SyncBlocking(), permissions=None, audit_log=None)
        admin = AdminHarness(context, CALLER)
        assert admin.error("permission.list").kind == "unavailable"
        assert admin.error("audit.list").kind == "unavailable"


class TestDisable:
    def test_disable_and_enable(self, admin: AdminHarness, store: InMemoryDirectory) -> None:
        assert admin.call("user.disable", name="alice")["disabled"] is True
        assert store.get_user("alice").disabled
        assert admin.call("user.enable", name="ALICE")["disabled"] is False
        assert not store.get_user("alice").disabled

    def test_a_service_account_is_pointed_at_its_tokens(self, admin: AdminHarness) -> None:
        err = admin.error("user.disable", name="nas")
        assert err.kind == "not_found"
        assert "token delete" in err.message
        assert admin.error("user.enable", name="ghost").kind == "not_found"


class TestAuditEvents:
    def test_every_admin_change_is_audited_without_secrets(
        self, admin: AdminHarness, store: InMemoryDirectory
    ) -> None:
        store.audit.clear()
        store.audit_times.clear()
        admin.call("user.add", name="bob", password="hunter2-secret")
        admin.call("user.set_password", name="bob", password="another-secret")
        admin.call("group.add", name="ops")
        admin.call("group.add_member", group="ops", user="bob")
        admin.call("group.remove_member", group="ops", user="bob")
        admin.call("user.disable", name="bob")
        admin.call("user.enable", name="bob")
        admin.call("permission.grant", permission="search", group="ops", scope="staff")
        admin.call("permission.revoke", permission="search", group="ops", scope="staff")
        admin.call("group.delete", name="ops")
        admin.call("user.delete", name="bob")
        assert [(e.action, e.target) for e in store.audit] == [
            ("user.add", "user bob"),
            ("user.set_password", "user bob"),
            ("group.add", "group ops"),
            ("group.add_member", "group ops"),
            ("group.remove_member", "group ops"),
            ("user.disable", "user bob"),
            ("user.enable", "user bob"),
            ("permission.grant", "group ops"),
            ("permission.revoke", "group ops"),
            ("group.delete", "group ops"),
            ("user.delete", "user bob"),
        ]
        assert all(
            e.actor == CALLER.describe() and e.channel == "control-socket" for e in store.audit
        )
        assert dict(store.audit[0].details) == {"password_set": "true"}
        assert dict(store.audit[3].details) == {"member": "bob"}
        assert dict(store.audit[7].details) == {"permission": "search", "scope": "staff"}
        trail = repr(store.audit)
        assert "secret" not in trail and "$2" not in trail

    def test_a_refused_change_is_not_audited(
        self, admin: AdminHarness, store: InMemoryDirectory
    ) -> None:
        store.audit.clear()
        store.audit_times.clear()
        admin.error("group.add", name="staff")
        admin.error("permission.grant", permission="search_full_directory", user="health")
        assert store.audit == []


class TestAuditList:
    def test_events_since_a_duration_ago_and_the_token_use_summary(
        self, admin: AdminHarness, store: InMemoryDirectory, clock: Clock
    ) -> None:
        store.audit.clear()
        store.audit_times.clear()
        clock.now = NOW - timedelta(days=3)
        admin.call("group.add", name="old")
        clock.now = NOW - timedelta(minutes=30)
        admin.call("group.add", name="new")
        clock.now = NOW
        store.create_token(
            NewToken(
                identifier="nas-1",
                account_name="nas",
                intent=TokenIntent.APP_PASSWORD,
                lookup_id="L1",
                secret_hash="$2b$04$x",
                encrypted_value=None,
                expiring=False,
                expires_at=None,
                lifetime_seconds=None,
            )
        )
        store.record_token_use("L1", NOW - timedelta(minutes=5), "192.0.2.7")
        result = admin.call("audit.list", since="1h")
        assert result["since"] == "2025-03-01T11:00:00Z"
        assert [(e["action"], e["target"]) for e in result["events"]] == [
            ("group.add", "group new")
        ]
        assert result["token_use"] == [
            {
                "identifier": "nas-1",
                "account": "nas",
                "last_used": "2025-03-01T11:55:00Z",
                "last_used_address": "192.0.2.7",
            }
        ]
        assert len(admin.call("audit.list")["events"]) == 2
        assert len(admin.call("audit.list", limit=1)["events"]) == 1
        assert "secret" not in json.dumps(result) and "$2b" not in json.dumps(result)

    def test_a_bad_since_names_the_forms(self, admin: AdminHarness) -> None:
        err = admin.error("audit.list", since="last tuesday")
        assert err.kind == "invalid"
        assert "argument 'since'" in err.message and "7d" in err.message

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("1h", NOW - timedelta(hours=1)),
            ("7d", NOW - timedelta(days=7)),
            ("2025-02-01", datetime(2025, 2, 1, tzinfo=UTC)),
            ("2025-02-01T10:00:00", datetime(2025, 2, 1, 10, tzinfo=UTC)),
            ("2025-02-01T10:00:00Z", datetime(2025, 2, 1, 10, tzinfo=UTC)),
            ("2025-02-01T11:00:00+01:00", datetime(2025, 2, 1, 10, tzinfo=UTC)),
        ],
    )
    def test_since_forms(self, text: str, expected: datetime) -> None:
        assert parse_since(text, NOW) == expected


# --- CLI -------------------------------------------------------------------------------


class FakeServer:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.result: Any = {}

    def __call__(self, path: Path, command: str, args: dict[str, Any], timeout: float) -> Any:
        self.calls.append((command, args))
        return self.result


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> FakeServer:
    fake = FakeServer()
    monkeypatch.setattr(cli, "call", fake)
    return fake


SOCK = ["--socket", "/run/ldapsrv/control.sock"]
GRANT = {
    "id": 3,
    "permission": "search",
    "user": None,
    "group": "nas-svc",
    "scope": "nas-users",
    "created": "2025-03-01T12:00:00Z",
}


def test_cli_permission_grant(server: FakeServer, capsys: pytest.CaptureFixture[str]) -> None:
    server.result = GRANT
    argv = ["permission", "grant", "search", "--group", "nas-svc", "--scope", "nas-users"]
    assert cli.main([*argv, *SOCK]) == 0
    assert server.calls == [
        ("permission.grant", {"permission": "search", "group": "nas-svc", "scope": "nas-users"})
    ]
    assert capsys.readouterr().out.strip() == (
        "granted search scoped to group nas-users to group nas-svc"
    )


def test_cli_permission_revoke_and_list(
    server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server.result = {**GRANT, "revoked": True}
    assert cli.main(["permission", "revoke", "search", "--user", "nas", "--scope", "x", *SOCK]) == 0
    assert server.calls[-1] == (
        "permission.revoke",
        {"permission": "search", "user": "nas", "scope": "x"},
    )
    server.result = {
        "grants": [GRANT],
        "effective": {
            "search_full_directory": False,
            "search_scopes": ["nas-users"],
            "reset_password_everyone": False,
            "reset_password_scopes": [],
        },
    }
    capsys.readouterr()
    assert cli.main(["permission", "list", "--user", "nas", *SOCK]) == 0
    assert server.calls[-1] == ("permission.list", {"user": "nas"})
    out = capsys.readouterr().out
    assert "PERMISSION" in out and "nas-users" in out and "in effect" in out
    assert cli.main(["permission", "list", *SOCK]) == 0
    assert server.calls[-1] == ("permission.list", {})


def test_cli_grant_needs_exactly_one_holder(server: FakeServer) -> None:
    with pytest.raises(SystemExit):
        cli.main(["permission", "grant", "search_full_directory", *SOCK])
    with pytest.raises(SystemExit):
        cli.main(["permission", "grant", "search_full_directory", "--user", "a", "--group", "b"])
    with pytest.raises(SystemExit):
        cli.main(["permission", "grant", "sudo", "--user", "a", *SOCK])
    assert server.calls == []


def test_cli_user_disable_enable(server: FakeServer, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["user", "disable", "alice", *SOCK]) == 0
    assert cli.main(["user", "enable", "alice", *SOCK]) == 0
    assert server.calls == [("user.disable", {"name": "alice"}), ("user.enable", {"name": "alice"})]
    assert capsys.readouterr().out.splitlines() == ["disabled user alice", "enabled user alice"]


def test_cli_audit(server: FakeServer, capsys: pytest.CaptureFixture[str]) -> None:
    server.result = {
        "since": "2025-03-01T11:00:00Z",
        "events": [
            {
                "at": "2025-03-01T11:30:00Z",
                "actor": "control-socket uid=0 gid=0 pid=1",
                "channel": "control-socket",
                "action": "permission.grant",
                "target": "group ops",
                "details": {"permission": "search", "scope": "staff"},
            }
        ],
        "token_use": [
            {"identifier": "nas-1", "account": "nas", "last_used": None, "last_used_address": None}
        ],
    }
    assert cli.main(["audit", "--since", "1h", "--limit", "50", *SOCK]) == 0
    assert server.calls == [("audit.list", {"since": "1h", "limit": 50})]
    out = capsys.readouterr().out
    assert "permission.grant" in out and "permission=search, scope=staff" in out
    assert "token use:" in out and "never" in out
    assert cli.main(["audit", "--json", *SOCK]) == 0
    assert json.loads(capsys.readouterr().out)["token_use"][0]["identifier"] == "nas-1"


def test_the_new_top_level_commands_are_admin_groups() -> None:
    assert {"permission", "audit"} <= cli.ADMIN_GROUPS


def test_admin_error_is_reported(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def refuse(path: Path, command: str, args: dict[str, Any], timeout: float) -> Any:
        raise AdminError("forbidden", "'health' is an internal service account")

    monkeypatch.setattr(cli, "call", refuse)
    assert (
        cli.main(["permission", "grant", "search_full_directory", "--user", "health", *SOCK]) == 1
    )
    assert "internal service account" in capsys.readouterr().err
