"""Binds: people with their password, any account with an app-password token.

Every refusal looks the same to the client (invalidCredentials); the reason is
returned here only so that the server can log it. Blocking (SQL, bcrypt): run
in the thread pool. A token bind always reads the token row from the database,
so a deleted or rotated token stops working at once on every server; only the
bcrypt step is cached (see ``TokenVerifier``).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Protocol

from ldapsrv.auth.passwords import (
    PasswordRejected,
    check_password_rules,
    hash_password,
    is_legacy_hash,
    needs_rehash,
    verify_password,
)
from ldapsrv.auth.ports import PermissionStore, TokenStore
from ldapsrv.auth.throttle import BindThrottle
from ldapsrv.auth.tokens import TokenVerifier, parse_token, refusal_reason
from ldapsrv.directory.ports import DirectoryReader
from ldapsrv.directory.records import (
    AccountKind,
    AuditEvent,
    Credentials,
    EffectivePermissions,
)
from ldapsrv.errors import NotFound

# Last-used time and address are written at most this often per token, so a host
# binding many times a second does not turn every bind into a write.
USE_RECORD_INTERVAL = timedelta(seconds=60)


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class BindOutcome:
    name: str | None  # the account's stored name when accepted
    reason: str  # why it was refused, for the log only
    via: str = "password"  # "password" or "token <identifier>", for the log
    permissions: EffectivePermissions = field(default_factory=EffectivePermissions)
    delay: float = 0.0  # seconds to wait before answering a refusal (throttling)
    #: An accepted token bind that a bind cache may answer again, unchanged, until
    #: this instant (token expiry, or when its last use is due to be written), as
    #: long as nothing changes in the database meanwhile. None: check every time.
    reusable_until: datetime | None = None

    @property
    def accepted(self) -> bool:
        return self.name is not None


class WrongPassword(Exception):
    """The current password given for a change does not match."""


class ServiceAccountHasNoPassword(Exception):
    """Password Modify for a service account: it binds with tokens only."""


class NotPermitted(Exception):
    """The bound account lacks the permission; the message names it."""


class AuditSink(Protocol):
    def record_audit(self, event: AuditEvent) -> None: ...


class PasswordAuthenticator:
    def __init__(
        self,
        reader: DirectoryReader,
        bcrypt_cost: int,
        tokens: TokenStore | None = None,
        verifier: TokenVerifier | None = None,
        clock: Callable[[], datetime] = utcnow,
        permissions: PermissionStore | None = None,
        audit: AuditSink | None = None,
        throttle: BindThrottle | None = None,
    ) -> None:
        self.reader = reader
        self.cost = bcrypt_cost
        self.tokens = tokens
        self.verifier = verifier
        self.clock = clock
        self.permissions = permissions
        self.audit = audit
        self.throttle = throttle
        # A store that can answer a bind's several reads in one transaction says so
        # with ``reading()`` (SqlDirectory does); fakes need not.
        self._reading: Callable[[], AbstractContextManager[object]] = getattr(
            reader, "reading", nullcontext
        )

    def check(
        self,
        name: str,
        password: bytes,
        address: str | None = None,
        bind_dn: str | None = None,
    ) -> BindOutcome:
        """Verify a bind (``name``: the account the bind DN names, "" if none).

        With throttling, a locked-out address or (DN, address) pair is refused
        before any check, and a refusal carries the delay to wait before
        answering. An accepted bind carries the account's permissions.
        Its reads (throttle counters, credentials, token row, grants) share one
        transaction; its writes (counters, last use, rehash) have their own.
        """
        with self._reading():
            return self._check(name, password, address, bind_dn)

    def _check(
        self, name: str, password: bytes, address: str | None, bind_dn: str | None
    ) -> BindOutcome:
        # The account's own name, so that every spelling of one DN shares a
        # counter; the raw DN only when it names no account.
        key = name or (bind_dn or "")
        decision = self.throttle.before(key, address) if self.throttle is not None else None
        if decision is not None and decision.refuse:
            return BindOutcome(None, decision.reason, via="throttling")
        outcome = self._verify(name, password, address)
        if self.throttle is not None:
            if outcome.accepted:
                self.throttle.succeeded(key, address, decision)
                if decision is not None and decision.pending:
                    # Counters were cleared: not a decision to repeat as it stands.
                    outcome = replace(outcome, reusable_until=None)
            else:
                outcome = replace(outcome, delay=self.throttle.failed(key, address))
        if outcome.name is not None and self.permissions is not None:
            granted = self.permissions.effective_permissions(outcome.name)
            outcome = replace(outcome, permissions=granted)
        return outcome

    def _verify(self, name: str, password: bytes, address: str | None) -> BindOutcome:
        credentials = self.reader.get_credentials(name) if name else None
        lookup_id = parse_token(password) if self.tokens is not None else None
        if lookup_id is not None:
            return self._check_token(name, credentials, lookup_id, password, address)
        if credentials is None:
            verify_password(password, None, self.cost)  # same cost as a wrong password
            return BindOutcome(None, "no such account")
        if credentials.kind != AccountKind.USER:
            verify_password(password, None, self.cost)
            return BindOutcome(None, "service accounts bind only with an app-password token")
        if not verify_password(password, credentials.password_hash, self.cost):
            if credentials.password_hash is None:
                return BindOutcome(None, "account has no password")
            return BindOutcome(None, "wrong password")
        if credentials.disabled:
            return BindOutcome(None, "account is disabled")
        assert credentials.password_hash is not None
        if needs_rehash(credentials.password_hash, self.cost):
            self.reader.set_password_hash(credentials.name, hash_password(password, self.cost))
            if is_legacy_hash(credentials.password_hash):
                self._audit(credentials.name, "user.upgrade_password_hash", credentials.name)
        return BindOutcome(credentials.name, "")

    def _check_token(
        self,
        name: str,
        credentials: Credentials | None,
        lookup_id: str,
        presented: bytes,
        address: str | None,
    ) -> BindOutcome:
        assert self.tokens is not None and self.verifier is not None
        record = self.tokens.find_token(lookup_id)
        if record is None:
            self.verifier.decoy(presented)
            return BindOutcome(None, f"unknown token (lookup id {lookup_id})")
        via = f"token {record.identifier}"
        # The secret is checked first, so that every refusal costs the same.
        if not self.verifier.verify(presented, record):
            return BindOutcome(None, "wrong token secret", via)
        if credentials is None or record.account_name.casefold() != name.casefold():
            return BindOutcome(None, f"token belongs to account {record.account_name}", via)
        now = self.clock()
        reason = refusal_reason(record, now)
        if reason is not None:
            return BindOutcome(None, reason, via)
        if credentials.disabled:
            return BindOutcome(None, "account is disabled", via)
        last_use = record.last_used_at
        if last_use is None or now - last_use >= USE_RECORD_INTERVAL:
            self.tokens.record_token_use(lookup_id, now, address)
            last_use = now
        until = last_use + USE_RECORD_INTERVAL  # when the next use is due to be written
        if record.expiring and record.expires_at is not None:
            until = min(until, record.expires_at)
        return BindOutcome(credentials.name, "", via, reusable_until=until)

    def change_password(self, name: str, old: bytes, new: bytes) -> None:
        """Self-service change: ``old`` must match. Raises WrongPassword,
        ServiceAccountHasNoPassword or PasswordRejected (naming the rule)."""
        credentials = self.reader.get_credentials(name)
        if credentials is not None and credentials.kind != AccountKind.USER:
            raise ServiceAccountHasNoPassword(
                f"{name} is a service account: it has no password and binds only with "
                "app-password tokens (ldapsrv token create/rotate)"
            )
        check_password_rules(new)
        if credentials is None or not verify_password(old, credentials.password_hash, self.cost):
            raise WrongPassword("the current password is wrong")
        if credentials.disabled:
            raise PasswordRejected("the account is disabled")
        self.reader.set_password_hash(credentials.name, hash_password(new, self.cost))
        self._audit(credentials.name, "user.change_password", credentials.name)

    def reset_password(self, actor: str, target: str, new: bytes) -> str:
        """An admin reset over LDAP (Password Modify with another person's DN).

        Needs ``reset_password``, granted for everyone or scoped to a group the
        target is in, checked now (not at bind time). Returns the target's stored
        name. Raises NotPermitted, NotFound (only to holders of an unscoped grant),
        ServiceAccountHasNoPassword or PasswordRejected.
        """
        credentials = self.reader.get_credentials(target)
        granted = (
            self.permissions.effective_permissions(actor)
            if self.permissions is not None
            else EffectivePermissions()
        )
        if credentials is None:
            if granted.reset_password_everyone:
                raise NotFound(f'no person named "{target}"')
            # The same answer as for an existing person: no existence leak.
            raise NotPermitted("setting this password needs the reset_password permission")
        allowed = granted.reset_password_everyone or (
            self.permissions is not None
            and any(
                self.permissions.is_member(scope, credentials.name)
                for scope in granted.reset_password_scopes
            )
        )
        if not allowed:
            raise NotPermitted("setting this password needs the reset_password permission")
        if credentials.kind != AccountKind.USER:
            raise ServiceAccountHasNoPassword(
                f"{credentials.name} is a service account: it has no password"
            )
        check_password_rules(new)  # after the permission: no hints for the unpermitted
        self.reader.set_password_hash(credentials.name, hash_password(new, self.cost))
        self._audit(actor, "user.reset_password", credentials.name)
        return credentials.name

    def _audit(self, actor: str, action: str, target: str) -> None:
        if self.audit is not None:
            self.audit.record_audit(
                AuditEvent(actor=actor, channel="ldap", action=action, target=f"user {target}")
            )
