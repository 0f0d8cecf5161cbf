"""``ldapsrv user|group ...``: argv -> wire call -> output and exit status."""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path
from typing import Any

import pytest

from ldapsrv.admin import cli
from ldapsrv.admin.errors import AdminError

ALICE = {
    "name": "alice",
    "uuid": "0b5e…",
    "uid_number": 10000,
    "gid_number": 10000,
    "display_name": "Alice Liddell",
    "given_name": None,
    "surname": None,
    "mail": "alice@example.org",
    "home_directory": "/home/alice",
    "login_shell": "/bin/bash",
    "gecos": None,
    "groups": ["staff", "wheel"],
    "created": "2024-05-06T07:08:09Z",
    "modified": "2024-05-06T07:08:09Z",
    "dn": "cn=alice,ou=users,dc=example,dc=org",
}


class FakeServer:
    def __init__(self) -> None:
        self.calls: list[tuple[Path, str, dict[str, Any]]] = []
        self.result: Any = {"users": [], "groups": []}
        self.error: AdminError | None = None

    def __call__(self, path: Path, command: str, args: dict[str, Any], timeout: float) -> Any:
        self.calls.append((path, command, args))
        if self.error is not None:
            raise self.error
        return self.result


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> FakeServer:
    fake = FakeServer()
    monkeypatch.setattr(cli, "call", fake)
    return fake


