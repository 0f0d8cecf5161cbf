"""An in-memory ``TokenStore`` for the token unit tests.

Small and obviously right, with the semantics the real store promises and the
rotation logic depends on: ``replace_secret`` is a compare-and-swap on
``generation`` under one lock, so two Rotators sharing a FakeTokenStore behave
like two servers sharing a database. Audit events are kept in ``audit``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

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


class FakeTokenStore:
    def __init__(
        self,
        accounts: dict[str, AccountKind] | None = None,
        clock: Callable[[], datetime] = lambda: T0,
    ) -> None:
        self.accounts = dict(accounts or {"nas": AccountKind.SERVICE_ACCOUNT})
        self.clock = clock
        self.rows: dict[str, TokenRecord] = {}
        self.audit: list[AuditEvent] = []
        self.replace_calls = 0
        self._next_id = 1
        self._lock = threading.Lock()

    def _key(self, identifier: str) -> str:
        return identifier.casefold()

    def _row(self, identifier: str) -> TokenRecord:
        try:
            return self.rows[self._key(identifier)]
        except KeyError:
            raise NotFound(f"no token {identifier!r}") from None

    def create_token(self, spec: NewToken, audit: AuditEvent | None = None) -> TokenRecord:
        with self._lock:
            if self._key(spec.identifier) in self.rows:
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
            self.rows[self._key(spec.identifier)] = record
            if audit is not None:
                self.audit.append(audit)
            return record

    def get_token(self, identifier: str) -> TokenRecord:
        with self._lock:
            return self._row(identifier)

    def find_token(self, lookup_id: str) -> TokenRecord | None:
        with self._lock:
            return next((r for r in self.rows.values() if r.lookup_id == lookup_id), None)

    def list_tokens(self, account_name: str | None = None) -> list[TokenRecord]:
        with self._lock:
            rows = [r for r in self.rows.values() if account_name in (None, r.account_name)]
            return sorted(rows, key=lambda r: r.identifier)

    def delete_token(self, identifier: str, audit: AuditEvent | None = None) -> None:
        with self._lock:
            self._row(identifier)
            del self.rows[self._key(identifier)]
            if audit is not None:
                self.audit.append(audit)

    def replace_secret(
        self,
        identifier: str,
        expected_generation: int,
        secret: NewSecret,
        audit: AuditEvent | None = None,
    ) -> TokenRecord | None:
        with self._lock:
            self.replace_calls += 1
            row = self._row(identifier)
            if row.generation != expected_generation:
                return None
            updated = replace(
                row,
                lookup_id=secret.lookup_id,
                secret_hash=secret.secret_hash,
                encrypted_value=secret.encrypted_value,
                expires_at=secret.expires_at,
                rotated_at=secret.rotated_at,
                hook_pending=secret.hook_pending,
                generation=row.generation + 1,
            )
            self.rows[self._key(identifier)] = updated
            if audit is not None:
                self.audit.append(audit)
            return updated

    def tokens_due(self, now: datetime, limit: int = 100) -> list[TokenRecord]:
        with self._lock:
            due = [
                r
                for r in self.rows.values()
                if r.expiring and r.expires_at is not None and r.expires_at <= now
            ]
            return sorted(due, key=lambda r: (r.expires_at or now, r.id))[:limit]

    def next_expiry(self) -> datetime | None:
        with self._lock:
            times = [r.expires_at for r in self.rows.values() if r.expiring and r.expires_at]
            return min(times, default=None)

    def tokens_with_pending_hook(self) -> list[TokenRecord]:
        with self._lock:
            return [r for r in self.rows.values() if r.hook_pending]

    def clear_hook_pending(self, identifier: str, generation: int) -> None:
        with self._lock:
            row = self.rows.get(self._key(identifier))
            if row is not None and row.generation == generation:
                self.rows[self._key(identifier)] = replace(row, hook_pending=False)

    def record_token_use(self, lookup_id: str, at: datetime, address: str | None) -> None:
        with self._lock:
            for key, row in self.rows.items():
                if row.lookup_id == lookup_id:
                    self.rows[key] = replace(row, last_used_at=at, last_used_address=address)


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
