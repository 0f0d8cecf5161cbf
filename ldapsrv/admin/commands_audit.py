"""audit.list: the audit trail and a summary of token use.

Changes are in the trail already (every admin command writes its event in the
store transaction of its change). Token use is not: recording every bind
would make the trail mostly binds, so each token keeps only its last use (time
and address, written at most once a minute), and this command shows that next
to the events. Neither part ever holds a secret.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

from ldapsrv.admin.context import AdminContext, Caller
from ldapsrv.admin.errors import INVALID, UNAVAILABLE, AdminError
from ldapsrv.admin.registry import (
    Access,
    Arg,
    Args,
    ArgType,
    CommandRegistry,
    Json,
    JsonObject,
    int_range,
    max_length,
    non_empty,
)
from ldapsrv.admin.render import iso_utc
from ldapsrv.auth.expiry import parse_duration
from ldapsrv.directory.records import AuditEvent, Permission, TokenRecord

MAX_LIMIT = 100_000
DEFAULT_LIMIT = 1000
SINCE_FORMS = "a duration ago (30m, 1h, 7d, 2w, 1y), a date (2025-01-31, UTC) or an ISO date-time"
_DURATION = re.compile(r"\d{1,9}\s*[smhdwy]", re.ASCII | re.IGNORECASE)


def parse_since(text: str, now: datetime) -> datetime:
    """The instant ``--since`` means: a duration counts back from ``now``; a date
    is that day's start (UTC); a date-time without a zone is UTC, like every
    time the server keeps. ValueError names the accepted forms."""
    stripped = text.strip()
    try:
        if _DURATION.fullmatch(stripped):
            return now - parse_duration(stripped)
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", stripped):
            return datetime.combine(date.fromisoformat(stripped), datetime.min.time(), UTC)
        parsed = datetime.fromisoformat(stripped.replace("Z", "+00:00"))
    except (ValueError, OverflowError):
        raise ValueError(f"cannot read {text!r}: expected {SINCE_FORMS}") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def render_event(at: datetime, event: AuditEvent) -> JsonObject:
    details: dict[str, Json] = dict(event.details)
    return {
        "at": iso_utc(at),
        "actor": event.actor,
        "channel": event.channel,
        "action": event.action,
        "target": event.target,
        "details": details,
    }


def render_token_use(token: TokenRecord) -> JsonObject:
    return {
        "identifier": token.identifier,
        "account": token.account_name,
        "last_used": None if token.last_used_at is None else iso_utc(token.last_used_at),
        "last_used_address": token.last_used_address,
    }


async def audit_list(ctx: AdminContext, caller: Caller, args: Args) -> JsonObject:
    reader = ctx.audit_log
    if reader is None:
        raise AdminError(UNAVAILABLE, "this server was started without the audit trail wired in")
    text = args.optional_string("since")
    since = None
    if text is not None:
        try:
            since = parse_since(text, ctx.clock())
        except ValueError as exc:
            raise AdminError(INVALID, f"argument 'since': {exc}") from None
    limit = args.optional_integer("limit") or DEFAULT_LIMIT

    def read() -> JsonObject:
        events: list[Json] = [
            render_event(at, e) for at, e in reader.list_audit(since=since, limit=limit)
        ]
        tokens: list[Json] = [render_token_use(t) for t in ctx.tokens.list_tokens()]
        return {
            "since": None if since is None else iso_utc(since),
            "events": events,
            "token_use": tokens,
        }

    return await ctx.blocking.run(read)


def register(registry: CommandRegistry) -> None:
    """Add audit.list to ``registry``."""
    registry.register(
        "audit.list",
        audit_list,
        (
            Arg("since", ArgType.STRING, checks=(non_empty, max_length(64)), help=SINCE_FORMS),
            Arg("limit", ArgType.INTEGER, checks=(int_range(1, MAX_LIMIT),), help="newest N"),
        ),
        "the audit trail (oldest first) and each token's last use",
        access=Access(Permission.READ_AUDIT),
    )
