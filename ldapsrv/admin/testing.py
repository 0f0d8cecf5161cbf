"""Test support for the admin plane: an in-memory directory and a synchronous
``BlockingRunner``, plus a tiny control-socket server for end-to-end tests.

Shipped in the package (like ``twisted.internet.testing``) so unit tests,
e2e tests and later issues share one fake that behaves like the store: the
same errors for the same mistakes, case-insensitive names, numbers allocated
from the configured ranges and never reused.

``python -m ldapsrv.admin.testing --socket PATH`` serves the control socket
over the in-memory directory until SIGTERM.
"""

from __future__ import annotations

import argparse
import sys
import threading
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import ParamSpec, TypeVar

from twisted.internet.defer import Deferred, fail, succeed

from ldapsrv.admin.ports import NewUser
from ldapsrv.directory.names import validate_account_name, validate_group_name
from ldapsrv.directory.records import GroupRecord, UserRecord
from ldapsrv.errors import AlreadyExists, NotFound, RangeExhausted

P = ParamSpec("P")
T = TypeVar("T")


class SyncBlocking:
    """Runs the work at once on the calling thread: deterministic unit tests."""

    def __init__(self) -> None:
        self.calls = 0

    def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> Deferred[T]:
        self.calls += 1
        try:
            return succeed(fn(*args, **kwargs))
        except Exception:
            return fail()