def stdin_with(monkeypatch: pytest.MonkeyPatch, data: bytes) -> None:
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(data)))


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="ldapsrv")
    cli.add_admin_commands(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def run(argv: list[str]) -> int:
    return cli.main(argv)


SOCK = ["--socket", "/run/ldapsrv/control.sock"]


def test_user_add_sends_every_given_option(
    server: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    stdin_with(monkeypatch, b"  pass word \n")
    server.result = ALICE
    argv = ["user", "add", "alice", "--password-stdin", "--uid-number", "10000"]
    argv += ["--gid-number", "10001", "--mail", "a@x", "--display-name", "Alice L"]
    argv += ["--given-name", "Alice", "--surname", "Liddell", *SOCK]
    assert run(argv) == 0
    assert server.calls == [
        (
            Path("/run/ldapsrv/control.sock"),
            "user.add",
            {
                "name": "alice",
                "uid_number": 10000,
                "gid_number": 10001,
                "mail": "a@x",
                "display_name": "Alice L",
                "given_name": "Alice",
                "surname": "Liddell",
                "password": "  pass word ",
            },
        )
    ]


def test_user_add_without_options_sends_only_the_name(server: FakeServer) -> None:
    server.result = ALICE
    assert run(["user", "add", "alice", *SOCK]) == 0
    assert server.calls[0][1:] == ("user.add", {"name": "alice"})


@pytest.mark.parametrize(
    ("data", "password"),
    [(b"secret\n", "secret"), (b"secret\r\n", "secret"), (b"secret", "secret"),
     (b" sp ace \nsecond line\n", " sp ace "), ("pässwörd\n".encode(), "pässwörd")],
)  # fmt: skip
def test_password_stdin_strips_only_the_line_ending(
    server: FakeServer, monkeypatch: pytest.MonkeyPatch, data: bytes, password: str
) -> None:
    stdin_with(monkeypatch, data)
    assert run(["user", "set-password", "alice", "--password-stdin", *SOCK]) == 0
    assert server.calls[0][2] == {"name": "alice", "password": password}


def test_an_empty_password_on_stdin_is_an_error_before_any_call(
    server: FakeServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stdin_with(monkeypatch, b"\n")
    assert run(["user", "add", "alice", "--password-stdin", *SOCK]) == 1
    assert capsys.readouterr().err == "ldapsrv: error: no password given on stdin\n"
    assert server.calls == []


def test_a_password_is_never_accepted_on_the_command_line(
    server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        run(["user", "add", "alice", "--password", "hunter2", *SOCK])
    assert info.value.code == 2
    assert server.calls == []


def test_set_password_requires_password_stdin(server: FakeServer) -> None:
    with pytest.raises(SystemExit) as info:
        run(["user", "set-password", "alice", *SOCK])
    assert info.value.code == 2


def test_the_password_is_not_printed(
    server: FakeServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stdin_with(monkeypatch, b"hunter2\n")
    server.result = {"name": "alice", "password_set": True}
    run(["user", "set-password", "alice", "--password-stdin", *SOCK])
    out = capsys.readouterr()
    assert "hunter2" not in out.out + out.err
    assert out.out == "password set for alice\n"


def test_a_non_number_uid_is_a_usage_error(server: FakeServer) -> None:
    with pytest.raises(SystemExit) as info:
        run(["user", "add", "alice", "--uid-number", "ten", *SOCK])
    assert info.value.code == 2


def test_user_show_prints_key_value_lines_without_empty_fields(
    server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server.result = ALICE
    assert run(["user", "show", "alice", *SOCK]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "name:           alice"
    assert lines[1] == "dn:             cn=alice,ou=users,dc=example,dc=org"
    assert "groups:         staff, wheel" in lines
    assert not any(line.startswith(("given_name", "gecos")) for line in lines)


def test_json_prints_the_result_as_json(
    server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server.result = ALICE
    assert run(["user", "show", "alice", "--json", *SOCK]) == 0
    assert json.loads(capsys.readouterr().out) == ALICE


def test_user_list_prints_an_aligned_table(
    server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    bob = {**ALICE, "name": "bob", "uid_number": 10001, "display_name": None, "groups": []}
    server.result = {"users": [ALICE, bob]}
    assert run(["user", "list", *SOCK]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "NAME   UID    GID    DISPLAY NAME   MAIL               GROUPS",
        "alice  10000  10000  Alice Liddell  alice@example.org  staff, wheel",
        "bob    10001  10000                 alice@example.org",
    ]


def test_empty_lists_say_so(server: FakeServer, capsys: pytest.CaptureFixture[str]) -> None:
    server.result = {"groups": []}
    assert run(["group", "list", *SOCK]) == 0
    assert capsys.readouterr().out == "no groups\n"


def test_group_commands_map_to_their_wire_commands(server: FakeServer) -> None:
    server.result = {"name": "staff", "members": [], "groups": [], "deleted": True}
    run(["group", "add", "staff", "--gid-number", "30000", "--description", "All", *SOCK])
    run(["group", "add-member", "staff", "alice", *SOCK])
    run(["group", "remove-member", "staff", "alice", *SOCK])
    run(["group", "show", "staff", *SOCK])
    run(["group", "delete", "staff", *SOCK])
    run(["group", "list", *SOCK])
    assert [(c[1], c[2]) for c in server.calls] == [
        ("group.add", {"name": "staff", "gid_number": 30000, "description": "All"}),
        ("group.add_member", {"group": "staff", "user": "alice"}),
        ("group.remove_member", {"group": "staff", "user": "alice"}),
        ("group.show", {"name": "staff"}),
        ("group.delete", {"name": "staff"}),
        ("group.list", {}),
    ]


def test_membership_changes_print_one_line(
    server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server.result = {"name": "staff", "members": ["alice"]}
    run(["group", "add-member", "staff", "alice", *SOCK])
    assert capsys.readouterr().out == "added alice to group staff\n"


def test_a_server_error_is_printed_and_exits_1(
    server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server.error = AdminError("not_found", "no user named 'ghost'")
    assert run(["user", "show", "ghost", *SOCK]) == 1
    out = capsys.readouterr()
    assert out.err == "ldapsrv: error: no user named 'ghost'\n"
    assert out.out == ""


def test_the_socket_path_comes_from_the_config_file(server: FakeServer, tmp_path: Path) -> None:
    config = tmp_path / "ldapsrv.toml"
    config.write_text('[server]\ncontrol_socket = "/srv/ldap/admin.sock"\n')
    run(["user", "list", "--config", str(config)])
    assert server.calls[0][0] == Path("/srv/ldap/admin.sock")


def test_socket_wins_over_config(server: FakeServer, tmp_path: Path) -> None:
    config = tmp_path / "ldapsrv.toml"
    config.write_text('[server]\ncontrol_socket = "/srv/ldap/admin.sock"\n')
    run(["user", "list", "--config", str(config), "--socket", "/tmp/other.sock"])
    assert server.calls[0][0] == Path("/tmp/other.sock")


def test_without_socket_or_config_the_default_data_dir_is_used(
    server: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("LDAPSRV_SERVER_CONTROL_SOCKET", "LDAPSRV_SERVER_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    run(["user", "list"])
    assert server.calls[0][0] == Path("data/control.sock")


def test_an_unexpected_result_shape_is_an_error_not_a_traceback(
    server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server.result = {"something": "else"}
    assert run(["user", "list", *SOCK]) == 1
    assert "--json" in capsys.readouterr().err


def test_a_broken_config_file_is_an_error_naming_the_key(
    server: FakeServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "ldapsrv.toml"
    config.write_text("[server]\ncontrol_sokcet = 1\n")
    assert run(["user", "list", "--config", str(config)]) == 1
    assert "server.control_sokcet" in capsys.readouterr().err
    assert server.calls == []


def test_every_leaf_marks_the_namespace_for_dispatch() -> None:
    args = parse(["group", "add-member", "staff", "alice"])
    assert cli.is_admin_command(args)
    assert args.admin_command == "group.add_member"
    assert not cli.is_admin_command(argparse.Namespace(command="serve"))


def test_a_group_without_an_action_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as info:
        parse(["user"])
    assert info.value.code == 2


def test_every_cli_command_names_a_server_command() -> None:
    from ldapsrv.admin.commands import build_registry

    known = set(build_registry().names())
    parser = argparse.ArgumentParser()
    cli.add_admin_commands(parser.add_subparsers(dest="command"))
    wires = {c.wire for c in cli._COMMANDS}
    assert wires <= known
