"""Who is calling: an account and one of its ``api`` tokens.

``Authorization: Basic base64(name:token)`` names the account and gives the
token; ``Authorization: Bearer token`` gives the token alone (its row says whose
it is). Only a live ``api`` token of an enabled person or service account
authenticates: app passwords (they are for LDAP binds), expired, rotated or
deleted tokens, internal accounts' tokens and people's passwords are all
refused the same way (401), with the reason in the server log only.

Like a token bind, every check reads the token row from the database, so a
deleted or rotated token stops working at once on every server; only bcrypt is
cached (``TokenVerifier``). Failures count in the failed-bind throttle
(``BindThrottle``), per address and per (name, address): a locked-out client
gets 429 without its token being checked, and a failure is answered after the
throttle's delay. Everything here blocks (SQL, bcrypt): run it in the thread
pool.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from ldapsrv.auth.binding import USE_RECORD_INTERVAL
from ldapsrv.auth.ports import TokenStore
from ldapsrv.auth.throttle import BindThrottle
from ldapsrv.auth.tokens import TokenVerifier, parse_token, refusal_reason
from ldapsrv.directory.records import AccountKind, Credentials, TokenIntent

MAX_HEADER_BYTES = 1024
"""Longer Authorization headers are refused unread (a token is 62 characters)."""


class CredentialsReader(Protocol):
    def get_credentials(self, name: str) -> Credentials | None: ...


@dataclass(frozen=True, slots=True)
class Presented:
    """What the client sent: an account name (Basic) or none (Bearer), and a secret."""

    name: str | None
    secret: bytes


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: the account's stored name and the token's public
    identifier (what the audit trail records; never the value)."""

    account: str
    token: str


@dataclass(frozen=True, slots=True)
class AuthOutcome:
    principal: Principal | None
    reason: str  # for the log only
    delay: float = 0.0  # seconds to wait before answering a failure
    locked_until: datetime | None = None  # set when the throttle refused outright


def parse_authorization(header: bytes | None) -> Presented | None:
    """The credentials in an ``Authorization`` header, or None when there are none
    usable (missing, another scheme, bad base64, no colon, not UTF-8)."""
    if header is None or len(header) > MAX_HEADER_BYTES:
        return None
    scheme, _, value = header.strip().partition(b" ")
    value = value.strip()
    if scheme.lower() == b"bearer" and value:
        return Presented(None, value)
    if scheme.lower() != b"basic" or not value:
        return None
    try:
        decoded = base64.b64decode(value, validate=True)
        name_bytes, colon, secret = decoded.partition(b":")
        name = name_bytes.decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    if not colon or not name:
        return None
    return Presented(name, secret)


class ApiAuthenticator:
    def __init__(
        self,
        tokens: TokenStore,
        accounts: CredentialsReader,
        verifier: TokenVerifier,
        clock: Callable[[], datetime],
        throttle: BindThrottle | None = None,
    ) -> None:
        self._tokens = tokens
        self._accounts = accounts
        self._verifier = verifier
        self._clock = clock
        self._throttle = throttle

    def authenticate(self, presented: Presented, address: str | None) -> AuthOutcome:
        """Check ``presented``, counting a failure in the throttle. Blocking."""
        key = presented.name or ""
        throttle = self._throttle
        decision = throttle.before(key, address) if throttle is not None else None
        if decision is not None and decision.refuse:
            return AuthOutcome(None, decision.reason, locked_until=decision.locked_until)
        outcome = self._check(presented, address)
        if throttle is not None:
            if outcome.principal is not None:
                throttle.succeeded(key, address, decision)
            else:
                return AuthOutcome(None, outcome.reason, delay=throttle.failed(key, address))
        return outcome

    def _check(self, presented: Presented, address: str | None) -> AuthOutcome:
        lookup_id = parse_token(presented.secret)
        if lookup_id is None:
            self._verifier.decoy(presented.secret)  # a password costs what a token does
            return AuthOutcome(None, "not a token (a password?)")
        record = self._tokens.find_token(lookup_id)
        if record is None:
            self._verifier.decoy(presented.secret)
            return AuthOutcome(None, f"unknown token (lookup id {lookup_id})")
        # The secret first, so that every refusal costs one bcrypt.
        if not self._verifier.verify(presented.secret, record):
            return AuthOutcome(None, f"wrong secret for token {record.identifier}")
        if presented.name is not None and presented.name.casefold() != (
            record.account_name.casefold()
        ):
            return AuthOutcome(
                None, f"token {record.identifier} belongs to account {record.account_name}"
            )
        now = self._clock()
        reason = refusal_reason(record, now, TokenIntent.API)
        if reason is not None:
            return AuthOutcome(None, reason)
        if record.account_kind is AccountKind.INTERNAL_SERVICE_ACCOUNT:
            return AuthOutcome(None, f"token {record.identifier} is an internal account's")
        credentials = self._accounts.get_credentials(record.account_name)
        if credentials is None:
            return AuthOutcome(None, f"account {record.account_name} no longer exists")
        if credentials.disabled:
            return AuthOutcome(None, f"account {record.account_name} is disabled")
        if record.last_used_at is None or now - record.last_used_at >= USE_RECORD_INTERVAL:
            self._tokens.record_token_use(lookup_id, now, address)
        return AuthOutcome(Principal(credentials.name, record.identifier), "")
