"""The control socket end to end: real processes, a real Unix socket, the real CLI.

Most tests run ``python -m ldapsrv.admin.testing`` (the control-socket server
over an in-memory directory: starts in a fraction of a second) so they can
kill, restart and race servers freely; one runs the whole ``ldapsrv serve``.
Every wait is bounded; only processes started here are stopped, by PID.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ldapsrv import __version__
from ldapsrv.admin.client import call
from ldapsrv.admin.errors import AdminError

TIMEOUT = 30.0
PASSWORD = "Tr0ub4dor & 3 with spaces "


@dataclass
class ControlServer:
    process: subprocess.Popen[bytes]
    socket: Path
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def log_sections(self) -> list[tuple[str, str]]:
        return [(f"control server {self.socket}", self.log_text()[-20000:])]

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            os.kill(self.process.pid, sig)
        try:
            return self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.kill(self.process.pid, signal.SIGKILL)
            return self.process.wait(timeout=15)


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A short directory: Unix socket paths must stay under 108 bytes."""
    path = Path(tempfile.mkdtemp(prefix="ldapsrv-adm-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def start(short_dir: Path) -> Iterator[Callable[..., ControlServer]]:
    started: list[ControlServer] = []

    def launch(sock: Path, *, wait: bool = True, mode: str = "0600") -> ControlServer:
        log = short_dir / f"server{len(started)}.log"
        argv = [sys.executable, "-m", "ldapsrv.admin.testing", "--socket", str(sock)]
        with log.open("wb") as err:
            process = subprocess.Popen(
                [*argv, "--mode", mode],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        server = ControlServer(process, sock, log)
        started.append(server)
        if wait:
            wait_until_serving(server)
        return server

    yield launch
    for server in started:
        server.stop(signal.SIGKILL)


def wait_until_serving(server: ControlServer) -> None:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(f"control server exited {server.process.returncode}:\n{server.log_text()}")
        try:
            call(server.socket, "server.ping", timeout=2)
            return
        except AdminError:
            time.sleep(0.05)
    pytest.fail(f"control server not serving after {TIMEOUT}s:\n{server.log_text()}")


def ctl(sock: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ldapsrv.admin.cli", *args, "--socket", str(sock)],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


def ctl_json(sock: Path, *args: str, stdin: str | None = None) -> Any:
    result = ctl(sock, *args, "--json", stdin=stdin)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_the_socket_is_0600_in_a_private_directory(
    start: Callable[..., ControlServer], short_dir: Path
) -> None:
    server = start(short_dir / "run" / "control.sock")
    assert stat.S_ISSOCK(os.stat(server.socket).st_mode)
    assert stat.S_IMODE(os.stat(server.socket).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(server.socket.parent).st_mode) == 0o700


def test_the_cli_populates_the_directory_through_the_socket(
    start: Callable[..., ControlServer], short_dir: Path
) -> None:
    sock = start(short_dir / "control.sock").socket
    user = ctl_json(sock, "user", "add", "alice", "--password-stdin", "--mail", "a@example.org",
                    stdin=PASSWORD + "\n")  # fmt: skip
    assert user["name"] == "alice" and user["mail"] == "a@example.org"
    assert user["dn"] == "cn=alice,ou=users,dc=example,dc=org"
    assert ctl_json(sock, "group", "add", "staff", "--gid-number", "30000")["gid_number"] == 30000
    assert ctl(sock, "group", "add-member", "staff", "alice").stdout == (
        "added alice to group staff\n"
    )
    assert ctl_json(sock, "user", "show", "alice")["groups"] == ["staff"]
    listing = ctl(sock, "user", "list")
    assert listing.returncode == 0
    assert listing.stdout.splitlines()[0].split() == [
        "NAME", "UID", "GID", "DISPLAY", "NAME", "MAIL", "GROUPS"
    ]  # fmt: skip
    assert "alice" in listing.stdout.splitlines()[1]
    assert ctl(sock, "group", "remove-member", "staff", "alice").returncode == 0
    assert ctl(sock, "user", "delete", "alice").stdout == "deleted user alice\n"
    assert ctl_json(sock, "user", "list") == {"users": []}


def test_the_password_is_never_in_the_server_log(
    start: Callable[..., ControlServer], short_dir: Path
) -> None:
    server = start(short_dir / "control.sock")
    assert ctl(server.socket, "user", "add", "bob", "--password-stdin",
               stdin=PASSWORD + "\n").returncode == 0  # fmt: skip
    assert ctl(server.socket, "user", "set-password", "bob", "--password-stdin",
               stdin=PASSWORD + "2\n").returncode == 0  # fmt: skip
    server.stop()
    log = server.log_text()
    assert "user.add" in log and "user.set_password" in log
    assert PASSWORD.strip() not in log


def test_errors_exit_1_with_the_server_message(
    start: Callable[..., ControlServer], short_dir: Path
) -> None:
    sock = start(short_dir / "control.sock").socket
    result = ctl(sock, "user", "show", "ghost")
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == "ldapsrv: error: no user named 'ghost'\n"
    result = ctl(sock, "user", "add", "bad name")
    assert result.returncode == 1 and "ldapsrv: error: " in result.stderr


def test_the_cli_says_when_no_server_is_running(short_dir: Path) -> None:
    sock = short_dir / "nothing.sock"
    result = ctl(sock, "user", "list")
    assert result.returncode == 1
    assert result.stderr == (
        f"ldapsrv: error: cannot reach ldapsrv control socket at {sock}: is the server running?\n"
    )


def test_a_second_server_on_the_same_socket_refuses_to_start(
    start: Callable[..., ControlServer], short_dir: Path
) -> None:
    first = start(short_dir / "control.sock")
    second = start(first.socket, wait=False)
    assert second.process.wait(timeout=TIMEOUT) == 1
    assert "another ldapsrv server is already running" in second.log_text()
    assert call(first.socket, "server.ping")["pong"] is True


def test_a_clean_stop_removes_the_socket_and_its_lock(
    start: Callable[..., ControlServer], short_dir: Path
) -> None:
    server = start(short_dir / "control.sock")
    assert server.stop(signal.SIGTERM) == 0
    assert not server.socket.exists()
    assert not Path(f"{server.socket}.lock").exists()


def test_after_a_crash_the_stale_socket_is_replaced(
    start: Callable[..., ControlServer], short_dir: Path
) -> None:
    crashed = start(short_dir / "control.sock")
    crashed.stop(signal.SIGKILL)
    assert crashed.socket.exists(), "a killed server leaves its socket file"
    with pytest.raises(AdminError, match="is the server running"):
        call(crashed.socket, "server.ping")
    restarted = start(crashed.socket)
    assert call(restarted.socket, "server.ping")["pong"] is True
    assert "removed stale control socket" in restarted.log_text()


def test_the_connection_survives_bad_requests_and_closes_on_an_oversized_one(
    start: Callable[..., ControlServer], short_dir: Path
) -> None:
    sock_path = start(short_dir / "control.sock").socket
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(TIMEOUT)
        conn.connect(str(sock_path))
        reader = conn.makefile("rb")
        conn.sendall(b"this is not json\n")
        assert json.loads(reader.readline())["error"]["kind"] == "bad_request"
        conn.sendall(b'{"id": 5, "command": "server.ping"}\n')
        assert json.loads(reader.readline()) == {
            "id": 5,
            "ok": True,
            "result": {"pong": True, "version": __version__},
        }
        conn.sendall(b"x" * (70 * 1024))
        refusal = json.loads(reader.readline())
        assert refusal["error"]["kind"] == "bad_request"
        assert "longer than 65536 bytes" in refusal["error"]["message"]
        assert reader.readline() == b"", "the server closes the connection"


def test_the_ldapsrv_command_manages_a_real_server(
    ldap_server_factory: Callable[..., Any],
) -> None:
    """``ldapsrv user|group`` through ``ldapsrv serve`` on SQLite: the wiring in
    ldapsrv/cli.py and service.py, the real store and thread pool."""
    server = ldap_server_factory()
    assert stat.S_IMODE(os.stat(server.control_socket).st_mode) == 0o600
    server.ctl("user", "add", "carol", "--password-stdin", "--display-name", "Carol C",
               stdin=PASSWORD + "\n")  # fmt: skip
    server.ctl("group", "add", "admins", "--description", "Admins")
    server.ctl("group", "add-member", "admins", "carol")
    carol = server.ctl_json("user", "show", "carol")
    assert sorted(carol["groups"]) == ["admins", "users"]
    assert carol["display_name"] == "Carol C"
    assert carol["dn"] == server.user_dn("carol")
    group = server.ctl_json("group", "show", "admins")
    assert group["members"] == ["carol"] and group["description"] == "Admins"
    duplicate = server.ctl("user", "add", "CAROL", check=False)
    assert duplicate.returncode == 1 and duplicate.stderr.startswith("ldapsrv: error: ")
    assert PASSWORD.strip() not in server.log_text()
