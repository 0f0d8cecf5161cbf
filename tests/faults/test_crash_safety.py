"""``kill -9`` at any moment leaves the database consistent.

Every admin change and its audit event are one transaction, and a token rotation
commits (new secret, generation, audit, ``hook_pending``) before its hook runs. So
after a SIGKILL: no change without its audit row and no audit row without its
change, memberships only for people that exist, distinct uid numbers, and a
rotation interrupted in its hook is delivered again by the next server start.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from e2e.clients import Credentials, whoami
from e2e.harness import (
    LDAPSRV_COMMAND,
    LdapServer,
    RotationHookRecorder,
    fresh_database,
    hermetic_env,
    require_service,
    start_server,
    wait_until,
)
from sqlalchemy import create_engine, text, update

from ldapsrv.admin.client import call
from ldapsrv.admin.errors import UNAVAILABLE, AdminError
from ldapsrv.store.models import tokens as tokens_table

KILL_ROUNDS = 4
WRITERS = 6


def kill_9(server: LdapServer) -> None:
    os.kill(server.process.pid, signal.SIGKILL)
    server.process.wait(timeout=10)
    server.stop()  # removes the socket directory; the process is already gone


def rows(url: str, sql: str) -> list[tuple[object, ...]]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return [tuple(r) for r in connection.execute(text(sql))]
    finally:
        engine.dispose()


def start_ctl(server: LdapServer, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*LDAPSRV_COMMAND, *args, "--socket", str(server.control_socket)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=hermetic_env(),
        text=True,
    )


def write_until(
    server: LdapServer, prefix: str, stop: threading.Event, outcomes: list[int]
) -> None:
    """Add people and put each in staff, one control-socket call after another (the
    ``ldapsrv`` command's own client), until ``stop`` or the server is gone.
    Outcomes: 0 done, 1 cut off by the kill, 2 refused (a person the kill kept out)."""
    for i in range(10_000):
        name = f"{prefix}n{i}"
        for command, args in (
            ("user.add", {"name": name}),
            ("group.add_member", {"group": "staff", "user": name}),
        ):
            if stop.is_set():
                return
            try:
                call(server.control_socket, command, args, timeout=30)
                outcomes.append(0)
            except AdminError as exc:
                if exc.kind == UNAVAILABLE:  # the server is gone: cut off by the kill
                    outcomes.append(1)
                    return
                outcomes.append(2)


def assert_consistent(url: str) -> None:
    """The invariants a half-applied admin change would break."""
    if url.startswith("sqlite"):
        assert rows(url, "PRAGMA integrity_check") == [("ok",)]
    people = {str(n) for (n,) in rows(url, "SELECT name FROM accounts WHERE kind = 'user'")}
    added = Counter(
        str(t).removeprefix("user ")
        for (t,) in rows(url, "SELECT target FROM audit_events WHERE action = 'user.add'")
    )
    assert set(added) == people, "a person without its audit event, or the reverse"
    assert all(count == 1 for count in added.values()), added
    members = Counter(
        (str(g), str(a))
        for g, a in rows(
            url,
            "SELECT g.name, a.name FROM memberships m JOIN groups g ON g.id = m.group_id"
            " JOIN accounts a ON a.id = m.account_id WHERE g.name = 'staff'",
        )
    )
    audited = Counter(
        (str(t).removeprefix("group "), json.loads(str(d))["member"])
        for t, d in rows(
            url, "SELECT target, details FROM audit_events WHERE action = 'group.add_member'"
        )
    )
    assert members == audited, "a membership without its audit event, or the reverse"
    numbers = [n for (n,) in rows(url, "SELECT uid_number FROM accounts WHERE kind = 'user'")]
    assert len(numbers) == len(set(numbers))


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_kill_9_during_admin_changes_never_leaves_one_half_applied(
    tmp_path: Path, backend: str
) -> None:
    rng = random.Random(4511)
    with fresh_database(backend, tmp_path) as url:
        outcomes: list[int] = []
        for round_ in range(KILL_ROUNDS):
            server = start_server(tmp_path / f"round-{round_}", url)
            try:
                if round_ == 0:
                    server.add_group("staff")
                stop = threading.Event()
                threads = [
                    threading.Thread(
                        target=write_until, args=(server, f"r{round_}w{i}", stop, outcomes)
                    )
                    for i in range(WRITERS)
                ]
                for thread in threads:
                    thread.start()
                time.sleep(rng.uniform(1.0, 3.0))
            finally:
                kill_9(server)
                stop.set()
            for thread in threads:
                thread.join(timeout=60)
            assert_consistent(url)
        # The store still works after all that, through a fresh server.
        server = start_server(tmp_path / "after", url)
        try:
            server.add_user("after-crash")
            assert "after-crash" in {u["name"] for u in server.ctl_json("user", "list")["users"]}
        finally:
            server.stop()
        assert_consistent(url)
        people = rows(url, "SELECT count(*) FROM accounts WHERE kind = 'user'")[0][0]
        staff = rows(url, "SELECT count(*) FROM memberships m JOIN groups g ON g.id = m.group_id"
                     " WHERE g.name = 'staff'")[0][0]  # fmt: skip
    failed = sum(1 for code in outcomes if code == 1)
    print(f"{backend}: {len(outcomes)} admin commands, {failed} cut off by kill -9, "
          f"{people} people and {staff} memberships survived")  # fmt: skip
    # Not vacuous: changes landed, and commands really were cut off by the kills.
    assert failed > 0 and int(str(people)) > 0 and int(str(staff)) > 0


_SLOW_HOOK = """\
import os, sys, time
with open(sys.argv[1], "w") as marker:
    marker.write(str(os.getpid()))
time.sleep(120)
"""


def test_kill_9_inside_a_rotation_hook_keeps_the_rotation_and_delivers_it_after_restart(
    tmp_path: Path,
) -> None:
    require_service("ldap-utils")
    hook_script = tmp_path / "slow_hook.py"
    hook_script.write_text(_SLOW_HOOK)
    marker = tmp_path / "hook-started"
    key_file = str(tmp_path / "token.key")
    slow = {
        "tokens": {
            "key_file": key_file,
            "rotation_hook": [sys.executable, str(hook_script), str(marker)],
        }
    }
    recorder = RotationHookRecorder(tmp_path / "recorder")
    recording = {
        "tokens": {
            "key_file": key_file,
            "rotation_hook": recorder.command,
            "rotation_check_interval": 1,
        }
    }
    with fresh_database("sqlite", tmp_path) as url:
        server = start_server(tmp_path / "first", url, settings=slow)
        hook_pid: int | None = None
        try:
            created = server.create_service_account("nas")
            old = Credentials(server.user_dn("nas"), str(created["token"]))
            rotating = start_ctl(server, "token", "rotate", "nas")
            wait_until(marker.exists, 30, "the rotation hook started")
            hook_pid = int(wait_until(lambda: marker.read_text().strip(), 10, "hook pid"))
        finally:
            kill_9(server)
            if hook_pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(hook_pid, signal.SIGKILL)
            rotating.wait(timeout=30)
        # Committed before the hook ran: new generation, its audit event, hook pending.
        (generation, pending), = rows(
            url, "SELECT generation, hook_pending FROM tokens WHERE identifier = 'nas'"
        )  # fmt: skip
        assert generation == 2 and bool(pending)
        audit = rows(url, "SELECT count(*) FROM audit_events WHERE action = 'token.rotate'"
                     " AND target = 'token nas'")  # fmt: skip
        assert audit == [(1,)]
        # A restarted server leaves a rotation alone for the hook's timeout + 60 s (its
        # own server may still be running the hook); say the crash was 10 minutes ago.
        engine = create_engine(url)
        try:
            with engine.begin() as connection:
                connection.execute(
                    update(tokens_table)
                    .where(tokens_table.c.identifier == "nas")
                    .values(rotated_at=datetime.now(UTC) - timedelta(minutes=10))
                )
        finally:
            engine.dispose()

        server = start_server(tmp_path / "second", url, settings=recording)
        try:
            delivered = recorder.wait_for("nas", 1, 30)[0]
            new = Credentials(old.dn, delivered.value)
            assert whoami(server, new) == old.dn.lower()
            assert whoami(server, old) is None
            assert server.ctl_json("token", "view", "nas")["value"] == delivered.value
            pending_sql = "SELECT hook_pending FROM tokens WHERE identifier = 'nas'"
            wait_until(
                lambda: not rows(url, pending_sql)[0][0], 10, "hook_pending cleared after delivery"
            )
        finally:
            server.stop()
