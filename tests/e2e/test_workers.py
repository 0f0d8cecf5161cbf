"""``[server] workers = 2``: a supervisor and two worker processes share the ports.

Both workers must answer LDAP (the log names the process of every bind), a worker
killed with SIGKILL must be replaced while the service goes on, the control socket
must stay with the supervisor, and SIGTERM must stop everything with exit 0.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from e2e.clients import ALICE_PASSWORD, populate
from e2e.harness import LdapServer, serving, wait_until
from e2e.rawldap import RawClient, refused

WORKERS = 2


def children(pid: int) -> set[int]:
    """The processes whose parent is ``pid`` (from /proc)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    """Running (a zombie waiting for whoever adopted it to reap it does not count)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def worker_pids(server: LdapServer) -> set[int]:
    return {
        pid
        for pid in children(server.process.pid)
        if "--worker-fds" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    }


def bind_as_alice(server: LdapServer) -> int:
    client = RawClient.connect(server.ldap_port)
    try:
        _, answer = client.until_done(client.bind(server.user_dn("alice"), ALICE_PASSWORD))
        return int(answer.resultCode)
    finally:
        client.close()


def pids_that_bound(server: LdapServer) -> set[int]:
    return {
        int(p) for p in re.findall(r"ldapsrv\.ldap\[(\d+)\]: bind as cn=alice", server.log_text())
    }


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LdapServer]:
    workdir = tmp_path_factory.mktemp("workers")
    with serving("sqlite", workdir, settings={"server": {"workers": WORKERS}}) as server:
        populate(server)
        yield server


def test_the_supervisor_runs_two_workers_and_keeps_the_control_socket(
    server: LdapServer,
) -> None:
    pids = worker_pids(server)
    assert len(pids) == WORKERS
    ready = [line for line in server.log_text().splitlines() if "ldapsrv ready" in line]
    assert ready and f"{WORKERS} workers" in ready[0]
    assert server.ctl_json("user", "show", "alice")["name"] == "alice"  # served by the supervisor
    for pid in pids:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        assert b"serve" in cmdline and b"--worker-fds" in cmdline


def test_both_workers_answer_ldap(server: LdapServer) -> None:
    pids = worker_pids(server)
    deadline = time.monotonic() + 60
    with ThreadPoolExecutor(max_workers=8) as pool:
        while not pids <= pids_that_bound(server):
            assert time.monotonic() < deadline, (pids, pids_that_bound(server))
            assert set(pool.map(lambda _: bind_as_alice(server), range(16))) == {0}
    assert pids_that_bound(server) >= pids


def test_a_killed_worker_is_replaced_and_the_service_goes_on(server: LdapServer) -> None:
    before = worker_pids(server)
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    for _ in range(10):  # the survivor answers meanwhile
        assert bind_as_alice(server) == 0
    after = wait_until(
        lambda: (now := worker_pids(server)) and len(now) == WORKERS and victim not in now and now,
        30,
        "a replacement worker",
    )
    assert before - {victim} <= after
    wait_until(lambda: "was killed by signal 9" in server.log_text(), 5, "the death logged")
    (replacement,) = after - before
    wait_until(lambda: f"pid {replacement}) is serving" in server.log_text(), 30, "it serves")
    assert all(bind_as_alice(server) == 0 for _ in range(10))


def test_sighup_reaches_every_worker(server: LdapServer) -> None:
    pids = worker_pids(server)
    os.kill(server.process.pid, signal.SIGHUP)
    for pid in pids:
        wait_until(
            lambda pid=pid: f"[{pid}]: SIGHUP: TLS certificate (re)loaded" in server.log_text(),
            15,
            f"worker {pid} reloaded",
        )
    assert worker_pids(server) == pids  # nobody was restarted
    assert bind_as_alice(server) == 0


def test_sigterm_stops_the_supervisor_and_its_workers_with_exit_0(server: LdapServer) -> None:
    pids = worker_pids(server)
    os.kill(server.process.pid, signal.SIGTERM)
    assert server.process.wait(timeout=30) == 0
    assert refused(server.ldap_port) and refused(server.ldaps_port)
    assert not any(alive(pid) for pid in pids)
    assert "Traceback" not in server.log_text()


def test_workers_of_a_killed_supervisor_shut_down_by_themselves(tmp_path: Path) -> None:
    with serving("sqlite", tmp_path, settings={"server": {"workers": WORKERS}}) as server:
        pids = worker_pids(server)
        assert len(pids) == WORKERS
        os.kill(server.process.pid, signal.SIGKILL)
        server.process.wait(timeout=10)
        wait_until(
            lambda: not any(alive(pid) for pid in pids),
            30,
            "orphaned workers gone",
        )
        assert refused(server.ldap_port)
