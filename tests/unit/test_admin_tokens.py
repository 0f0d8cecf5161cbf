"""token.* commands over the in-memory store: values shown only where they must be,
internal accounts out of reach, every change audited, nothing secret in a log."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from datetime import timedelta
from typing import Any

import bcrypt
import pytest
from test_admin_service_accounts import CALLER, NOW, Env
from twisted.internet.testing import StringTransport
from twisted.logger import LogEvent, eventAsText, globalLogPublisher

from ldapsrv.admin.commands import build_registry
from ldapsrv.admin.ports import NewUser
from ldapsrv.admin.protocol import ControlFactory
from ldapsrv.auth.internal import HEALTH_TOKEN, ensure_health_account
from ldapsrv.auth.ports import NewSecret
from ldapsrv.auth.tokens import IssuedToken, issue_token, looks_like_token
from ldapsrv.auth.vault import TokenVault
from ldapsrv.directory.records import AuditEvent, TokenRecord


class FakeRotator:
    """Rotates like ``ldapsrv.auth.rotation.Rotator``: new value, same lifetime,
    audit event with the given actor; remembers who asked."""

    def __init__(self, env: Env) -> None:
        self.env = env
        self.calls: list[tuple[str, str, str]] = []

    def rotate(
        self, identifier: str, *, actor: str, channel: str
    ) -> tuple[TokenRecord, IssuedToken]:
        assert self.env.blocking.inside, "rotation (bcrypt, SQL) must run in the thread pool"
        self.calls.append((identifier, actor, channel))
        record = self.env.store.get_token(identifier)
        issued = issue_token(4, self.env.vault)
        expires = NOW + timedelta(seconds=record.lifetime_seconds or 0) if record.expiring else None
        secret = NewSecret(
            issued.lookup_id, issued.secret_hash, issued.encrypted_value, expires, NOW, False
        )
        event = AuditEvent(actor, channel, "token.rotate", f"token {identifier}")
        updated = self.env.store.replace_secret(identifier, record.generation, secret, event)
        assert updated is not None
        return updated, issued


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> Env:
    made = Env(monkeypatch)
    made.store.create_user(NewUser(name="alice"))
    made.call("service_account.create", name="nas")
    ensure_health_account(made.store, made.vault, 4, NOW)
    made.store.audit.clear()
    return made


def with_rotator(env: Env) -> FakeRotator:
    rotator = FakeRotator(env)
    env.admin.context = replace(env.admin.context, rotator=rotator)
    return rotator


SECRET_KEYS = {"secret_hash", "encrypted_value", "lookup_id"}


def test_create_an_app_password_for_a_person(env: Env) -> None:
    result = env.call("token.create", identifier="alice-laptop", user="alice", description="mail")
    value = result["value"]
    assert looks_like_token(value)
    assert result["identifier"] == "alice-laptop"
    assert (result["account"], result["account_kind"]) == ("alice", "user")
    assert result["intent"] == "app_password"
    assert result["expires"] == "2026-03-01T12:00:00Z"  # one year by default
    assert result["lifetime_seconds"] == 365 * 86400
    assert result["description"] == "mail"
    assert result["viewable"] is True
    assert "ldapsrv token view alice-laptop" in result["notice"]
    assert not SECRET_KEYS & set(result)
    stored = env.store.get_token("alice-laptop")
    assert bcrypt.checkpw(value.encode(), stored.secret_hash.encode())
    assert stored.secret_hash not in json.dumps(result)


def test_create_an_api_token_lives_thirty_minutes_by_default(env: Env) -> None:
    result = env.call("token.create", identifier="ci", user="nas", intent="api")
    assert result["intent"] == "api"
    assert result["expires"] == "2025-03-01T12:30:00Z"
    assert result["account_kind"] == "service_account"


def test_create_with_expiry_options(env: Env) -> None:
    never = env.call("token.create", identifier="a", user="nas", expiring=False)
    assert (never["expiring"], never["expires"], never["lifetime_seconds"]) == (False, None, None)
    dated = env.call("token.create", identifier="b", user="nas", expires="2025-12-31")
    assert dated["expires"] == "2026-01-01T00:00:00Z"
    error = env.error("token.create", identifier="c", user="nas", expires="soon")
    assert error.kind == "invalid" and error.message.startswith("argument 'expires': ")


def test_create_writes_an_audit_event_without_the_value(env: Env) -> None:
    result = env.call("token.create", identifier="t1", user="alice", intent="api", expires="1h")
    [event] = env.store.audit
    assert (event.action, event.target, event.actor, event.channel) == (
        "token.create",
        "token t1",
        CALLER.describe(),
        "control-socket",
    )
    assert dict(event.details) == {
        "account": "alice",
        "expires": "2025-03-01T13:00:00Z",
        "intent": "api",
    }
    assert result["value"] not in repr(env.store.audit)


@pytest.mark.parametrize(
    ("args", "kind", "fragment"),
    [
        ({"identifier": "x", "user": "ghost"}, "not_found", "ghost"),
        ({"identifier": "nas", "user": "alice"}, "already_exists", "nas"),
        ({"identifier": "NAS", "user": "alice"}, "already_exists", "NAS"),
        ({"identifier": "x", "user": "alice", "intent": "ssh"}, "invalid", "'intent'"),
        ({"identifier": "has space", "user": "alice"}, "invalid", "identifier"),
        ({"identifier": "", "user": "alice"}, "invalid", "'identifier'"),
        ({"identifier": "x"}, "invalid", "'user'"),
    ],
)
def test_create_errors_are_named(env: Env, args: dict[str, Any], kind: str, fragment: str) -> None:
    error = env.error("token.create", **args)
    assert error.kind == kind
    assert fragment in error.message
    assert env.store.audit == []


def test_internal_accounts_cannot_be_given_tokens(env: Env) -> None:
    issued = len(env.issued)
    error = env.error("token.create", identifier="mine", user="ldapsrv-health")
    assert error.kind == "forbidden"
    assert "internal service account" in error.message
    assert len(env.issued) == issued  # refused before any bcrypt
    assert [t.identifier for t in env.store.list_tokens("ldapsrv-health")] == [HEALTH_TOKEN]


def test_list_all_or_of_one_account_without_values(env: Env) -> None:
    created = env.call("token.create", identifier="alice-phone", user="alice")
    everything = env.call("token.list")["tokens"]
    assert [t["identifier"] for t in everything] == ["alice-phone", "ldapsrv-health", "nas"]
    assert [t["identifier"] for t in env.call("token.list", user="ALICE")["tokens"]] == [
        "alice-phone"
    ]
    text = json.dumps(everything)
    assert created["value"] not in text
    assert "$2b$" not in text and "v1:" not in text
    for token in everything:
        assert "value" not in token and not SECRET_KEYS & set(token)
    assert env.error("token.list", user="ghost").kind == "not_found"


def test_show_gives_metadata_only(env: Env) -> None:
    shown = env.call("token.show", identifier="nas")
    assert shown["identifier"] == "nas" and shown["account"] == "nas"
    assert "value" not in shown and not SECRET_KEYS & set(shown)
    assert env.error("token.show", identifier="ghost").kind == "not_found"


def test_view_shows_the_current_value_and_is_audited(env: Env) -> None:
    created = env.call("token.create", identifier="alice-phone", user="alice")
    viewed = env.call("token.view", identifier="ALICE-PHONE")
    assert viewed["value"] == created["value"]
    assert viewed["identifier"] == "alice-phone"
    assert not SECRET_KEYS & set(viewed)
    event = env.store.audit[-1]
    assert (event.action, event.target, event.actor) == (
        "token.view",
        "token alice-phone",
        CALLER.describe(),
    )
    assert created["value"] not in repr(event)


def test_view_of_an_unknown_token_is_not_found(env: Env) -> None:
    error = env.error("token.view", identifier="ghost")
    assert error.kind == "not_found" and "ghost" in error.message


def test_view_of_the_health_token_is_forbidden(env: Env) -> None:
    error = env.error("token.view", identifier=HEALTH_TOKEN)
    assert error.kind == "forbidden"
    assert "internal service account" in error.message and "viewed" in error.message
    assert env.store.audit == []


def test_view_with_viewable_copies_off_explains_the_value_was_shown_once(env: Env) -> None:
    env.admin.context = replace(
        env.admin.context, config=replace(env.config, tokens_viewable=False)
    )
    error = env.error("token.view", identifier="nas")
    assert error.kind == "forbidden"
    assert "shown only once" in error.message and "tokens.viewable" in error.message
    assert "ldapsrv token rotate nas" in error.message


def test_view_of_a_token_made_while_copies_were_off(monkeypatch: pytest.MonkeyPatch) -> None:
    off = Env(monkeypatch, viewable=False)
    off.call("service_account.create", name="nas")
    off.admin.context = replace(off.admin.context, config=replace(off.config, tokens_viewable=True))
    error = off.error("token.view", identifier="nas")
    assert error.kind == "forbidden"
    assert "shown only once" in error.message and "no encrypted copy" in error.message
    assert off.call("token.show", identifier="nas")["viewable"] is False


def test_view_with_another_key_is_unavailable_and_says_why(env: Env) -> None:
    env.admin.context = replace(env.admin.context, vault=TokenVault.generate())
    error = env.error("token.view", identifier="nas")
    assert error.kind == "unavailable"
    assert "cannot be decrypted" in error.message and "rotate" in error.message


def test_delete_revokes_and_audits(env: Env) -> None:
    env.call("token.create", identifier="alice-phone", user="alice")
    env.store.audit.clear()
    assert env.call("token.delete", identifier="Alice-Phone") == {
        "identifier": "alice-phone",
        "account": "alice",
        "deleted": True,
    }
    assert env.error("token.show", identifier="alice-phone").kind == "not_found"
    [event] = env.store.audit
    assert (event.action, event.target, dict(event.details)) == (
        "token.delete",
        "token alice-phone",
        {"account": "alice"},
    )
    assert env.error("token.delete", identifier="alice-phone").kind == "not_found"


def test_the_health_token_cannot_be_deleted_or_rotated(env: Env) -> None:
    rotator = with_rotator(env)
    for command, done in (("token.delete", "deleted"), ("token.rotate", "rotated")):
        error = env.error(command, identifier=HEALTH_TOKEN)
        assert error.kind == "forbidden" and done in error.message
    assert rotator.calls == []
    assert env.store.get_token(HEALTH_TOKEN).generation == 1


def test_rotate_goes_through_the_rotator_and_returns_the_new_value(env: Env) -> None:
    rotator = with_rotator(env)
    before = env.call("token.view", identifier="nas")["value"]
    rotated = env.call("token.rotate", identifier="NAS")
    assert rotator.calls == [("nas", CALLER.describe(), "control-socket")]
    assert looks_like_token(rotated["value"]) and rotated["value"] != before
    assert rotated["identifier"] == "nas" and rotated["rotated"] == "2025-03-01T12:00:00Z"
    assert not SECRET_KEYS & set(rotated)
    assert env.call("token.view", identifier="nas")["value"] == rotated["value"]
    assert env.store.audit[-2].action == "token.rotate"


def test_rotate_without_a_rotator_is_unavailable(env: Env) -> None:
    error = env.error("token.rotate", identifier="nas")
    assert error.kind == "unavailable" and "rotation" in error.message


def test_rotate_of_an_unknown_token_is_not_found(env: Env) -> None:
    with_rotator(env)
    assert env.error("token.rotate", identifier="ghost").kind == "not_found"


def test_rotate_with_the_real_rotator(env: Env) -> None:
    rotation = pytest.importorskip("ldapsrv.auth.rotation")
    rotator = rotation.Rotator(env.store, 4, env.vault, lambda: NOW + timedelta(days=1))
    env.admin.context = replace(env.admin.context, rotator=rotator)
    old = env.store.get_token("nas")
    rotated = env.call("token.rotate", identifier="nas")
    new = env.store.get_token("nas")
    assert new.generation == old.generation + 1
    assert bcrypt.checkpw(rotated["value"].encode(), new.secret_hash.encode())
    assert rotated["expires"] == "2026-02-25T12:00:00Z"  # 360 days from the rotation
    assert any(e.action == "token.rotate" and e.actor == CALLER.describe() for e in env.store.audit)


def test_the_value_is_only_in_create_view_and_rotate_results(env: Env) -> None:
    with_rotator(env)
    results: dict[str, Any] = {}
    created = env.call("token.create", identifier="t", user="nas")
    results["token.create"] = created
    results["token.list"] = env.call("token.list")
    results["token.list user"] = env.call("token.list", user="nas")
    results["token.show"] = env.call("token.show", identifier="t")
    results["service_account.show"] = env.call("service_account.show", name="nas")
    results["service_account.list"] = env.call("service_account.list")
    results["token.view"] = env.call("token.view", identifier="t")
    with_value = {name for name, r in results.items() if created["value"] in json.dumps(r)}
    assert with_value == {"token.create", "token.view"}
    rotated = env.call("token.rotate", identifier="t")
    assert rotated["value"] not in json.dumps(env.call("token.list"))
    assert rotated["value"] not in json.dumps(env.call("token.show", identifier="t"))
    assert created["value"] not in repr(env.store.audit)
    assert rotated["value"] not in repr(env.store.audit)


# --- no secret in any log line ---------------------------------------------------


def test_no_token_value_reaches_a_log_line(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    """Through the real wire protocol (which logs every command), with stdlib
    logging at DEBUG: the values are in the responses and nowhere else."""
    with_rotator(env)
    caplog.set_level(logging.DEBUG)
    events: list[LogEvent] = []
    globalLogPublisher.addObserver(events.append)
    try:
        transport = StringTransport()
        protocol = ControlFactory(build_registry(), env.admin.context).buildProtocol(None)
        protocol.makeConnection(transport)
        requests = [
            ("service_account.create", {"name": "printer"}),
            ("token.create", {"identifier": "t", "user": "printer"}),
            ("token.view", {"identifier": "t"}),
            ("token.rotate", {"identifier": "t"}),
            ("token.view", {"identifier": HEALTH_TOKEN}),
            ("token.list", {}),
            ("health.credentials", {}),
        ]
        for number, (command, args) in enumerate(requests):
            line = json.dumps({"id": number, "command": command, "args": args})
            protocol.dataReceived(line.encode() + b"\n")
    finally:
        globalLogPublisher.removeObserver(events.append)
    responses = [json.loads(line) for line in transport.value().splitlines()]
    assert [r["ok"] for r in responses] == [True, True, True, True, False, True, True]
    secrets = [
        responses[0]["result"]["token"],
        responses[1]["result"]["value"],
        responses[3]["result"]["value"],
        responses[6]["result"]["token"],
    ]
    logged = "\n".join(eventAsText(e) or "" for e in events) + caplog.text
    assert "token.view" in logged and "health.credentials" in logged
    for secret in secrets:
        assert secret not in logged
