"""The admin commands against the real SqlDirectory on a SQLite file.

The in-memory fake proves the handlers; this proves they agree with the store
they are wired to in production: its allocation, its default primary group,
its errors, and that what ``user.add`` hashes is what a bind will check.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from twisted.python.failure import Failure

from ldapsrv.admin.commands import build_registry
from ldapsrv.admin.context import AdminContext, Caller
from ldapsrv.admin.errors import AdminError, classify
from ldapsrv.admin.testing import SyncBlocking
from ldapsrv.auth.passwords import verify_password
from ldapsrv.config import load_config
from ldapsrv.store.directory import SqlDirectory
from ldapsrv.store.engine import make_engine
from ldapsrv.store.schema_version import upgrade

CALLER = Caller("control-socket", uid=0, gid=0, pid=1)


class Admin:
    def __init__(self, directory: SqlDirectory) -> None:
        self.directory = directory
        config = load_config(None, {"security.bcrypt_cost": 4}, environ={})
        self.context = AdminContext(
            directory,
            SyncBlocking(),
            config,
            tokens=directory,
            service_accounts=directory,
        )
        self.registry = build_registry()

    def call(self, command: str, **args: Any) -> Any:
        box: list[Any] = []
        self.registry.dispatch(self.context, CALLER, command, args).addBoth(box.append)
        if isinstance(box[0], Failure):
            mapped = classify(box[0].value)
            if mapped is None:
                box[0].raiseException()
            raise mapped
        return box[0]

    def kind(self, command: str, **args: Any) -> str:
        with pytest.raises(AdminError) as info:
            self.call(command, **args)
        return info.value.kind


@contextmanager
def sqlite_directory(path: Path, uid_range: tuple[int, int]) -> Iterator[SqlDirectory]:
    url = f"sqlite:///{path}"
    upgrade(url)
    engine = make_engine(url)
    try:
        yield SqlDirectory(engine, uid_range=uid_range, gid_range=(20000, 29999))
    finally:
        engine.dispose()


@pytest.fixture
def admin(tmp_path: Path) -> Iterator[Admin]:
    with sqlite_directory(tmp_path / "ldapsrv.db", (10000, 19999)) as directory:
        yield Admin(directory)


def test_user_add_allocates_numbers_and_joins_the_default_primary_group(admin: Admin) -> None:
    user = admin.call("user.add", name="alice", mail="alice@example.org")
    assert user["uid_number"] == 10000
    assert user["groups"] == ["users"]
    users_group = admin.call("group.show", name="users")
    assert user["gid_number"] == users_group["gid_number"]
    assert users_group["members"] == ["alice"]
    assert user["created"].endswith("Z") and user["dn"].startswith("cn=alice,ou=users,")


def test_the_password_user_add_hashes_is_the_one_a_bind_checks(admin: Admin) -> None:
    admin.call("user.add", name="alice", password="s3cret")
    credentials = admin.directory.get_credentials("alice")
    assert credentials is not None and credentials.password_hash is not None
    assert verify_password(b"s3cret", credentials.password_hash)
    admin.call("user.set_password", name="alice", password="n3w")
    credentials = admin.directory.get_credentials("alice")
    assert credentials is not None and credentials.password_hash is not None
    assert verify_password(b"n3w", credentials.password_hash)
    assert not verify_password(b"s3cret", credentials.password_hash)


def test_groups_and_memberships_round_trip(admin: Admin) -> None:
    admin.call("user.add", name="alice")
    admin.call("group.add", name="staff", gid_number=25000, description="Staff")
    group = admin.call("group.add_member", group="staff", user="alice")
    assert group["members"] == ["alice"] and group["gid_number"] == 25000
    assert sorted(admin.call("user.show", name="alice")["groups"]) == ["staff", "users"]
    names = [g["name"] for g in admin.call("group.list")["groups"]]
    assert sorted(names) == ["staff", "users"]
    assert admin.call("group.remove_member", group="staff", user="alice")["members"] == []
    assert admin.call("group.delete", name="staff")["deleted"] is True
    assert admin.call("user.delete", name="alice")["deleted"] is True
    assert admin.call("user.list") == {"users": []}


def test_store_errors_arrive_as_their_kinds(admin: Admin) -> None:
    admin.call("user.add", name="alice", uid_number=15000)
    assert admin.kind("user.add", name="ALICE") == "already_exists"
    assert admin.kind("user.add", name="bob", uid_number=15000) == "already_exists"
    assert admin.kind("user.add", name="-bob") == "invalid"
    assert admin.kind("user.add", name="bob", mail="a\nb") == "invalid"
    assert admin.kind("user.show", name="bob") == "not_found"
    assert admin.kind("group.add_member", group="nope", user="alice") == "not_found"


def test_an_exhausted_uid_range_is_range_exhausted(tmp_path: Path) -> None:
    with sqlite_directory(tmp_path / "small.db", (10000, 10000)) as directory:
        admin = Admin(directory)
        admin.call("user.add", name="alice")
        assert admin.kind("user.add", name="bob") == "range_exhausted"
