"""What the service-account and token commands share: expiry arguments, new
token values, audit events and the refusal to touch internal accounts.

Token values are made here and handed straight to the store inside the same
thread-pool call, so a value exists in clear only in that call and in the
command's result; nothing here logs or audits it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from ldapsrv.admin.context import AdminContext, Caller
from ldapsrv.admin.errors import FORBIDDEN, INVALID, AdminError
from ldapsrv.admin.registry import Arg, Args, ArgType, max_length, non_empty
from ldapsrv.auth.expiry import parse_expiry
from ldapsrv.auth.ports import NewToken
from ldapsrv.auth.tokens import IssuedToken, issue_token
from ldapsrv.directory.records import AccountKind, AuditEvent, TokenIntent, TokenRecord

EXPIRING = Arg(
    "expiring",
    ArgType.BOOLEAN,
    help="false: the token never expires (and is never rotated automatically)",
)
EXPIRES = Arg(
    "expires",
    ArgType.STRING,
    checks=(non_empty, max_length(64)),
    help="expiry as an ISO date/datetime or a duration such as 90d, 12h, 1y",
)
DESCRIPTION = Arg("description", ArgType.STRING, checks=(max_length(1024),), help="free text")


@dataclass(frozen=True, slots=True)
class Expiry:
    """When a new token expires, and the lifetime its rotations will repeat."""

    expiring: bool
    expires_at: datetime | None
    lifetime_seconds: int | None


def resolve_expiry(args: Args, now: datetime, default_lifetime: timedelta) -> Expiry:
    """Turn ``expiring``/``expires`` into an expiry; AdminError(invalid) names the argument.

    The lifetime is measured from ``now`` even for an absolute date, so a token
    given "until 2026-01-01" is rotated to another lifetime of the same length.
    """
    expiring = args.boolean("expiring", default=True)
    text = args.optional_string("expires")
    if not expiring:
        if text is not None:
            raise AdminError(
                INVALID, "argument 'expires': cannot be combined with expiring=false (no expiry)"
            )
        return Expiry(False, None, None)
    if text is None:
        expires_at = now + default_lifetime
    else:
        try:
            expires_at = parse_expiry(text, now)
        except ValueError as exc:
            raise AdminError(INVALID, f"argument 'expires': {exc}") from None
        # The store keeps whole seconds: report the instant it will keep.
        expires_at = expires_at.replace(microsecond=0)
    lifetime = int((expires_at - now).total_seconds())
    if lifetime <= 0:
        raise AdminError(INVALID, "argument 'expires': must be in the future")
    return Expiry(True, expires_at, lifetime)


def new_token(
    ctx: AdminContext,
    *,
    identifier: str,
    account_name: str,
    intent: TokenIntent,
    expiry: Expiry,
    description: str | None,
) -> tuple[NewToken, IssuedToken]:
    """A fresh token value and the row that stores it. Blocking (bcrypt): call it
    only inside ``ctx.blocking.run``.

    The encrypted copy is made only when ``tokens.viewable`` is on; otherwise
    the value exists nowhere after the command's answer.
    """
    vault = ctx.vault if ctx.config.tokens_viewable else None
    issued = issue_token(ctx.config.token_bcrypt_cost, vault)
    spec = NewToken(
        identifier=identifier,
        account_name=account_name,
        intent=intent,
        lookup_id=issued.lookup_id,
        secret_hash=issued.secret_hash,
        encrypted_value=issued.encrypted_value,
        expiring=expiry.expiring,
        expires_at=expiry.expires_at,
        lifetime_seconds=expiry.lifetime_seconds,
        description=description,
    )
    return spec, issued


def audit(caller: Caller, action: str, target: str, **details: str) -> AuditEvent:
    """An audit event for a control-socket change. Callers pass facts, never a secret."""
    return AuditEvent(
        actor=caller.describe(),
        channel=caller.channel,
        action=action,
        target=target,
        details=tuple(sorted(details.items())),
    )


def refuse_internal_account(kind: AccountKind, account: str, done: str) -> None:
    """Internal service accounts belong to the server (its health check binds
    with one): an admin changing them would break the server, so none may."""
    if kind is AccountKind.INTERNAL_SERVICE_ACCOUNT:
        raise AdminError(
            FORBIDDEN,
            f"{account!r} is an internal service account that ldapsrv manages itself; "
            f"it cannot be {done}, neither on the control socket nor on the management API",
        )


def refuse_internal_token(token: TokenRecord, done: str) -> None:
    """The same rule for the tokens of internal accounts."""
    if token.account_kind is AccountKind.INTERNAL_SERVICE_ACCOUNT:
        raise AdminError(
            FORBIDDEN,
            f"token {token.identifier!r} belongs to the internal service account "
            f"{token.account_name!r}, which ldapsrv manages itself; it cannot be {done} "
            "neither on the control socket nor on the management API",
        )


def copy_notice(identifier: str, viewable: bool) -> str:
    """What an admin must do with a value they are shown."""
    if viewable:
        return (
            "Store this token safely now, e.g. in a password manager: it is a password. "
            f"Admins can show it again with 'ldapsrv token view {identifier}'."
        )
    return (
        "Store this token safely now, e.g. in a password manager: it is a password, "
        "and the server keeps no viewable copy, so it will not be shown again."
    )
