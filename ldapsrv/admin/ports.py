"""What the admin plane needs from the rest of the server, as Protocols.

The command handlers depend on these shapes, not on ``SqlDirectory``, so
they can be tested against an in-memory fake (``ldapsrv.admin.testing``) and
so the control socket never learns how the directory is stored. Only the
store's plain ``NewUser`` value is shared. ``SqlDirectory`` satisfies
``DirectoryPort`` (and the token and service-account ports of
``ldapsrv.auth.ports``) structurally; ``ldapsrv.blocking.Blocking`` satisfies
``BlockingRunner``; ``ldapsrv.auth.rotation.Rotator`` satisfies
``TokenRotator``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, ParamSpec, Protocol, TypeVar

from twisted.internet.defer import Deferred

from ldapsrv.directory.records import AuditEvent, GroupRecord, TokenRecord, UserRecord
from ldapsrv.store.directory import NewUser

if TYPE_CHECKING:
    from ldapsrv.auth.tokens import IssuedToken

__all__ = ["AuditReader", "BlockingRunner", "DirectoryPort", "NewUser", "TokenRotator"]

P = ParamSpec("P")
T = TypeVar("T")


class DirectoryPort(Protocol):
    """The store's synchronous user/group operations.

    Every method blocks (SQL): call them only through ``BlockingRunner.run``.
    They raise the domain errors of ``ldapsrv.errors`` (NotFound,
    AlreadyExists, InvalidValue, RangeExhausted, StoreUnavailable).

    Every change takes the ``audit`` event that records it, which the store
    writes in the same transaction: the trail can neither miss a change nor
    record one that was rolled back.
    """

    def create_user(self, spec: NewUser, audit: AuditEvent | None = None) -> UserRecord: ...

    def get_user(self, name: str) -> UserRecord: ...

    def list_users(self) -> Sequence[UserRecord]: ...

    def delete_user(self, name: str, audit: AuditEvent | None = None) -> None: ...

    def create_group(
        self,
        name: str,
        *,
        gid_number: int | None = None,
        description: str | None = None,
        audit: AuditEvent | None = None,
    ) -> GroupRecord: ...

    def get_group(self, name: str) -> GroupRecord: ...

    def list_groups(self) -> Sequence[GroupRecord]: ...

    def delete_group(self, name: str, audit: AuditEvent | None = None) -> None: ...

    def add_member(self, group: str, user: str, audit: AuditEvent | None = None) -> None: ...

    def remove_member(self, group: str, user: str, audit: AuditEvent | None = None) -> None: ...

    def set_password_hash(
        self, name: str, password_hash: str, audit: AuditEvent | None = None
    ) -> None: ...

    def set_disabled(self, name: str, disabled: bool, audit: AuditEvent | None = None) -> None:
        """People only; NotFound for anyone else."""
        ...


class AuditReader(Protocol):
    """Reading the audit trail (``SqlDirectory.list_audit``). Blocking."""

    def list_audit(
        self, *, since: datetime | None = None, limit: int = 1000
    ) -> list[tuple[datetime, AuditEvent]]:
        """The newest ``limit`` events at or after ``since``, oldest first."""
        ...


class BlockingRunner(Protocol):
    """Runs blocking work off the reactor thread (``ldapsrv.blocking.Blocking``)."""

    def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> Deferred[T]: ...


class TokenRotator(Protocol):
    """Rotates one token now: new secret, new expiry of the same lifetime, audit
    event and rotation hook, exactly as automatic rotation does, so ``token
    rotate`` and the expiry job cannot drift apart. Blocking (bcrypt, SQL)."""

    def rotate(
        self, identifier: str, *, actor: str, channel: str
    ) -> tuple[TokenRecord, IssuedToken]: ...
