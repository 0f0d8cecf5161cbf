"""Run ``ldapsrv serve`` in one of its three roles, with its signals.

- SIGTERM (and SIGINT): stop listening, let in-flight operations finish within
  ``[server] shutdown_grace`` seconds, send a Notice of Disconnection to the
  clients still connected, exit 0. A supervisor closes its listening sockets
  and passes the signal on to its workers, then waits for them.
- SIGHUP: read the configuration file again and apply what can change while
  running (ldapsrv.reloading.RELOADABLE): TLS certificate and key for new
  handshakes, [limits], [security] switches, the log level. A bad file is
  reported and changes nothing. A supervisor passes the signal on.
"""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from twisted.internet import stdio
from twisted.internet.error import ReactorNotRunning

from ldapsrv.config import Config, ConfigError
from ldapsrv.observability.multiproc import multiprocess_dir
from ldapsrv.reloading import warn_unreloadable
from ldapsrv.service import Role, StartupError, make_service
from ldapsrv.worker_reports import StatsReporter
from ldapsrv.workers import (
    READY_FD,
    Lifeline,
    ListenError,
    WorkerSupervisor,
    bind_listeners,
)

log = logging.getLogger("ldapsrv")

READY_MESSAGE = "ldapsrv ready"


def serve(
    config: Config,
    reactor: Any,
    *,
    load_config: Callable[[], Config],
    set_log_level: Callable[[str], None],
    serve_argv: Sequence[str],
    worker_fds: Mapping[str, int] | None,
) -> int:
    """Run until stopped; the exit status (0 after a clean SIGTERM)."""
    if worker_fds is not None:
        role = Role.WORKER
    elif config.workers > 1:
        role = Role.SUPERVISOR
    else:
        role = Role.SINGLE
    status = [0]

    def stop(code: int = 0) -> None:
        status[0] = status[0] or code
        try:
            reactor.stop()
        except ReactorNotRunning:
            pass

    try:
        supervisor = None
        if role is Role.SUPERVISOR:
            supervisor = _supervisor(config, reactor, serve_argv, stop)
        built = make_service(config, reactor, role, worker_fds, workers=supervisor)
        if supervisor is not None:
            supervisor.setServiceParent(built.service)  # type: ignore[no-untyped-call]
        built.service.startService()
    except (StartupError, ListenError) as exc:
        print(f"ldapsrv: error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # a port in use, an unreadable file: say which
        print(f"ldapsrv: error: cannot start: {exc}", file=sys.stderr)
        return 1

    if role is Role.SINGLE:
        _announce(config, "")
    elif role is Role.WORKER:
        lifeline = Lifeline(lambda: reactor.callLater(0, stop))
        standard_io: Any = stdio.StandardIO
        standard_io(lifeline, stdin=0, stdout=READY_FD, reactor=reactor)
        lifeline.announce_ready()
        built.connections.changed = StatsReporter(reactor, built.connections, lifeline.send).changed
        log.info("worker serving")

    running = [config]

    def reload() -> None:
        try:
            new = load_config()
        except ConfigError as exc:
            log.error("SIGHUP: configuration not reloaded, nothing changed: %s", exc)
            return
        warn_unreloadable(running[0], new)
        set_log_level(new.log_level)
        built.reload(new)
        if supervisor is not None:
            supervisor.forward(signal.SIGHUP)

    signal.signal(signal.SIGHUP, lambda signum, frame: reactor.callFromThread(reload))
    reactor.addSystemEventTrigger("before", "shutdown", built.service.stopService)
    reactor.run()
    return status[0]


def _announce(config: Config, extra: str) -> None:
    listeners = [
        f"ldap://{config.listen}" if config.listen else "",
        f"ldaps://{config.ldaps_listen}" if config.ldaps_listen else "",
    ]
    log.info(
        "%s: %s, base %s, control socket %s%s",
        READY_MESSAGE,
        " ".join(x for x in listeners if x),
        config.base_dn,
        config.control_socket,
        extra,
    )


def _forget_metrics_of(pid: int) -> None:
    """A worker's live gauges (connections, pool) stop counting when it exits."""
    if multiprocess_dir() is not None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


def _supervisor(
    config: Config,
    reactor: Any,
    serve_argv: Sequence[str],
    stop: Callable[[int], None],
) -> WorkerSupervisor:
    def ready(pids: list[int]) -> None:
        _announce(config, f", {len(pids)} workers (pids {' '.join(map(str, pids))})")

    def failed(why: str) -> None:
        log.error("cannot start: %s; see its log above", why)
        stop(1)

    return WorkerSupervisor(
        reactor,
        config.workers,
        serve_argv,
        bind_listeners(config),
        config.shutdown_grace,
        ready,
        failed,
        on_exit=_forget_metrics_of,
    )
