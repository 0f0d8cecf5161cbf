"""``ldapsrv service-account|token ...`` and ``ldapsrv health`` argv -> wire -> output.

The CLI's ``call`` is routed into the real registry over the in-memory store
(through a JSON round trip, as the socket would carry it), so these tests
check that the argv each row builds is accepted by the command's schema and
that each renderer copes with the real results.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from test_admin_service_accounts import NOW, Env
from test_admin_tokens import FakeRotator

from ldapsrv.admin import cli
from ldapsrv.admin.errors import AdminError
from ldapsrv.admin.ports import NewUser
from ldapsrv.auth.internal import ensure_health_account
from ldapsrv.auth.tokens import looks_like_token

SOCK = ["--socket", "/run/ldapsrv/control.sock"]


class Local:
    """The CLI's ``call`` answered in-process by the real command handlers."""

    def __init__(self, env: Env) -> None:
        self.env = env
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, path: Path, command: str, args: dict[str, Any], timeout: float) -> Any:
        args = json.loads(json.dumps(args))
        self.calls.append((command, args))
        return json.loads(json.dumps(self.env.call(command, **args)))


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> Env:
    made = Env(monkeypatch)
    made.store.create_user(NewUser(name="alice"))
    ensure_health_account(made.store, made.vault, 4, NOW)
    made.admin.context = replace(made.admin.context, rotator=FakeRotator(made))
    return made


@pytest.fixture
def local(env: Env, monkeypatch: pytest.MonkeyPatch) -> Local:
    fake = Local(env)
    monkeypatch.setattr(cli, "call", fake)
    return fake


def run(argv: list[str]) -> int:
    return cli.main([*argv, *SOCK])


