"""The ``ldapsrv serve`` and ``ldapsrv db`` commands as an admin runs them."""

from __future__ import annotations

import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from e2e.harness import free_ports, hermetic_env

LDAPSRV = [sys.executable, "-m", "ldapsrv"]


def run(*args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*LDAPSRV, *args],
        cwd=cwd,
        env=hermetic_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def serve_args(data_dir: Path) -> list[str]:
    plain, secure = free_ports(2)
    return [
        "serve",
        "--data-dir",
        str(data_dir),
        "--listen",
        f"127.0.0.1:{plain}",
        "--ldaps-listen",
        f"127.0.0.1:{secure}",
        "--control-socket",
        str(data_dir / "c.sock"),
    ]


def test_serve_refuses_an_empty_database_and_names_the_upgrade_command(tmp_path: Path) -> None:
    result = run(*serve_args(tmp_path / "data"), cwd=tmp_path)
    assert result.returncode == 1
    assert 'run "ldapsrv db upgrade"' in result.stderr
    assert "Traceback" not in result.stderr


def test_db_upgrade_makes_an_owner_only_database_in_an_owner_only_directory(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    result = run("db", "upgrade", "--data-dir", str(data), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    database = data / "ldapsrv.db"
    assert stat.S_IMODE(database.stat().st_mode) == 0o600
    status = run("db", "status", "--data-dir", str(data), cwd=tmp_path)
    assert status.returncode == 0, status.stdout + status.stderr


@pytest.mark.parametrize(
    ("toml", "named"),
    [
        ("[server]\nlisten = 3389\n", "server.listen"),
        ("[server]\nlisen = '127.0.0.1:3389'\n", "server.lisen: unknown setting"),
        ("[limits]\nmax_pdu_bytes = 10\n", "limits.max_pdu_bytes"),
        ("[accounts]\nuid_range = '5-1'\n", "accounts.uid_range"),
        ("[nope]\n", "nope: unknown section"),
    ],
)
def test_a_bad_setting_stops_start_up_with_an_error_naming_the_key(
    tmp_path: Path, toml: str, named: str
) -> None:
    config = tmp_path / "ldapsrv.toml"
    config.write_text(toml)
    result = run("serve", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 2
    assert named in result.stderr
    assert "Traceback" not in result.stderr


def test_ldapsrv_help_lists_every_command(tmp_path: Path) -> None:
    result = run("--help", cwd=tmp_path)
    assert result.returncode == 0
    for command in ("serve", "db", "user", "group"):
        assert command in result.stdout
    serve_help = run("serve", "--help", cwd=tmp_path).stdout
    for flag in (
        "--listen",
        "--ldaps-listen",
        "--database",
        "--base-dn",
        "--data-dir",
        "--control-socket",
        "--tls-cert",
        "--tls-key",
        "--config",
    ):
        assert flag in serve_help


def test_ldapsrv_command_is_installed() -> None:
    assert shutil.which("ldapsrv", path=str(Path(sys.executable).parent)) is not None


@pytest.mark.parametrize("level", ["debug", "info", "warning", "error"])
def test_every_documented_log_level_starts_the_server(tmp_path: Path, level: str) -> None:
    data = tmp_path / "data"
    assert run("db", "upgrade", "--data-dir", str(data), cwd=tmp_path).returncode == 0
    config = tmp_path / "ldapsrv.toml"
    config.write_text(f'[logging]\nlevel = "{level}"\n')
    process = subprocess.Popen(
        [*LDAPSRV, "serve", "--config", str(config), *serve_args(data)[1:]],
        cwd=tmp_path,
        env=hermetic_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (data / "c.sock").exists():
            if process.poll() is not None:
                break
            time.sleep(0.1)
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        assert (data / "c.sock").exists()
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def test_sample_data_is_added_once_and_its_printed_passwords_bind(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert run("db", "upgrade", "--data-dir", str(data), cwd=tmp_path).returncode == 0
    first = run("db", "sample", "--data-dir", str(data), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    passwords = dict(
        line.removeprefix("person ").split(": password ")
        for line in first.stdout.splitlines()
        if ": password " in line
    )
    assert set(passwords) == {"alice", "bob", "carol"}
    again = run("db", "sample", "--data-dir", str(data), cwd=tmp_path)
    assert again.returncode == 0
    assert ": password " not in again.stdout  # nothing re-created, no password re-shown
    assert "alice: exists" in again.stdout
    args = serve_args(data)
    port = args[args.index("--listen") + 1]
    process = subprocess.Popen(
        [*LDAPSRV, *args],
        cwd=tmp_path,
        env=hermetic_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (data / "c.sock").exists():
            time.sleep(0.1)
        whoami = subprocess.run(
            ["ldapwhoami", "-x", "-H", f"ldap://{port}", "-D",
             "cn=alice,ou=users,dc=example,dc=org", "-w", passwords["alice"]],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert whoami.returncode == 0, whoami.stderr
        assert whoami.stdout.strip() == "dn:cn=alice,ou=users,dc=example,dc=org"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
