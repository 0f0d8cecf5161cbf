"""What the admin plane needs from the rest of the server, as Protocols.

The command handlers depend on these shapes, not on ``ldapsrv.store``, so
they can be tested against an in-memory fake and so the control socket never
learns how the directory is stored. ``SqlDirectory`` satisfies
``DirectoryPort`` structurally; ``ldapsrv.blocking.Blocking`` satisfies
``BlockingRunner``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ParamSpec, Protocol, TypeVar

from twisted.internet.defer import Deferred

from ldapsrv.directory.records import GroupRecord, UserRecord

P = ParamSpec("P")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class NewUser:
    """What an admin asks for when creating a person.

    Mirrors ``ldapsrv.store.directory.NewUser`` field for field until that
    module lands; then this becomes a re-export of it.
    """

    name: str
    password_hash: str | None = None
    uid_number: int | None = None
    gid_number: int | None = None
    display_name: str | None = None
    given_name: str | None = None
    surname: str | None = None
    mail: str | None = None
    home_directory: str | None = None
    login_shell: str | None = None
    gecos: str | None = None


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
