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
from typing import TYPE_CHECKING, ParamSpec, Protocol, TypeVar

from twisted.internet.defer import Deferred

from ldapsrv.directory.records import GroupRecord, TokenRecord, UserRecord
from ldapsrv.store.directory import NewUser

if TYPE_CHECKING:
    from ldapsrv.auth.tokens import IssuedToken

__all__ = ["BlockingRunner", "DirectoryPort", "NewUser", "TokenRotator"]

P = ParamSpec("P")
T = TypeVar("T")


class DirectoryPort(Protocol):
    """The store's synchronous user/group operations.

    Every method blocks (SQL): call them only through ``BlockingRunner.run``.
    They raise the domain errors of ``ldapsrv.errors`` (NotFound,
    AlreadyExists, InvalidValue, RangeExhausted, StoreUnavailable).
    """

    def create_user(self, spec: NewUser) -> UserRecord: ...

    def get_user(self, name: str) -> UserRecord: ...

    def list_users(self) -> Sequence[UserRecord]: ...

    def delete_user(self, name: str) -> None: ...

    def create_group(
        self, name: str, *, gid_number: int | None = None, description: str | None = None
    ) -> GroupRecord: ...

    def get_group(self, name: str) -> GroupRecord: ...

    def list_groups(self) -> Sequence[GroupRecord]: ...

    def delete_group(self, name: str) -> None: ...

    def add_member(self, group: str, user: str) -> None: ...

    def remove_member(self, group: str, user: str) -> None: ...

    def set_password_hash(self, name: str, password_hash: str) -> None: ...


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
