"""Several worker processes sharing the LDAP ports (``[server] workers = N``).

The supervisor (the process ``ldapsrv serve`` starts) binds the listening
sockets, then starts N copies of itself with ``--worker-fds``; each adopts the
sockets (fd 3: LDAP, fd 4: LDAPS) and accepts from the same kernel queue, so a
dead worker loses only the connections it had accepted. The supervisor keeps
the singletons (control socket, token rotation), restarts a worker that dies
(after 0.5 s, doubling up to 30 s while they keep dying young) and forwards
SIGTERM and SIGHUP.

Two pipes tie a worker to its supervisor: the worker writes ``ready`` on fd 5
once it serves, then its connection figures whenever they change (the line
protocol of ``ldapsrv.worker_reports``), which ``worker_status`` hands to
``ldapsrv status``; it reads its stdin (fd 0) only to notice EOF, which means
the supervisor is gone: the worker then shuts down like on SIGTERM.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from twisted.application.service import Service
from twisted.internet import error, protocol
from twisted.internet.defer import Deferred, succeed
from twisted.python.failure import Failure

from ldapsrv.config import Config, HostPort
from ldapsrv.observability.monitor import WorkerStatus
from ldapsrv.worker_reports import READY, Ready, ReportReader, Stats

log = logging.getLogger("ldapsrv.workers")

#: Where a worker finds what the supervisor hands it.
LISTENER_FDS = {"ldap": 3, "ldaps": 4}
READY_FD = 5
WORKER_FLAG = "--worker-fds"

MIN_BACKOFF = 0.5
MAX_BACKOFF = 30.0
#: A worker that lived this long before dying restarts after MIN_BACKOFF again.
HEALTHY_AFTER = 30.0
#: Beyond the shutdown grace, how long workers get to exit before SIGKILL.
KILL_AFTER = 10.0


class ListenError(Exception):
    """A listening socket cannot be bound; the message names the address."""


def bind_listeners(config: Config, backlog: int = 1024) -> dict[str, socket.socket]:
    """The listening sockets the workers share, bound here (once) by the supervisor."""
    wanted: list[tuple[str, HostPort]] = []
    if config.listen is not None:
        wanted.append(("ldap", config.listen))
    if config.ldaps_listen is not None:
        wanted.append(("ldaps", config.ldaps_listen))
    sockets: dict[str, socket.socket] = {}
    try:
        for name, address in wanted:
            family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            sockets[name] = sock
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((address.host, address.port))
            except OSError as exc:
                raise ListenError(f"cannot listen on {address}: {exc.strerror}") from exc
            sock.listen(backlog)
            sock.setblocking(False)
    except BaseException:
        for sock in sockets.values():
            sock.close()
        raise
    return sockets


def worker_fds(text: str) -> dict[str, int]:
    """``ldap=3,ldaps=4`` -> {"ldap": 3, "ldaps": 4} (the hidden worker flag)."""
    fds: dict[str, int] = {}
    for part in text.split(","):
        name, _, fd = part.partition("=")
        if name not in LISTENER_FDS or not fd.isdigit():
            raise ValueError(f"{WORKER_FLAG}: expected ldap=FD,ldaps=FD, got {text!r}")
        fds[name] = int(fd)
    return fds


class _Worker(protocol.ProcessProtocol):
    def __init__(self, supervisor: WorkerSupervisor, slot: int, started: float) -> None:
        self.supervisor = supervisor
        self.slot = slot
        self.started = started
        self.ready = False
        self.pid: int | None = None
        self.ended: Deferred[None] = Deferred()
        self.stats = Stats(0, 0)
        self._reports = ReportReader()

    def connectionMade(self) -> None:
        transport: Any = self.transport
        self.pid = transport.pid if transport is not None else None

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        if childFD != READY_FD:
            return
        for report in self._reports.feed(data):
            if isinstance(report, Stats):
                self.stats = report
            elif isinstance(report, Ready) and not self.ready:
                self.ready = True
                self.supervisor.worker_ready(self)

    def processEnded(self, reason: Failure) -> None:
        self.ended.callback(None)
        self.supervisor.worker_ended(self, reason)

    def signal(self, signum: int) -> None:
        transport: Any = self.transport
        if transport is not None and not self.ended.called:
            try:
                transport.signalProcess(signum)
            except error.ProcessExitedAlready:
                pass


class WorkerSupervisor(Service):
    """Starts, watches and restarts the worker processes."""

    def __init__(
        self,
        reactor: Any,
        count: int,
        serve_argv: Sequence[str],
        sockets: dict[str, socket.socket],
        grace: float,
        on_ready: Callable[[list[int]], None],
        on_failed: Callable[[str], None],
        on_exit: Callable[[int], None] = lambda pid: None,
    ) -> None:
        self.reactor = reactor
        self.count = count
        self.serve_argv = list(serve_argv)
        self.sockets = sockets
        self.grace = grace
        self.on_ready = on_ready
        self.on_failed = on_failed
        self.on_exit = on_exit
        self.workers: dict[int, _Worker] = {}
        self.failures: dict[int, int] = {}
        self.restarts: dict[int, int] = {}
        self._announced = False
        self._stopping = False
        self._restarts: dict[int, Any] = {}

    # -- life of the supervisor -----------------------------------------------------

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        for slot in range(self.count):
            self._spawn(slot)

    def stopService(self) -> Deferred[None]:
        super().stopService()  # type: ignore[no-untyped-call]
        self._stopping = True
        for call in self._restarts.values():
            if call.active():
                call.cancel()
        self._restarts.clear()
        # Closing our copies first: once the workers close theirs, the port is
        # closed and new connections are refused instead of queueing.
        for sock in self.sockets.values():
            sock.close()
        workers = list(self.workers.values())
        if not workers:
            return succeed(None)
        log.info("stopping %d worker(s)", len(workers))
        for worker in workers:
            worker.signal(signal.SIGTERM)
        killer = self.reactor.callLater(self.grace + KILL_AFTER, self._kill, workers)
        done: Deferred[Any] = Deferred()
        remaining = {id(w) for w in workers}

        def one_ended(_: object, worker: _Worker) -> None:
            remaining.discard(id(worker))
            if not remaining and not done.called:
                if killer.active():
                    killer.cancel()
                done.callback(None)

        for worker in workers:
            worker.ended.addCallback(one_ended, worker)
        return done

    def _kill(self, workers: list[_Worker]) -> None:
        for worker in workers:
            if not worker.ended.called:
                log.warning("worker %s did not stop in time: killing it", worker.pid)
                worker.signal(signal.SIGKILL)

    def forward(self, signum: int) -> None:
        for worker in self.workers.values():
            worker.signal(signum)

    @property
    def pids(self) -> list[int]:
        return [w.pid for w in self.workers.values() if w.pid is not None]

    def worker_status(self) -> list[WorkerStatus]:
        """Every slot, with its live worker's last reported figures (none while
        the slot waits to restart its dead worker)."""
        status = []
        for slot in range(self.count):
            worker = self.workers.get(slot)
            restarts = self.restarts.get(slot, 0)
            if worker is None:
                status.append(WorkerStatus(slot, None, False, restarts, None, 0, 0))
                continue
            started = datetime.fromtimestamp(worker.started, UTC)
            stats = worker.stats
            status.append(
                WorkerStatus(
                    slot, worker.pid, worker.ready, restarts, started, stats.active, stats.accepted
                )
            )
        return status

    # -- workers ----------------------------------------------------------------------

    def _spawn(self, slot: int) -> None:
        self._restarts.pop(slot, None)
        if self._stopping:
            return
        fds = {name: LISTENER_FDS[name] for name in self.sockets}
        flag = ",".join(f"{name}={fd}" for name, fd in fds.items())
        argv = [sys.executable, "-m", "ldapsrv", *self.serve_argv, WORKER_FLAG, flag]
        child_fds: dict[int, int | str] = {0: "w", 1: 1, 2: 2, READY_FD: "r"}
        for name, fd in fds.items():
            child_fds[fd] = self.sockets[name].fileno()
        self.restarts[slot] = self.restarts[slot] + 1 if slot in self.restarts else 0
        worker = _Worker(self, slot, self.reactor.seconds())
        self.reactor.spawnProcess(worker, sys.executable, argv, env=os.environ, childFDs=child_fds)
        self.workers[slot] = worker
        log.info("started worker %d (pid %s)", slot, worker.pid)

    def worker_ready(self, worker: _Worker) -> None:
        log.info("worker %d (pid %s) is serving", worker.slot, worker.pid)
        if not self._announced and all(w.ready for w in self.workers.values()):
            self._announced = True
            self.on_ready(self.pids)

    def worker_ended(self, worker: _Worker, reason: Failure) -> None:
        if worker.pid is not None:
            self.on_exit(worker.pid)
        if self.workers.get(worker.slot) is worker:
            del self.workers[worker.slot]
        if self._stopping:
            log.info("worker %d (pid %s) stopped", worker.slot, worker.pid)
            return
        how = describe_exit(reason)
        if not self._announced and not worker.ready:
            self.on_failed(f"worker {worker.slot} (pid {worker.pid}) {how} before serving")
            return
        lived = self.reactor.seconds() - worker.started
        failures = 0 if lived >= HEALTHY_AFTER else self.failures.get(worker.slot, 0) + 1
        self.failures[worker.slot] = failures
        delay = min(MAX_BACKOFF, MIN_BACKOFF * 2 ** max(failures - 1, 0))
        log.warning(
            "worker %d (pid %s) %s after %.0f s; starting a new one in %g s",
            worker.slot,
            worker.pid,
            how,
            lived,
            delay,
        )
        self._restarts[worker.slot] = self.reactor.callLater(delay, self._spawn, worker.slot)


def describe_exit(reason: Failure) -> str:
    value = reason.value
    signum = getattr(value, "signal", None)
    if signum:
        return f"was killed by signal {signum}"
    return f"exited with status {getattr(value, 'exitCode', '?')}"


class Lifeline(protocol.Protocol):
    """A worker's stdin from the supervisor: EOF means the supervisor is gone."""

    def __init__(self, lost: Callable[[], None]) -> None:
        self.lost = lost

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        self.lost()

    def announce_ready(self) -> None:
        self.send(READY)

    def send(self, line: bytes) -> None:
        """A line of the worker_reports protocol to the supervisor."""
        transport: Any = self.transport
        if transport is not None:
            transport.write(line)
