"""What ``ldapsrv status`` asks the running server beyond its configuration:
live connections, whether the database answers, the worker set-up.

With ``[server] workers = N > 1`` the control socket runs in the supervisor,
which serves no LDAP itself: its monitor then asks the ``WorkerSource`` (the
supervisor, fed by the workers' reports, see ``ldapsrv.worker_reports``) for
the worker processes and sums their connections."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from sqlalchemy import text
from sqlalchemy.engine import Engine

from ldapsrv.observability.expiry import ExpiryReport
from ldapsrv.observability.records import OperationRecord
from ldapsrv.store.engine import backend_name, run


class ConnectionCount:
    """An observer that only counts LDAP connections (open now, accepted so far)."""

    def __init__(self) -> None:
        self.active = 0
        self.accepted = 0
        #: Called after every change (a worker reports its figures to the supervisor).
        self.changed: Callable[[], None] = lambda: None

    def connection_opened(self, connection_id: str, client: str, tls: bool) -> None:
        self.active += 1
        self.accepted += 1
        self.changed()

    def connection_closed(self, connection_id: str, client: str) -> None:
        self.active -= 1
        self.changed()

    reads_requests = False

    def operation_done(self, record: OperationRecord) -> None:
        pass


@dataclass(frozen=True, slots=True)
class DatabaseCheck:
    kind: str
    reachable: bool
    ms: float
    error: str | None = None


def database_checker(engine: Engine) -> Callable[[], DatabaseCheck]:
    """A blocking ``SELECT 1`` through the store's own transaction runner."""
    kind = backend_name(engine)

    def check() -> DatabaseCheck:
        start = time.perf_counter()
        try:
            run(engine, lambda conn: conn.execute(text("SELECT 1")).scalar(), write=False)
        except Exception as exc:
            ms = (time.perf_counter() - start) * 1000
            return DatabaseCheck(kind, False, ms, str(exc).splitlines()[0] if str(exc) else None)
        return DatabaseCheck(kind, True, (time.perf_counter() - start) * 1000)

    return check


@dataclass(frozen=True, slots=True)
class WorkerStatus:
    """One worker slot as the supervisor sees it; ``pid`` is None while the slot
    waits to restart a dead worker (whose figures no longer count)."""

    slot: int
    pid: int | None
    ready: bool
    restarts: int
    started_at: datetime | None
    active: int
    accepted: int


class WorkerSource(Protocol):
    def worker_status(self) -> list[WorkerStatus]: ...


@dataclass(slots=True)
class ServerMonitor:
    """Handed to the admin plane by service.py. ``expiry_checked`` passes the
    expiry report of each status call on to the metrics, so gauges never lag
    behind what an admin was just shown. ``role`` is service.Role's value;
    ``workers`` is set in the supervisor."""

    connections: ConnectionCount
    check_database: Callable[[], DatabaseCheck]
    pid: int = field(default_factory=os.getpid)
    metrics_url: str | None = None
    expiry_checked: Callable[[ExpiryReport], None] = field(default=lambda report: None)
    role: str = "single"
    workers: WorkerSource | None = None

    def worker_processes(self) -> list[WorkerStatus]:
        return [] if self.workers is None else self.workers.worker_status()

    def connection_figures(self) -> tuple[int, int]:
        """(open now, accepted so far): this process's, or the sum over the live workers."""
        if self.workers is None:
            return self.connections.active, self.connections.accepted
        workers = self.workers.worker_status()
        return sum(w.active for w in workers), sum(w.accepted for w in workers)
