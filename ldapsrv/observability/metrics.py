"""Prometheus metrics and the HTTP endpoint that serves them (off by default).

``Metrics`` holds every collector and is an ``Observer`` of the LDAP layer:
operations by type and result, latency histograms, entries returned, active
connections, bind failures by reason. ``watch_engine`` counts database errors
and tracks pool usage through SQLAlchemy events (so engine.py stays unaware of
metrics); ``token_rotated`` is the rotator's callback; ``expiry.py`` sets the
certificate and token expiry gauges.

Importing this module imports prometheus_client: see ``multiproc.py`` for the
order that multiprocess mode needs.
"""

from __future__ import annotations

from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy import event
from sqlalchemy.engine import Engine
from twisted.application import internet
from twisted.web.resource import Resource
from twisted.web.server import Site

from ldapsrv.config import HostPort
from ldapsrv.observability.accesslog import operation_name, refusal_reason, result_name
from ldapsrv.observability.expiry import ExpiryReport
from ldapsrv.observability.multiproc import multiprocess_dir
from ldapsrv.observability.records import OperationRecord
from ldapsrv.store.engine import is_retryable, is_unavailable

METRICS_PATH: Final = b"metrics"
LATENCY_BUCKETS: Final = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


class Metrics:
    """Every ldapsrv collector, registered in ``registry`` (a private one by default,
    so tests and several servers in one process do not collide)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.operations = Counter(
            "ldapsrv_operations",
            "LDAP operations finished, by operation and result",
            ["operation", "result"],
            registry=r,
        )
        self.duration = Histogram(
            "ldapsrv_operation_duration_seconds",
            "Time from request to response, by operation",
            ["operation"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.entries = Counter(
            "ldapsrv_search_entries", "Search result entries sent to clients", registry=r
        )
        self.cached = Counter(
            "ldapsrv_cached_operations",
            "Searches and token binds answered from memory (the change counters unchanged)",
            ["operation"],
            registry=r,
        )
        self.connections = Counter(
            "ldapsrv_connections", "LDAP connections accepted", ["tls"], registry=r
        )
        self.active = Gauge(
            "ldapsrv_connections_active",
            "LDAP connections open now",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.bind_failures = Counter(
            "ldapsrv_bind_failures",
            "Refused binds, by reason (the client sees invalidCredentials for all)",
            ["reason"],
            registry=r,
        )
        self.rotations = Counter(
            "ldapsrv_token_rotations",
            "Token values rotated, by trigger (expired, admin)",
            ["trigger"],
            registry=r,
        )
        self.db_errors = Counter(
            "ldapsrv_database_errors",
            "Errors raised by the database driver, by kind "
            "(unavailable, retryable, integrity, other)",
            ["kind"],
            registry=r,
        )
        self.pool = Gauge(
            "ldapsrv_database_pool_connections",
            "Database connections: open (held by the pool, in use or idle) and checked_out",
            ["state"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.pool_size = Gauge(
            "ldapsrv_database_pool_size",
            "Configured database pool size (connections kept open)",
            registry=r,
            multiprocess_mode="livemax",
        )
        self.cert_expiry = Gauge(
            "ldapsrv_tls_certificate_expiry_seconds",
            "Seconds until the served TLS certificate expires (at the last check)",
            registry=r,
            multiprocess_mode="livemin",
        )
        self.cert_not_after = Gauge(
            "ldapsrv_tls_certificate_not_after_timestamp_seconds",
            "Expiry instant of the served TLS certificate (Unix time)",
            registry=r,
            multiprocess_mode="livemin",
        )
        self.tokens_expiring = Gauge(
            "ldapsrv_tokens_expiring_soon",
            "Tokens expiring within the warning window (at the last check)",
            registry=r,
            multiprocess_mode="livemax",
        )

    # -- Observer ---------------------------------------------------------------------

    #: Counts by ``request_type``: a search answered before it was decoded is
    #: counted like any other (records.reads_requests).
    reads_requests = False

    def connection_opened(self, connection_id: str, client: str, tls: bool) -> None:
        self.connections.labels("true" if tls else "false").inc()
        self.active.inc()

    def connection_closed(self, connection_id: str, client: str) -> None:
        self.active.dec()

    def operation_done(self, record: OperationRecord) -> None:
        operation = operation_name(record)
        self.operations.labels(operation, result_name(record.result_code)).inc()
        self.duration.labels(operation).observe(record.duration_ms / 1000)
        if record.request_type == "SearchRequest":
            self.entries.inc(record.entries)
        if record.cached:
            self.cached.labels(operation).inc()
        if operation == "bind":
            reason = refusal_reason(record)
            if reason:
                self.bind_failures.labels(reason).inc()

    # -- other sources ----------------------------------------------------------------

    def token_rotated(self, trigger: str) -> None:
        self.rotations.labels(trigger).inc()

    def expiry_checked(self, report: ExpiryReport) -> None:
        cert = report.certificate
        if cert is not None:
            self.cert_expiry.set(cert.seconds_left)
            self.cert_not_after.set(cert.not_after.timestamp())
        self.tokens_expiring.set(len(report.tokens))

    def watch_engine(self, engine: Engine) -> None:
        """Count driver errors and follow pool usage on ``engine``'s events."""

        def on_error(context: Any) -> None:
            wrapped = context.sqlalchemy_exception or context.original_exception
            self.db_errors.labels(error_kind(wrapped)).inc()

        event.listen(engine, "handle_error", on_error)
        # Counted from the events themselves: at "checkin" time the pool's own
        # counters have not moved yet.
        checked_out, open_ = self.pool.labels("checked_out"), self.pool.labels("open")
        pool: Any = engine.pool
        if hasattr(pool, "checkedin"):  # QueuePool: start from what start-up already opened
            checked_out.set(pool.checkedout())
            open_.set(pool.checkedin() + pool.checkedout())
        event.listen(pool, "checkout", lambda *_: checked_out.inc())
        event.listen(pool, "checkin", lambda *_: checked_out.dec())
        event.listen(pool, "connect", lambda *_: open_.inc())
        for gone in ("close", "detach"):
            event.listen(pool, gone, lambda *_: open_.dec())
        size = getattr(pool, "size", None)
        if callable(size):  # QueuePool; SQLite in memory keeps one static connection
            self.pool_size.set(size())


