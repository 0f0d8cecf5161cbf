"""What a command handler is given: the server's services and who is calling."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from ldapsrv.admin.ports import AuditReader, BlockingRunner, DirectoryPort, TokenRotator
from ldapsrv.auth.ports import PermissionStore, ServiceAccountStore, TokenStore
from ldapsrv.auth.throttle import BindThrottle
from ldapsrv.config import Config

if TYPE_CHECKING:  # the vault pulls in cryptography; handlers import it where they use it
    from ldapsrv.auth.vault import TokenVault
    from ldapsrv.observability.monitor import ServerMonitor

CONTROL_SOCKET: str = "control-socket"
MANAGEMENT_API: str = "api"


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Caller:
    """Who sent a command, for the audit trail.

    On the control socket the kernel vouches for uid/gid/pid (SO_PEERCRED), so
    they are facts, not claims; None where the platform cannot tell (or in
    tests over an in-memory transport). On the management API the caller is
    the authenticated ``account``, the public ``token`` identifier it used
    (never the secret) and the client ``address``.
    """

    channel: str
    uid: int | None = None
    gid: int | None = None
    pid: int | None = None
    account: str | None = None
    token: str | None = None
    address: str | None = None

    def describe(self) -> str:
        if self.account is not None:
            return f"{self.channel} account={self.account} token={self.token}"
        return f"{self.channel} uid={self.uid} gid={self.gid} pid={self.pid}"


@dataclass(frozen=True, slots=True)
class AdminContext:
    """The services every handler may use; one per server, built by service.py.

    Later issues add their ports here (permissions, status) as new fields, so
    handlers keep one argument for all of them.

    - ``tokens`` / ``service_accounts``: the store (``SqlDirectory``) again,
      seen through the ports of ``ldapsrv.auth.ports``.
    - ``rotator``: rotates a token on request; None where rotation is not set
      up (``token rotate`` then answers ``unavailable``).
    - ``vault``: encrypts viewable copies and decrypts them for ``token view``
      and ``health.credentials``. It must be wired even when
      ``tokens.viewable`` is off: the health check's own token is always kept
      encrypted, and handlers consult the config before issuing viewable copies.
    - ``clock``: "now" for expiries, injectable so tests can pin it.
    - ``tokens_changed``: called after a command gave a token a new expiry, so
      the rotation job can wake at that expiry rather than at its next check.
    - ``throttle`` / ``started_at`` / ``monitor``: for ``server.status`` (``monitor``:
      live connections and a database check; None outside a running server).
    - ``permissions`` / ``audit_log``: the store again (grants, and reading the
      audit trail). Optional so a server built before access control still
      starts; the ``permission.*`` and ``audit.list`` commands then answer
      ``unavailable`` rather than fail in a way that looks like a bug.
    """

    directory: DirectoryPort
    blocking: BlockingRunner
    config: Config
    tokens: TokenStore
    service_accounts: ServiceAccountStore
    rotator: TokenRotator | None = None
    vault: TokenVault | None = None
    clock: Callable[[], datetime] = field(default=utc_now)
    tokens_changed: Callable[[], None] = field(default=lambda: None)
    permissions: PermissionStore | None = None
    audit_log: AuditReader | None = None
    throttle: BindThrottle | None = None
    started_at: datetime | None = None
    monitor: ServerMonitor | None = None
