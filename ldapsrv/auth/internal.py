"""Internal service accounts: made and owned by the server itself.

``ldapsrv-health`` is the account ``ldapsrv health`` binds with to prove that
bind and search work end to end. Admins can neither create, edit nor delete
it; the server (re)creates it at start-up with a non-expiring app-password token
whose encrypted copy is always kept, so the health check can read it back
whatever ``tokens.viewable`` says.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Protocol

from ldapsrv.auth.ports import NewSecret, NewToken, ServiceAccountStore, TokenStore
from ldapsrv.auth.tokens import issue_token
from ldapsrv.auth.vault import TokenVault, VaultError
from ldapsrv.directory.records import AccountKind, AuditEvent, TokenIntent
from ldapsrv.errors import AlreadyExists, NotFound

log = logging.getLogger("ldapsrv.tokens")

HEALTH_ACCOUNT = "ldapsrv-health"
HEALTH_TOKEN = "ldapsrv-health"


class InternalStore(ServiceAccountStore, TokenStore, Protocol):
    pass


def _audit(action: str, target: str) -> AuditEvent:
    return AuditEvent(actor="ldapsrv", channel="server", action=action, target=target)


def ensure_health_account(
    store: InternalStore, vault: TokenVault, cost: int, now: datetime
) -> None:
    """Create the health account and its token if missing; give the token a new
    value if its encrypted copy cannot be read with this server's key. Blocking."""
    try:
        account = store.get_service_account(HEALTH_ACCOUNT)
    except NotFound:
        issued = issue_token(cost, vault)
        token = NewToken(
            identifier=HEALTH_TOKEN,
            account_name=HEALTH_ACCOUNT,
            intent=TokenIntent.APP_PASSWORD,
            lookup_id=issued.lookup_id,
            secret_hash=issued.secret_hash,
            encrypted_value=issued.encrypted_value,
            expiring=False,
            expires_at=None,
            lifetime_seconds=None,
            description="used by `ldapsrv health`",
        )
        try:
            store.create_service_account(
                HEALTH_ACCOUNT,
                kind=AccountKind.INTERNAL_SERVICE_ACCOUNT,
                description="ldapsrv's own health check (managed by the server)",
                token=token,
                audit=_audit("service_account.create", f"service account {HEALTH_ACCOUNT}"),
            )
            log.info("created the internal service account %s", HEALTH_ACCOUNT)
        except AlreadyExists:
            pass  # another server sharing the database made it first
        return
    if account.kind != AccountKind.INTERNAL_SERVICE_ACCOUNT:
        log.warning(
            "an account named %s exists but is not the internal one: `ldapsrv health` "
            "will not work until it is renamed or removed",
            HEALTH_ACCOUNT,
        )
        return
    record = store.get_token(HEALTH_TOKEN)
    if record.encrypted_value is not None:
        try:
            vault.decrypt(record.encrypted_value, record.lookup_id)
            return
        except VaultError:
            pass
    issued = issue_token(cost, vault)
    secret = NewSecret(
        lookup_id=issued.lookup_id,
        secret_hash=issued.secret_hash,
        encrypted_value=issued.encrypted_value,
        expires_at=None,
        rotated_at=now,
        hook_pending=False,
    )
    store.replace_secret(
        HEALTH_TOKEN, record.generation, secret, _audit("token.rotate", f"token {HEALTH_TOKEN}")
    )
    log.info("gave %s a new token readable with this server's key", HEALTH_ACCOUNT)
