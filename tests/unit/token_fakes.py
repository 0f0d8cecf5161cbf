"""An in-memory ``TokenStore`` for the token unit tests.

Small and obviously right, with the semantics the real store promises and the
rotation logic depends on: ``replace_secret`` is a compare-and-swap on
``generation`` under one lock, so two Rotators sharing a FakeTokenStore behave
like two servers sharing a database. Audit events are kept in ``audit``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from ldapsrv.admin.testing import InMemoryTokenTable
from ldapsrv.auth.ports import NewSecret, NewToken
from ldapsrv.directory.records import AccountKind, AuditEvent, TokenIntent, TokenRecord
from ldapsrv.errors import AlreadyExists, NotFound

T0 = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)


class FakeClock:
    """A settable clock: ``clock()`` is now, ``advance`` moves it on."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


class FakeTokenStore(InMemoryTokenTable):
    """The admin plane's in-memory token table, with accounts given as a name ->
    kind map, audit events kept in ``audit`` and ``replace_secret`` calls counted."""

    def __init__(
        self,
        accounts: dict[str, AccountKind] | None = None,
        clock: Callable[[], datetime] = lambda: T0,
    ) -> None:
        self.accounts = dict(accounts or {"nas": AccountKind.SERVICE_ACCOUNT})
        self.clock = clock
        self._tokens: dict[str, TokenRecord] = {}
        self.audit: list[AuditEvent] = []
        self.replace_calls = 0
        self._next_id = 1
        self._lock = threading.RLock()

    @property
    def rows(self) -> dict[str, TokenRecord]:
        """The rows by lower-case identifier, for tests that edit one directly."""
        return self._tokens

    def _record_audit(self, event: AuditEvent | None) -> None:
        if event is not None:
            self.audit.append(event)

    def create_token(self, spec: NewToken, audit: AuditEvent | None = None) -> TokenRecord:
        with self._lock:
            if spec.identifier.lower() in self._tokens:
                raise AlreadyExists(f"token {spec.identifier!r} already exists")
            if spec.account_name not in self.accounts:
                raise NotFound(f"no account {spec.account_name!r}")
            record = TokenRecord(
                id=self._next_id,
                identifier=spec.identifier,
                account_name=spec.account_name,
                account_kind=self.accounts[spec.account_name],
                intent=spec.intent,
                description=spec.description,
                lookup_id=spec.lookup_id,
                secret_hash=spec.secret_hash,
                encrypted_value=spec.encrypted_value,
                expiring=spec.expiring,
                expires_at=spec.expires_at,
                lifetime_seconds=spec.lifetime_seconds,
                created=self.clock(),
                last_used_at=None,
                last_used_address=None,
                rotated_at=None,
                generation=1,
                hook_pending=False,
            )
            self._next_id += 1
            self._tokens[spec.identifier.lower()] = record
            self._record_audit(audit)
            return record

    def list_tokens(self, account_name: str | None = None) -> list[TokenRecord]:
        with self._lock:
            rows = [r for r in self._tokens.values() if account_name in (None, r.account_name)]
            return sorted(rows, key=lambda r: r.identifier)

    def replace_secret(
        self,
        identifier: str,
        expected_generation: int,
        secret: NewSecret,
        audit: AuditEvent | None = None,
    ) -> TokenRecord | None:
        with self._lock:
            self.replace_calls += 1
            return super().replace_secret(identifier, expected_generation, secret, audit)


def new_token(
    identifier: str = "nas-backup",
    *,
    lookup_id: str = "AAAAAAAAAAAA",
    secret_hash: str = "$2b$04$invalidinvalidinvalidinvalidinvalidinvalidinvalidinval",
    encrypted_value: str | None = None,
    account_name: str = "nas",
    intent: TokenIntent = TokenIntent.APP_PASSWORD,
    expiring: bool = True,
    expires_at: datetime | None = T0 + timedelta(days=1),
    lifetime: timedelta | None = timedelta(days=1),
    description: str | None = None,
) -> NewToken:
    return NewToken(
        identifier=identifier,
        account_name=account_name,
        intent=intent,
        lookup_id=lookup_id,
        secret_hash=secret_hash,
        encrypted_value=encrypted_value,
        expiring=expiring,
        expires_at=expires_at,
        lifetime_seconds=int(lifetime.total_seconds()) if lifetime is not None else None,
        description=description,
    )
