"""What a command handler is given: the server's services and who is calling."""

from __future__ import annotations

from dataclasses import dataclass

from ldapsrv.admin.ports import BlockingRunner, DirectoryPort
from ldapsrv.config import Config

CONTROL_SOCKET: str = "control-socket"


@dataclass(frozen=True, slots=True)
class Caller:
    """Who sent a command, for the audit trail.

    On the control socket the kernel vouches for uid/gid/pid (SO_PEERCRED), so
    they are facts, not claims; None where the platform cannot tell (or in
    tests over an in-memory transport). Other channels (a management API)
    will add their own identity fields.
    """

    channel: str
    uid: int | None = None
    gid: int | None = None
    pid: int | None = None

    def describe(self) -> str:
        return f"{self.channel} uid={self.uid} gid={self.gid} pid={self.pid}"


@dataclass(frozen=True, slots=True)
class AdminContext:
    """The services every handler may use; one per server, built by service.py.

    Later issues add their ports here (tokens, service accounts, permissions,
    audit, clock) as new fields, so handlers keep one argument for all of them.
    """

    directory: DirectoryPort
    blocking: BlockingRunner
    config: Config
