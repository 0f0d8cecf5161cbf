"""server.status: what an admin checks first when logins fail.

Version and uptime, where the server listens, which database it uses (URL
without its password, its kind, and whether it answers right now), live
connections and workers (with ``[server] workers = N > 1``: the supervisor's
role, each worker process, and the connections summed over the live workers),
the TLS certificate's expiry, tokens expiring within
``monitoring.expiry_warning_days`` (each also logged as a warning), and the
failed-bind throttle: which client addresses and (bind DN, address) pairs are
being slowed or locked out right now, from the counters every server sharing
the database keeps.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.engine import make_url

from ldapsrv import __version__
from ldapsrv.admin.context import AdminContext, Caller
from ldapsrv.admin.registry import Access, Args, CommandRegistry, Json, JsonObject
from ldapsrv.admin.render import iso_utc
from ldapsrv.auth.throttle import ThrottleEntry
from ldapsrv.directory.records import Permission
from ldapsrv.observability.expiry import ExpiryReport, check_expiries, warn
from ldapsrv.observability.monitor import DatabaseCheck, ServerMonitor
from ldapsrv.store.engine import backend_name
from ldapsrv.tls import served_certificate_path

_DAY = 86400


def redacted_url(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL never reaches a running server; be safe anyway
        return "(unreadable URL)"


def render_throttle_entry(entry: ThrottleEntry) -> JsonObject:
    return {
        "kind": entry.kind,
        "subject": entry.subject,
        "failures": entry.failures,
        "first_failure": iso_utc(entry.first_failure_at),
        "last_failure": iso_utc(entry.last_failure_at),
        "locked_until": None if entry.locked_until is None else iso_utc(entry.locked_until),
        "delay_seconds": entry.delay,
    }


def render_expiries(report: ExpiryReport) -> JsonObject:
    cert = report.certificate
    certificate: Json = None
    if cert is not None:
        certificate = {
            "path": cert.path,
            "subject": cert.subject,
            "not_after": iso_utc(cert.not_after),
            "days_left": round(cert.seconds_left / _DAY, 1),
            "expiring": cert.expiring,
        }
    tokens: list[Json] = [
        {
            "identifier": t.identifier,
            "account": t.account_name,
            "expires_at": iso_utc(t.expires_at),
            "days_left": round(t.seconds_left / _DAY, 1),
        }
        for t in report.tokens
    ]
    warnings: list[Json] = list(report.warnings())
    return {
        "certificate": certificate,
        "certificate_error": report.certificate_error,
        "expiry_warning_days": int(report.window.total_seconds() // _DAY),
        "expiring_tokens": tokens,
        "warnings": warnings,
    }


def render_workers(monitor: ServerMonitor | None, threads: int) -> JsonObject:
    """This process's pid and thread pool, and the worker processes it supervises
    (none in a single process)."""
    processes: list[Json] = [
        {
            "slot": w.slot,
            "pid": w.pid,
            "ready": w.ready,
            "restarts": w.restarts,
            "started": None if w.started_at is None else iso_utc(w.started_at),
            "connections": {"active": w.active, "accepted": w.accepted},
        }
        for w in ([] if monitor is None else monitor.worker_processes())
    ]
    return {
        "pid": None if monitor is None else monitor.pid,
        "threads": threads,
        "processes": processes,
    }


def render_connections(monitor: ServerMonitor | None) -> Json:
    if monitor is None:
        return None
    active, accepted = monitor.connection_figures()
    return {"active": active, "accepted": accepted}


def render_database(url: str, check: DatabaseCheck | None) -> JsonObject:
    return {
        "database": redacted_url(url),
        "database_kind": check.kind if check is not None else backend_name(url),
        "database_reachable": None if check is None else check.reachable,
        "database_ms": None if check is None else round(check.ms, 3),
        "database_error": None if check is None else check.error,
    }


async def server_status(ctx: AdminContext, caller: Caller, args: Args) -> JsonObject:
    config = ctx.config
    now = ctx.clock()
    throttle = ctx.throttle
    monitor = ctx.monitor
    cert_path = served_certificate_path(config.tls_cert, config.data_dir)
    window = timedelta(days=config.expiry_warning_days)

    def read() -> tuple[list[ThrottleEntry], ExpiryReport, DatabaseCheck | None]:
        entries = [] if throttle is None else throttle.status(now)
        report = check_expiries(cert_path, ctx.tokens, now, window)
        database = None if monitor is None else monitor.check_database()
        return entries, report, database

    entries, report, database = await ctx.blocking.run(read)
    warn(report)  # an admin looking at status sees them; so does whoever reads the log
    if monitor is not None:
        monitor.expiry_checked(report)
    started: datetime | None = ctx.started_at
    listeners: list[Json] = []
    if config.listen is not None:
        listeners.append(f"ldap://{config.listen}")
    if config.ldaps_listen is not None:
        listeners.append(f"ldaps://{config.ldaps_listen}")
    if config.api_enabled and config.api_listen is not None:
        listeners.append(f"https://{config.api_listen}/api/v1")
    throttled: list[Json] = [render_throttle_entry(e) for e in entries]
    return {
        "version": __version__,
        "started": None if started is None else iso_utc(started),
        "uptime_seconds": None if started is None else int((now - started).total_seconds()),
        "listeners": listeners,
        "base_dn": config.base_dn,
        **render_database(config.database_url, database),
        "role": "single" if monitor is None else monitor.role,
        "connections": render_connections(monitor),
        "workers": render_workers(monitor, config.worker_threads),
        "metrics": None if monitor is None else monitor.metrics_url,
        **render_expiries(report),
        "throttling": "on" if throttle is not None else "off",
        "throttled": throttled,
    }


def register(registry: CommandRegistry) -> None:
    registry.register(
        "server.status",
        server_status,
        (),
        "version, uptime, listeners, database, connections, workers, certificate and "
        "token expiries, and the failed-bind throttle's state",
        access=Access(Permission.READ_AUDIT),
    )