class InMemoryDirectory:
    """A DirectoryPort over dicts, thread-safe so it can sit behind a real thread pool."""

    def __init__(
        self,
        uid_range: tuple[int, int] = (10000, 59999),
        gid_range: tuple[int, int] = (10000, 59999),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._lock = threading.Lock()
        self._users: dict[str, UserRecord] = {}
        self._groups: dict[str, GroupRecord] = {}
        self._members: dict[str, set[str]] = {}  # group key -> user keys
        self.password_hashes: dict[str, str | None] = {}
        self._uid_range = uid_range
        self._gid_range = gid_range
        self._used_uids: set[int] = set()
        self._used_gids: set[int] = set()
        self._next_id = 1
        self._clock = clock

    # helpers -----------------------------------------------------------------

    @staticmethod
    def _check_name(kind: str, name: str) -> str:
        if kind == "user":
            validate_account_name(name)
        else:
            validate_group_name(name)
        return name.lower()

    def _allocate(self, used: set[int], bounds: tuple[int, int], what: str) -> int:
        for number in range(bounds[0], bounds[1] + 1):
            if number not in used:
                return number
        raise RangeExhausted(f"no free {what} left in {bounds[0]}-{bounds[1]}")

    def _user(self, name: str) -> UserRecord:
        key = name.lower()
        if key not in self._users:
            raise NotFound(f"no user named {name!r}")
        groups = tuple(
            sorted(self._groups[g].name for g, members in self._members.items() if key in members)
        )
        return replace(self._users[key], group_names=groups)

    def _group(self, name: str) -> GroupRecord:
        key = name.lower()
        if key not in self._groups:
            raise NotFound(f"no group named {name!r}")
        members = tuple(sorted(self._users[u].name for u in self._members[key]))
        return replace(self._groups[key], member_names=members)

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    # DirectoryPort -----------------------------------------------------------

    def create_user(self, spec: NewUser) -> UserRecord:
        key = self._check_name("user", spec.name)
        with self._lock:
            if key in self._users:
                raise AlreadyExists(f"a user named {spec.name!r} already exists")
            if spec.uid_number is not None and spec.uid_number in self._used_uids:
                raise AlreadyExists(f"uid number {spec.uid_number} is already in use")
            uid = spec.uid_number or self._allocate(self._used_uids, self._uid_range, "uid")
            gid = spec.gid_number or uid  # the store uses a primary group; enough here
            now = self._clock()
            self._users[key] = UserRecord(
                id=self._new_id(),
                uuid=str(uuid.uuid4()),
                name=spec.name,
                uid_number=uid,
                gid_number=gid,
                display_name=spec.display_name,
                given_name=spec.given_name,
                surname=spec.surname,
                mail=spec.mail,
                home_directory=spec.home_directory or f"/home/{spec.name}",
                login_shell=spec.login_shell or "/bin/bash",
                gecos=spec.gecos,
                created=now,
                modified=now,
            )
            self._used_uids.add(uid)
            self.password_hashes[key] = spec.password_hash
            return self._user(key)

    def get_user(self, name: str) -> UserRecord:
        with self._lock:
            return self._user(name)

    def list_users(self) -> list[UserRecord]:
        with self._lock:
            return [self._user(k) for k in sorted(self._users)]

    def delete_user(self, name: str) -> None:
        with self._lock:
            key = self._user(name).name.lower()
            del self._users[key]
            self.password_hashes.pop(key, None)
            for members in self._members.values():
                members.discard(key)

    def create_group(
        self, name: str, *, gid_number: int | None = None, description: str | None = None
    ) -> GroupRecord:
        key = self._check_name("group", name)
        with self._lock:
            if key in self._groups:
                raise AlreadyExists(f"a group named {name!r} already exists")
            if gid_number is not None and gid_number in self._used_gids:
                raise AlreadyExists(f"gid number {gid_number} is already in use")
            gid = gid_number or self._allocate(self._used_gids, self._gid_range, "gid")
            now = self._clock()
            self._groups[key] = GroupRecord(
                id=self._new_id(),
                uuid=str(uuid.uuid4()),
                name=name,
                gid_number=gid,
                description=description,
                created=now,
                modified=now,
            )
            self._members[key] = set()
            self._used_gids.add(gid)
            return self._group(key)

    def get_group(self, name: str) -> GroupRecord:
        with self._lock:
            return self._group(name)

    def list_groups(self) -> list[GroupRecord]:
        with self._lock:
            return [self._group(k) for k in sorted(self._groups)]

    def delete_group(self, name: str) -> None:
        with self._lock:
            key = self._group(name).name.lower()
            del self._groups[key]
            del self._members[key]

    def add_member(self, group: str, user: str) -> None:
        with self._lock:
            group_key, user_key = self._group(group).name.lower(), self._user(user).name.lower()
            if user_key in self._members[group_key]:
                raise AlreadyExists(f"{user!r} is already a member of {group!r}")
            self._members[group_key].add(user_key)

    def remove_member(self, group: str, user: str) -> None:
        with self._lock:
            group_key, user_key = self._group(group).name.lower(), self._user(user).name.lower()
            if user_key not in self._members[group_key]:
                raise NotFound(f"{user!r} is not a member of {group!r}")
            self._members[group_key].discard(user_key)

    def set_password_hash(self, name: str, password_hash: str) -> None:
        with self._lock:
            key = self._user(name).name.lower()
            self.password_hashes[key] = password_hash


def _serve(argv: list[str] | None = None) -> int:
    """Serve the control socket over an in-memory directory (e2e tests)."""
    from twisted.internet import reactor
    from twisted.logger import globalLogBeginner, textFileLogObserver

    from ldapsrv.admin.context import AdminContext
    from ldapsrv.admin.server import ControlSocketError, listen_control_socket
    from ldapsrv.blocking import Blocking
    from ldapsrv.config import load_config

    parser = argparse.ArgumentParser(prog="python -m ldapsrv.admin.testing")
    parser.add_argument("--socket", required=True, type=Path)
    parser.add_argument("--mode", default="0600")
    ns = parser.parse_args(argv)
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)])  # type: ignore[list-item]
    config = load_config(
        None,
        {"server.control_socket": str(ns.socket), "security.bcrypt_cost": 4},
        environ={},
    )
    context = AdminContext(InMemoryDirectory(), Blocking(reactor, 2), config)
    try:
        listen_control_socket(reactor, config.control_socket, int(ns.mode, 8), context)
    except ControlSocketError as exc:
        print(f"ldapsrv: error: {exc}", file=sys.stderr)
        return 1
    print("ready", flush=True)
    reactor.run()  # type: ignore[misc]
    return 0


if __name__ == "__main__":
    sys.exit(_serve())