def out_of(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    return captured.out + captured.err


# --- service-account ----------------------------------------------------------------


def test_create_prints_username_bind_dn_token_and_a_reminder(
    local: Local, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["service-account", "create", "nas-backup", "--create-group"]) == 0
    assert local.calls == [("service_account.create", {"name": "nas-backup", "create_group": True})]
    lines = capsys.readouterr().out.splitlines()
    fields = dict(
        line.split(":", 1) for line in lines if ":" in line and not line.startswith("Store")
    )
    assert fields["username"].strip() == "nas-backup"
    assert fields["bind DN"].strip() == "cn=nas-backup,ou=users,dc=example,dc=org"
    assert looks_like_token(fields["token"].strip())
    assert fields["token identifier"].strip() == "nas-backup"
    assert fields["expires"].strip() == "2026-02-24T12:00:00Z"
    assert fields["group"].strip() == "nas-backup"
    assert lines[-1].startswith("Store this token safely now")


def test_create_options_become_wire_arguments(local: Local) -> None:
    argv = ["service-account", "create", "nas", "--expires", "90d", "--description", "NAS"]
    assert run(argv) == 0
    assert local.calls[-1] == (
        "service_account.create",
        {"name": "nas", "expires": "90d", "description": "NAS"},
    )
    assert run(["service-account", "create", "qnap", "--no-expiring"]) == 0
    assert local.calls[-1] == ("service_account.create", {"name": "qnap", "expiring": False})


def test_expires_and_no_expiring_exclude_each_other(local: Local) -> None:
    with pytest.raises(SystemExit) as info:
        run(["service-account", "create", "nas", "--expires", "1d", "--no-expiring"])
    assert info.value.code == 2
    assert local.calls == []


def test_create_json_has_the_token_once(local: Local, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["service-account", "create", "nas", "--json"]) == 0
    created = json.loads(capsys.readouterr().out)
    assert looks_like_token(created["token"])
    assert created["dn"] == "cn=nas,ou=users,dc=example,dc=org"
    assert "secret_hash" not in created and "encrypted_value" not in created


def test_errors_go_to_stderr_with_exit_1(local: Local, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["service-account", "create", "alice"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("ldapsrv: error: ") and "alice" in err and "exist" in err
    assert run(["service-account", "create", "x", "--expires", "soon"]) == 1
    assert "argument 'expires'" in capsys.readouterr().err
    assert run(["service-account", "delete", "ldapsrv-health"]) == 1
    assert "internal service account" in capsys.readouterr().err


def test_list_show_delete(local: Local, capsys: pytest.CaptureFixture[str]) -> None:
    run(["service-account", "create", "nas", "--json"])
    value = json.loads(capsys.readouterr().out)["token"]
    assert run(["service-account", "list"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "NAME            KIND                      GROUPS  DESCRIPTION",
        "ldapsrv-health  internal_service_account          "
        "ldapsrv's own health check (managed by the server)",
        "nas             service_account",
    ]
    assert run(["service-account", "show", "nas"]) == 0
    shown = capsys.readouterr().out
    assert "kind:     service_account" in shown
    assert "tokens:\nIDENTIFIER  ACCOUNT  INTENT        EXPIRES" in shown
    assert value not in shown
    assert run(["service-account", "delete", "nas"]) == 0
    assert capsys.readouterr().out == "deleted service account nas (1 token(s) revoked)\n"


def test_an_empty_list_says_so(env: Env, local: Local, capsys: pytest.CaptureFixture[str]) -> None:
    env.store.delete_service_account("ldapsrv-health", allow_internal=True)
    assert run(["service-account", "list"]) == 0
    assert capsys.readouterr().out == "no service accounts\n"
    assert run(["token", "list"]) == 0
    assert capsys.readouterr().out == "no tokens\n"


# --- token ----------------------------------------------------------------------------


def test_token_create_sends_every_option(local: Local) -> None:
    argv = ["token", "create", "--identifier", "ci", "--user", "alice", "--intent", "api"]
    argv += ["--expires", "10m", "--description", "pipeline"]
    assert run(argv) == 0
    assert local.calls == [
        (
            "token.create",
            {
                "identifier": "ci",
                "user": "alice",
                "intent": "api",
                "expires": "10m",
                "description": "pipeline",
            },
        )
    ]


def test_token_create_defaults_to_an_app_password_and_prints_the_value(
    local: Local, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["token", "create", "--identifier", "laptop", "--user", "alice"]) == 0
    assert local.calls[0][1]["intent"] == "app_password"
    text = capsys.readouterr().out
    assert "identifier:" in text and "laptop" in text
    token_lines = [line for line in text.splitlines() if line.startswith("token: ")]
    assert len(token_lines) == 1 and looks_like_token(token_lines[0][len("token: ") :])
    assert "Store this token safely" in text


def test_token_create_needs_identifier_and_user(local: Local) -> None:
    for argv in (["token", "create", "--user", "alice"], ["token", "create", "--identifier", "x"]):
        with pytest.raises(SystemExit):
            run(argv)
    with pytest.raises(SystemExit):
        run(["token", "create", "--identifier", "x", "--user", "alice", "--intent", "ssh"])
    assert local.calls == []


def test_token_view_prints_only_the_value(local: Local, capsys: pytest.CaptureFixture[str]) -> None:
    run(["token", "create", "--identifier", "laptop", "--user", "alice", "--json"])
    value = json.loads(capsys.readouterr().out)["value"]
    assert run(["token", "view", "laptop"]) == 0
    assert capsys.readouterr().out == value + "\n"
    assert run(["token", "view", "laptop", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["value"] == value


def test_token_list_show_rotate_delete(local: Local, capsys: pytest.CaptureFixture[str]) -> None:
    run(["token", "create", "--identifier", "laptop", "--user", "alice", "--json"])
    value = json.loads(capsys.readouterr().out)["value"]
    assert run(["token", "list", "--user", "alice"]) == 0
    assert local.calls[-1] == ("token.list", {"user": "alice"})
    listed = capsys.readouterr().out.splitlines()
    heading = ["IDENTIFIER", "ACCOUNT", "INTENT", "EXPIRES", "LAST", "USED", "DESCRIPTION"]
    assert listed[0].split() == heading
    assert listed[1].split()[:4] == ["laptop", "alice", "app_password", "2026-03-01T12:00:00Z"]
    assert run(["token", "list"]) == 0
    assert "ldapsrv-health" in capsys.readouterr().out
    assert local.calls[-1] == ("token.list", {})
    assert run(["token", "show", "laptop"]) == 0
    shown = capsys.readouterr().out
    assert "intent:" in shown and value not in shown
    assert run(["token", "rotate", "laptop"]) == 0
    rotated = capsys.readouterr().out
    assert value not in rotated and "token: ldsrv_" in rotated
    assert run(["token", "delete", "laptop"]) == 0
    assert capsys.readouterr().out == "deleted token laptop\n"
    assert run(["token", "view", "laptop"]) == 1
    assert "laptop" in capsys.readouterr().err


def test_no_expiring_token(local: Local) -> None:
    argv = ["token", "create", "--identifier", "x", "--user", "alice", "--no-expiring"]
    assert run(argv) == 0
    assert local.calls[0][1] == {
        "identifier": "x",
        "user": "alice",
        "intent": "app_password",
        "expiring": False,
    }


def test_the_new_groups_are_listed_as_admin_commands() -> None:
    assert {"service-account", "token", "health"} <= cli.ADMIN_GROUPS
    parser = argparse.ArgumentParser(prog="ldapsrv")
    cli.add_admin_commands(parser.add_subparsers(dest="command", required=True))
    ns = parser.parse_args(["token", "view", "x"])
    assert cli.is_admin_command(ns) and ns.admin_command == "token.view"
    ns = parser.parse_args(["health", "--json"])
    assert cli.is_admin_command(ns) and ns.admin_command == cli.HEALTH


def test_health_is_run_with_the_socket_and_options(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[Path, bool, float]] = []

    def fake_run_health(path: Path, *, as_json: bool, timeout: float) -> int:
        seen.append((path, as_json, timeout))
        return 1

    monkeypatch.setattr("ldapsrv.health.run_health", fake_run_health)
    assert cli.main(["health", "--json", "--timeout", "3", *SOCK]) == 1
    assert seen == [(Path("/run/ldapsrv/control.sock"), True, 3.0)]


def test_health_with_an_unreadable_config_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["health", "--config", str(tmp_path / "missing.toml")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_an_unreachable_server_is_reported(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def down(path: Path, command: str, args: dict[str, Any], timeout: float) -> Any:
        raise AdminError("unavailable", f"cannot reach ldapsrv control socket at {path}")

    monkeypatch.setattr(cli, "call", down)
    assert run(["token", "list"]) == 1
    assert "cannot reach" in capsys.readouterr().err