def error_kind(exc: BaseException) -> str:
    from sqlalchemy.exc import IntegrityError

    if is_retryable(exc):
        return "retryable"
    if isinstance(exc, IntegrityError):
        return "integrity"
    if is_unavailable(exc):
        return "unavailable"
    return "other"


def exposition_registry(metrics: Metrics) -> CollectorRegistry:
    """What ``/metrics`` shows: this process's registry, or in multiprocess mode
    the sum over every worker's files."""
    if multiprocess_dir() is None:
        return metrics.registry
    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return registry


def metrics_site(registry: CollectorRegistry) -> Site:
    """A web site with ``/metrics`` (everything else 404)."""
    from prometheus_client.twisted import MetricsResource

    root: Any = Resource()  # type: ignore[no-untyped-call]
    resource: Any = MetricsResource(registry=registry)  # type: ignore[no-untyped-call]
    root.putChild(METRICS_PATH, resource)
    site: Site = _QuietSite(root)  # type: ignore[no-untyped-call]
    return site


class _QuietSite(Site):
    """No request log: a scrape every 15 s would drown the server log."""

    def log(self, request: Any) -> None:
        pass


def metrics_service(listen: HostPort, metrics: Metrics) -> Any:
    """The Twisted service listening for scrapes on ``listen``."""
    site = metrics_site(exposition_registry(metrics))
    site.noisy = False  # nor "Starting factory" lines per connection
    return internet.TCPServer(  # type: ignore[no-untyped-call]
        listen.port, site, interface=listen.host
    )
