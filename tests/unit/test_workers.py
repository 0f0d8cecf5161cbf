"""The supervisor's pieces that need no processes: binding the shared ports, the
hidden worker flag, how a worker's end is described."""

from __future__ import annotations

import signal
import socket
from datetime import UTC, datetime
from typing import Any

import pytest
from twisted.internet.error import ProcessTerminated
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from ldapsrv.admin.testing import AdminHarness, in_memory_context
from ldapsrv.config import load_config
from ldapsrv.observability.monitor import ConnectionCount, DatabaseCheck, ServerMonitor
from ldapsrv.workers import (
    HEALTHY_AFTER,
    KILL_AFTER,
    MIN_BACKOFF,
    READY_FD,
    ListenError,
    WorkerSupervisor,
    bind_listeners,
    describe_exit,
    worker_fds,
)

DB_OK = DatabaseCheck("sqlite", True, 0.1)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_supervisor_binds_both_listeners_non_blocking() -> None:
    plain, secure = free_port(), free_port()
    config = load_config(
        None,
        {"server.listen": f"127.0.0.1:{plain}", "server.ldaps_listen": f"127.0.0.1:{secure}"},
        environ={},
    )
    sockets = bind_listeners(config)
    try:
        assert {name: s.getsockname()[1] for name, s in sockets.items()} == {
            "ldap": plain,
            "ldaps": secure,
        }
        assert all(not s.getblocking() for s in sockets.values())
        with socket.create_connection(("127.0.0.1", plain), timeout=2):
            pass  # the kernel queues it: a worker will accept it
    finally:
        for sock in sockets.values():
            sock.close()


def test_a_port_in_use_is_named_and_nothing_stays_bound() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        plain = free_port()
        config = load_config(
            None,
            {"server.listen": f"127.0.0.1:{plain}", "server.ldaps_listen": f"127.0.0.1:{busy}"},
            environ={},
        )
        with pytest.raises(ListenError, match=f"cannot listen on 127.0.0.1:{busy}"):
            bind_listeners(config)
    with socket.socket() as again:
        again.bind(("127.0.0.1", plain))  # released after the failure


def test_worker_flag() -> None:
    assert worker_fds("ldap=3,ldaps=4") == {"ldap": 3, "ldaps": 4}
    assert worker_fds("ldaps=4") == {"ldaps": 4}
    with pytest.raises(ValueError, match="--worker-fds"):
        worker_fds("ldap=x")


def test_how_a_worker_ended_is_described() -> None:
    assert describe_exit(Failure(ProcessTerminated(signal=9))) == "was killed by signal 9"
    assert describe_exit(Failure(ProcessTerminated(exitCode=3))) == "exited with status 3"


# -- the supervisor, on a fake reactor ----------------------------------------------------


class FakeProcess:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.signals: list[int] = []

    def signalProcess(self, signum: int) -> None:
        self.signals.append(signum)


class ProcessReactor(Clock):
    """A clock that "starts" processes: it records them and hands out PIDs."""

    def __init__(self) -> None:
        super().__init__()
        self.spawned: list[tuple[Any, list[str], dict[int, Any]]] = []

    def spawnProcess(
        self, proto: Any, executable: str, argv: list[str], env: Any, childFDs: dict[int, Any]
    ) -> FakeProcess:
        process = FakeProcess(1000 + len(self.spawned))
        proto.makeConnection(process)
        self.spawned.append((proto, argv, childFDs))
        return process


class Recorder:
    def __init__(self) -> None:
        self.ready: list[list[int]] = []
        self.failed: list[str] = []


def supervisor(count: int = 2) -> tuple[WorkerSupervisor, ProcessReactor, Recorder]:
    reactor = ProcessReactor()
    seen = Recorder()
    sock = socket.socket()
    sup = WorkerSupervisor(
        reactor,
        count,
        ["serve", "--config", "x.toml"],
        {"ldap": sock},
        grace=10,
        on_ready=seen.ready.append,
        on_failed=seen.failed.append,
    )
    sup.startService()
    return sup, reactor, seen


def serving(reactor: ProcessReactor, index: int) -> Any:
    proto = reactor.spawned[index][0]
    proto.childDataReceived(READY_FD, b"ready\n")
    return proto


def died(proto: Any, **how: int) -> None:
    proto.processEnded(Failure(ProcessTerminated(**how)))


def test_workers_get_the_serve_arguments_and_the_sockets_and_ready_waits_for_all() -> None:
    sup, reactor, seen = supervisor()
    _, argv, fds = reactor.spawned[0]
    assert argv[-4:] == ["--config", "x.toml", "--worker-fds", "ldap=3"]
    assert fds[3] == sup.sockets["ldap"].fileno() and fds[READY_FD] == "r" and fds[0] == "w"
    serving(reactor, 0)
    assert seen.ready == []
    serving(reactor, 1)
    assert seen.ready == [[1000, 1001]]


