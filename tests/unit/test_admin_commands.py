"""user.* and group.* commands over the in-memory directory."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, ParamSpec, TypeVar

import pytest
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from ldapsrv.admin import commands_directory
from ldapsrv.admin.commands import build_registry
from ldapsrv.admin.context import Caller
from ldapsrv.admin.errors import AdminError, classify
from ldapsrv.admin.render import iso_utc, render_group, render_user
from ldapsrv.admin.testing import InMemoryDirectory, SyncBlocking, in_memory_context
from ldapsrv.auth.passwords import verify_password
from ldapsrv.config import load_config
from ldapsrv.directory.records import GroupRecord, UserRecord

P = ParamSpec("P")
T = TypeVar("T")

CALLER = Caller("control-socket", uid=0, gid=0, pid=1)
FIXED = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)


class GuardedBlocking(SyncBlocking):
    """Marks when work runs "in the pool", so the directory can prove it is never
    called from outside ``blocking.run`` (i.e. on the reactor thread)."""

    def __init__(self) -> None:
        super().__init__()
        self.inside = False

    def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> Deferred[T]:
        self.inside = True
        try:
            return super().run(fn, *args, **kwargs)
        finally:
            self.inside = False


class GuardedDirectory(InMemoryDirectory):
    def __init__(self, blocking: GuardedBlocking) -> None:
        super().__init__(clock=lambda: FIXED)
        self._blocking = blocking
        for name in (
            "create_user",
            "get_user",
            "list_users",
            "delete_user",
            "create_group",
            "get_group",
            "list_groups",
            "delete_group",
            "add_member",
            "remove_member",
            "set_password_hash",
        ):
            setattr(self, name, self._guard(getattr(self, name)))

    def _guard(self, method: Callable[..., Any]) -> Callable[..., Any]:
        def guarded(*args: Any, **kwargs: Any) -> Any:
            assert self._blocking.inside, f"{method.__name__} called outside blocking.run"
            return method(*args, **kwargs)

        return guarded


class Admin:
    def __init__(self) -> None:
        self.blocking = GuardedBlocking()
        self.directory = GuardedDirectory(self.blocking)
        config = load_config(None, {"security.bcrypt_cost": 4}, environ={})
        self.context = in_memory_context(config, self.directory, self.blocking)
        self.registry = build_registry()

    def call(self, command: str, **args: Any) -> Any:
        box: list[Any] = []
        self.registry.dispatch(self.context, CALLER, command, args).addBoth(box.append)
        assert box, "commands over a synchronous runner finish at once"
        if isinstance(box[0], Failure):
            mapped = classify(box[0].value)  # as the wire would report it
            if mapped is None:
                box[0].raiseException()
            raise mapped
        return box[0]

    def error(self, command: str, **args: Any) -> AdminError:
        with pytest.raises(AdminError) as info:
            self.call(command, **args)
        return info.value


@pytest.fixture
def admin(monkeypatch: pytest.MonkeyPatch) -> Admin:
    made = Admin()
    real_hash = commands_directory.hash_password

    def guarded_hash(password: bytes, cost: int) -> str:
        assert made.blocking.inside, "bcrypt must run in the thread pool"
        return real_hash(password, cost)

    monkeypatch.setattr(commands_directory, "hash_password", guarded_hash)
    return made


def test_user_add_without_surname_stores_the_name_so_person_keeps_its_mandatory_sn(
    admin: Admin,
) -> None:
    user = admin.call("user.add", name="carol")
    assert user["surname"] == "carol"


def test_user_add_returns_the_rendered_user_with_dn_and_no_secret(admin: Admin) -> None:
    user = admin.call(
        "user.add",
        name="alice",
        password="s3cret",
        mail="alice@example.org",
        display_name="Alice Liddell",
        given_name="Alice",
        surname="Liddell",
        uid_number=20001,
        gid_number=20002,
    )
    assert user["name"] == "alice"
    assert user["dn"] == "cn=alice,ou=users,dc=example,dc=org"
    assert (user["uid_number"], user["gid_number"]) == (20001, 20002)
    assert user["mail"] == "alice@example.org"
    assert (user["display_name"], user["given_name"], user["surname"]) == (
        "Alice Liddell",
        "Alice",
        "Liddell",
    )
    assert user["groups"] == []
    assert user["created"] == user["modified"] == "2024-05-06T07:08:09Z"
    assert len(user["uuid"]) == 36
    assert not any("password" in key or "hash" in key for key in user)
    assert "$" not in repr(user)


def test_user_add_hashes_the_password_with_the_configured_cost(admin: Admin) -> None:
    admin.call("user.add", name="alice", password="s3cret pass ")
    stored = admin.directory.password_hashes["alice"]
    assert stored is not None and "s3cret" not in stored
    assert verify_password(b"s3cret pass ", stored)
    assert "$04$" in stored  # bcrypt cost 4 from the config


def test_user_add_without_a_password_stores_none(admin: Admin) -> None:
    admin.call("user.add", name="bob")
    assert admin.directory.password_hashes["bob"] is None


def test_an_empty_password_is_invalid_and_names_the_argument(admin: Admin) -> None:
    error = admin.error("user.add", name="alice", password="")
    assert (error.kind, error.message) == (
        "invalid",
        "argument 'password': password must not be empty",
    )
    assert admin.error("user.show", name="alice").kind == "not_found"


def test_a_password_with_a_lone_surrogate_is_invalid_not_internal(admin: Admin) -> None:
    error = admin.error("user.add", name="alice", password="\ud800")
    assert error.kind == "invalid" and "'password'" in error.message


def test_user_add_twice_is_already_exists(admin: Admin) -> None:
    admin.call("user.add", name="alice")
    assert admin.error("user.add", name="alice").kind == "already_exists"


@pytest.mark.parametrize("number", [0, -1, 2**31])
def test_out_of_range_id_numbers_are_invalid(admin: Admin, number: int) -> None:
    error = admin.error("user.add", name="alice", uid_number=number)
    assert error.kind == "invalid" and "'uid_number'" in error.message


def test_store_validation_errors_reach_the_admin_as_invalid(admin: Admin) -> None:
    error = admin.error("user.add", name="no spaces allowed")
    assert error.kind == "invalid" and "no spaces allowed" in error.message


def test_user_list_show_and_delete(admin: Admin) -> None:
    admin.call("user.add", name="bob")
    admin.call("user.add", name="alice")
    listed = admin.call("user.list")
    assert [u["name"] for u in listed["users"]] == ["alice", "bob"]
    assert admin.call("user.show", name="bob")["name"] == "bob"
    assert admin.call("user.delete", name="bob") == {"name": "bob", "deleted": True}
    assert admin.error("user.show", name="bob").kind == "not_found"
    assert admin.error("user.delete", name="bob").kind == "not_found"


def test_user_set_password_replaces_the_hash(admin: Admin) -> None:
    admin.call("user.add", name="alice", password="old")
    result = admin.call("user.set_password", name="alice", password="new")
    assert result == {"name": "alice", "password_set": True}
    stored = admin.directory.password_hashes["alice"]
    assert stored is not None and verify_password(b"new", stored)
    assert not verify_password(b"old", stored)


def test_user_set_password_requires_a_password(admin: Admin) -> None:
    admin.call("user.add", name="alice")
    error = admin.error("user.set_password", name="alice")
    assert error.kind == "invalid" and "'password'" in error.message


def test_user_set_password_of_an_unknown_user_is_not_found(admin: Admin) -> None:
    assert admin.error("user.set_password", name="ghost", password="x").kind == "not_found"


def test_group_add_show_list_delete(admin: Admin) -> None:
    group = admin.call("group.add", name="staff", gid_number=30000, description="Staff")
    assert group == {
        "name": "staff",
        "uuid": group["uuid"],
        "gid_number": 30000,
        "description": "Staff",
        "members": [],
        "created": "2024-05-06T07:08:09Z",
        "modified": "2024-05-06T07:08:09Z",
        "dn": "cn=staff,ou=groups,dc=example,dc=org",
    }
    assert admin.call("group.show", name="staff") == group
    assert admin.call("group.list") == {"groups": [group]}
    assert admin.call("group.delete", name="staff") == {"name": "staff", "deleted": True}
    assert admin.error("group.show", name="staff").kind == "not_found"


def test_membership_shows_on_both_sides(admin: Admin) -> None:
    admin.call("user.add", name="alice")
    admin.call("group.add", name="staff")
    group = admin.call("group.add_member", group="staff", user="alice")
    assert group["members"] == ["alice"]
    assert admin.call("user.show", name="alice")["groups"] == ["staff"]
    assert admin.error("group.add_member", group="staff", user="alice").kind == "already_exists"
    group = admin.call("group.remove_member", group="staff", user="alice")
    assert group["members"] == []
    assert admin.error("group.remove_member", group="staff", user="alice").kind == "not_found"


def test_membership_of_unknown_names_is_not_found(admin: Admin) -> None:
    admin.call("group.add", name="staff")
    assert admin.error("group.add_member", group="staff", user="ghost").kind == "not_found"
    assert admin.error("group.add_member", group="ghosts", user="x").kind == "not_found"


def test_membership_needs_both_arguments(admin: Admin) -> None:
    error = admin.error("group.add_member", group="staff")
    assert error.kind == "invalid" and "'user'" in error.message


def test_each_command_does_its_blocking_work_in_one_hop(admin: Admin) -> None:
    admin.call("user.add", name="alice", password="pw")
    admin.call("group.add", name="staff")
    before = admin.blocking.calls
    admin.call("group.add_member", group="staff", user="alice")
    assert admin.blocking.calls == before + 1


def test_iso_utc_treats_naive_datetimes_as_utc_and_converts_others() -> None:
    assert iso_utc(datetime(2024, 1, 2, 3, 4, 5)) == "2024-01-02T03:04:05Z"
    plus_two = timezone(timedelta(hours=2))
    assert iso_utc(datetime(2024, 1, 2, 3, 4, 5, tzinfo=plus_two)) == "2024-01-02T01:04:05Z"


def test_rendered_dns_escape_special_characters() -> None:
    user = UserRecord(
        id=1,
        uuid="u",
        name="a,b+c",
        uid_number=1,
        gid_number=1,
        display_name=None,
        given_name=None,
        surname=None,
        mail=None,
        home_directory="/home/x",
        login_shell="/bin/sh",
        gecos=None,
        created=FIXED,
        modified=FIXED,
    )
    assert render_user(user, "dc=x")["dn"] == "cn=a\\,b\\+c,ou=users,dc=x"
    group = GroupRecord(
        id=1, uuid="g", name="g", gid_number=1, description=None, created=FIXED, modified=FIXED
    )
    assert "dn" not in render_group(group, None)
