"""server.status: what an admin checks first when logins fail.

Version and uptime, where the server listens, which database it uses (URL
without its password), and the failed-bind throttle: which client addresses and
(bind DN, address) pairs are being slowed or locked out right now, from the
counters every server sharing the database keeps.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.engine import make_url

from ldapsrv import __version__
from ldapsrv.admin.context import AdminContext, Caller
from ldapsrv.admin.registry import Access, Args, CommandRegistry, Json, JsonObject
from ldapsrv.admin.render import iso_utc
from ldapsrv.auth.throttle import ThrottleEntry
from ldapsrv.directory.records import Permission


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


async def server_status(ctx: AdminContext, caller: Caller, args: Args) -> JsonObject:
    config = ctx.config
    now = ctx.clock()
    throttle = ctx.throttle

    def read() -> list[ThrottleEntry]:
        return [] if throttle is None else throttle.status(now)

    entries = await ctx.blocking.run(read)
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
        "database": redacted_url(config.database_url),
        "throttling": "on" if throttle is not None else "off",
        "throttled": throttled,
    }


def register(registry: CommandRegistry) -> None:
    registry.register(
        "server.status",
        server_status,
        (),
        "version, uptime, listeners, database, and the failed-bind throttle's state",
        access=Access(Permission.READ_AUDIT),
    )
