"""``ldapsrv db backup`` / ``db restore``: an online copy of a SQLite store taken while
a server serves and writes, restored into a new data directory that a new server
then serves; refusals name what is wrong."""

from __future__ import annotations

import sqlite3
import stat
import subprocess
import threading
from pathlib import Path

import pytest

from e2e.harness import (
    COMMAND_TIMEOUT,
    LDAPSRV_COMMAND,
    LdapServer,
    fresh_database,
    hermetic_env,
    start_server,
)


def ldapsrv(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*LDAPSRV_COMMAND, *args],
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        env=hermetic_env(),
        cwd=cwd,
    )


def user_names(server: LdapServer) -> set[str]:
    return {u["name"] for u in server.ctl_json("user", "list")["users"]}


def test_backup_while_serving_and_writing_restores_into_a_new_server(tmp_path: Path) -> None:
    with fresh_database("sqlite", tmp_path) as url:
        server = start_server(tmp_path / "one", url)
        try:
            server.add_user("alice", "alice-Secret-1")
            server.add_group("staff", ["alice"])
            stop = threading.Event()
            written: list[str] = []

            def keep_writing() -> None:
                while not stop.is_set() and len(written) < 200:
                    name = f"w{len(written)}"
                    server.add_user(name)
                    written.append(name)

            writer = threading.Thread(target=keep_writing)
            writer.start()
            try:
                backups = []
                for i in range(3):  # several snapshots, each during writes
                    path = tmp_path / f"backup-{i}.db"
                    result = ldapsrv("db", "backup", str(path), "--database", url, cwd=tmp_path)
                    assert result.returncode == 0, result.stderr
                    assert "schema revision" in result.stdout
                    backups.append(path)
            finally:
                stop.set()
                writer.join(timeout=60)
            assert len(written) > 0
            last = backups[-1]
            assert stat.S_IMODE(last.stat().st_mode) == 0o600
            with sqlite3.connect(last) as conn:
                assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
                assert conn.execute("PRAGMA journal_mode").fetchone() == ("delete",)
            # Running servers are detected: no restore under them without --force.
            refused = ldapsrv(
                "db", "restore", str(last), "--database", url,
                "--control-socket", str(server.control_socket), cwd=tmp_path,
            )  # fmt: skip
            assert refused.returncode == 1
            assert "a server is running" in refused.stderr
            assert "Traceback" not in refused.stderr
            before = user_names(server)
        finally:
            server.stop()

    restored_dir = tmp_path / "restored"
    restored_url = f"sqlite:///{restored_dir / 'ldapsrv.db'}"
    result = ldapsrv("db", "restore", str(last), "--database", restored_url, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE((restored_dir / "ldapsrv.db").stat().st_mode) == 0o600
    second = start_server(tmp_path / "two", restored_url)
    try:
        restored = user_names(second)
        # The snapshot: everything before the backup began, a prefix of the writes.
        assert {"alice"} <= restored <= before
        copied_writes = sorted((n for n in restored if n.startswith("w")), key=lambda n: int(n[1:]))
        assert copied_writes == [f"w{i}" for i in range(len(copied_writes))]
        groups = second.ctl_json("group", "show", "staff")
        assert "alice" in str(groups)
    finally:
        second.stop()


def test_restore_refuses_files_that_are_not_ldapsrv_backups(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'data' / 'ldapsrv.db'}"
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database at all" * 100)
    result = ldapsrv("db", "restore", str(junk), "--database", url, cwd=tmp_path)
    assert result.returncode == 1
    assert "not an ldapsrv SQLite database" in result.stderr
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE alembic_version (version_num TEXT)")
        conn.execute("INSERT INTO alembic_version VALUES ('9999_from_the_future')")
    result = ldapsrv("db", "restore", str(other), "--database", url, cwd=tmp_path)
    assert result.returncode == 1
    assert "9999_from_the_future" in result.stderr
    missing = ldapsrv("db", "restore", str(tmp_path / "nope.db"), "--database", url, cwd=tmp_path)
    assert missing.returncode == 1 and "does not exist" in missing.stderr
    assert not (tmp_path / "data" / "ldapsrv.db").exists()


def test_backup_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    with fresh_database("sqlite", tmp_path) as url:
        ldapsrv("db", "upgrade", "--database", url, cwd=tmp_path)
        target = tmp_path / "b.db"
        target.write_text("keep me")
        result = ldapsrv("db", "backup", str(target), "--database", url, cwd=tmp_path)
        assert result.returncode == 1 and "exists" in result.stderr
        assert target.read_text() == "keep me"
        forced = ldapsrv("db", "backup", str(target), "--database", url, "--force", cwd=tmp_path)
        assert forced.returncode == 0, forced.stderr


@pytest.mark.parametrize(
    ("url", "tool"),
    [
        ("postgresql+psycopg2://ldap@db.example:5433/directory", "pg_dump"),
        ("mysql+pymysql://ldap@db.example/directory", "mariadb-dump"),
    ],
)
def test_server_databases_are_pointed_to_their_own_dump_tools(
    tmp_path: Path, url: str, tool: str
) -> None:
    result = ldapsrv("db", "backup", str(tmp_path / "x"), "--database", url, cwd=tmp_path)
    assert result.returncode == 2
    assert tool in result.stderr and "directory" in result.stderr
    assert not (tmp_path / "x").exists()