def test_a_dead_worker_is_replaced_with_growing_delays_while_it_dies_young() -> None:
    sup, reactor, _ = supervisor()
    serving(reactor, 0)
    serving(reactor, 1)
    delays = []
    for _ in range(4):
        died(sup.workers[1], signal=9)
        spawned = len(reactor.spawned)
        waited = 0.0
        while len(reactor.spawned) == spawned:
            reactor.advance(0.25)
            waited += 0.25
        delays.append(waited)
        serving(reactor, -1)
    assert delays == [0.5, 1.0, 2.0, 4.0]
    reactor.advance(HEALTHY_AFTER)  # a replacement that lives long resets the delay
    died(sup.workers[1], exitCode=1)
    reactor.advance(0.5)
    assert len(reactor.spawned) == 7
    assert len(sup.workers) == 2


def test_a_worker_that_dies_before_the_first_ready_fails_the_start() -> None:
    _, reactor, seen = supervisor()
    died(reactor.spawned[0][0], exitCode=1)
    assert seen.failed == ["worker 0 (pid 1000) exited with status 1 before serving"]
    reactor.advance(60)
    assert len(reactor.spawned) == 2  # no restart loop


def test_stopping_closes_the_ports_signals_workers_and_kills_the_stubborn() -> None:
    sup, reactor, _ = supervisor()
    serving(reactor, 0)
    serving(reactor, 1)
    first, second = (reactor.spawned[i][0] for i in (0, 1))
    stopped = sup.stopService()
    assert sup.sockets["ldap"].fileno() == -1
    assert first.transport.signals == [signal.SIGTERM] == second.transport.signals
    died(first, exitCode=0)
    reactor.advance(10 + KILL_AFTER)
    assert second.transport.signals == [signal.SIGTERM, signal.SIGKILL]
    assert first.transport.signals == [signal.SIGTERM]
    assert not stopped.called
    died(second, signal=9)
    assert stopped.called
    reactor.advance(60)
    assert len(reactor.spawned) == 2  # nothing restarted while stopping


# -- what the workers report, and what status makes of it ---------------------------------


def test_reports_arrive_in_pieces_and_garbage_changes_nothing() -> None:
    sup, reactor, seen = supervisor()
    first = reactor.spawned[0][0]
    first.childDataReceived(READY_FD, b"rea")
    first.childDataReceived(READY_FD, b"dy\nstats active=2 acc")
    assert first.ready and seen.ready == []
    first.childDataReceived(READY_FD, b"epted=9\n\x00garbage\nstats active=oops accepted=1\n")
    first.childDataReceived(1, b"stats active=50 accepted=50\n")  # not the report pipe
    status = {w.slot: w for w in sup.worker_status()}
    assert (status[0].active, status[0].accepted, status[0].ready) == (2, 9, True)
    assert (status[1].active, status[1].pid, status[1].ready) == (0, 1001, False)


def test_status_sums_the_live_workers_and_a_dead_one_drops_out() -> None:
    sup, reactor, _ = supervisor()
    reactor.advance(1_700_000_000)
    first, second = serving(reactor, 0), serving(reactor, 1)
    first.childDataReceived(READY_FD, b"stats active=3 accepted=10\n")
    second.childDataReceived(READY_FD, b"stats active=2 accepted=5\n")
    monitor = ServerMonitor(ConnectionCount(), lambda: DB_OK, role="supervisor", workers=sup)
    config = load_config(None, environ={})
    status = AdminHarness(in_memory_context(config, monitor=monitor)).call("server.status")
    assert status["role"] == "supervisor"
    assert status["connections"] == {"active": 5, "accepted": 15}
    assert status["workers"]["processes"] == [
        {
            "slot": 0,
            "pid": 1000,
            "ready": True,
            "restarts": 0,
            "started": "1970-01-01T00:00:00Z",
            "connections": {"active": 3, "accepted": 10},
        },
        {
            "slot": 1,
            "pid": 1001,
            "ready": True,
            "restarts": 0,
            "started": "1970-01-01T00:00:00Z",
            "connections": {"active": 2, "accepted": 5},
        },
    ]

    died(second, signal=9)
    assert monitor.connection_figures() == (3, 10)
    waiting = sup.worker_status()[1]
    assert (waiting.pid, waiting.ready, waiting.active, waiting.restarts) == (None, False, 0, 0)
    reactor.advance(MIN_BACKOFF)
    replacement = sup.worker_status()[1]
    assert (replacement.pid, replacement.restarts, replacement.active) == (1002, 1, 0)
    assert replacement.started_at == datetime.fromtimestamp(1_700_000_000 + MIN_BACKOFF, UTC)


def test_a_single_process_reports_its_own_connections_and_no_worker_processes() -> None:
    count = ConnectionCount()
    count.connection_opened("c1", "127.0.0.1", False)
    monitor = ServerMonitor(count, lambda: DB_OK)
    config = load_config(None, environ={})
    status = AdminHarness(in_memory_context(config, monitor=monitor)).call("server.status")
    assert status["role"] == "single"
    assert status["connections"] == {"active": 1, "accepted": 1}
    assert status["workers"]["processes"] == []
    assert status["workers"]["pid"] == monitor.pid
