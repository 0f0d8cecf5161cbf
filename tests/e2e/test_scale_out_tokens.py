"""Two ``ldapsrv serve`` processes on one PostgreSQL database, as in a scale-out setup.

Both share the database and the ``[tokens] key_file``, both run the rotation job every
second and both have the same recording rotation hook. What one server does to a token
(delete, rotate) must hold on the other at its next bind (no cache may keep a revoked
token alive), an expired token must be rotated by exactly one of them, and users created
through either must get distinct uid numbers.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
from sqlalchemy import create_engine, text

from e2e.clients import Credentials, add_users_concurrently, whoami
from e2e.harness import (
    LdapServer,
    RotationHookRecorder,
    fresh_database,
    require_service,
    start_server,
)

CHECK_INTERVAL = 1
HOOK_TIMEOUT = 20.0
USERS_PER_SERVER = 15


@dataclass
class Pair:
    a: LdapServer
    b: LdapServer
    recorder: RotationHookRecorder

    def log_sections(self) -> list[tuple[str, str]]:
        return [*self.a.log_sections(), *self.b.log_sections()]


@pytest.fixture(scope="module", autouse=True)
def _ldap_utils() -> None:
    require_service("ldap-utils")


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    shared = tmp_path_factory.mktemp("scale-out")
    recorder = RotationHookRecorder(shared / "hook")
    settings = {
        "tokens": {
            "key_file": str(shared / "token.key"),
            "rotation_hook": recorder.command,
            "rotation_check_interval": CHECK_INTERVAL,
        }
    }
    with fresh_database("postgresql", shared) as url:
        a = start_server(shared / "a", url, settings=settings)
        try:
            b = start_server(shared / "b", url, settings=settings)
            try:
                yield Pair(a, b, recorder)
            finally:
                b.stop()
        finally:
            a.stop()


def created_credentials(server: LdapServer, name: str, *options: str) -> Credentials:
    created = server.create_service_account(name, *options)
    return Credentials(server.user_dn(name), str(created["token"]))


def audit_count(database_url: str, action: str, target: str) -> int:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            return int(
                connection.execute(
                    text("SELECT count(*) FROM audit_events WHERE action = :a AND target = :t"),
                    {"a": action, "t": target},
                ).scalar_one()
            )
    finally:
        engine.dispose()


def test_a_token_created_on_one_server_is_viewable_on_the_other_with_the_shared_key(
    pair: Pair,
) -> None:
    created = pair.a.create_service_account("shared-key")
    assert pair.b.ctl_json("token", "view", "shared-key")["value"] == created["token"]


def test_a_token_deleted_through_one_server_is_refused_by_the_other_on_its_next_bind(
    pair: Pair,
) -> None:
    bind = created_credentials(pair.a, "deleted-elsewhere")
    # Bind on B first, several times, so that anything B caches has seen the token.
    for _ in range(3):
        assert whoami(pair.b, bind) == bind.dn.lower()
    pair.a.ctl("token", "delete", "deleted-elsewhere")
    assert whoami(pair.b, bind) is None
    assert whoami(pair.a, bind) is None


def test_a_service_account_deleted_through_one_server_cannot_bind_on_the_other(
    pair: Pair,
) -> None:
    bind = created_credentials(pair.b, "account-deleted-elsewhere")
    assert whoami(pair.a, bind) is not None
    pair.b.ctl("service-account", "delete", "account-deleted-elsewhere")
    assert whoami(pair.a, bind) is None


def test_a_token_rotated_through_one_server_is_refused_by_the_other_in_its_old_value(
    pair: Pair,
) -> None:
    old = created_credentials(pair.a, "rotated-elsewhere")
    assert whoami(pair.b, old) is not None
    rotated = pair.a.ctl_json("token", "rotate", "rotated-elsewhere")
    new = Credentials(old.dn, str(rotated["value"]))
    assert whoami(pair.b, old) is None
    assert whoami(pair.b, new) == old.dn.lower()
    assert pair.b.ctl_json("token", "view", "rotated-elsewhere")["value"] == new.password


def test_an_expired_token_is_rotated_exactly_once_with_two_servers_running(pair: Pair) -> None:
    old = created_credentials(pair.a, "rotated-once", "--expires", "4s")
    assert whoami(pair.b, old) is not None
    try:
        delivered = pair.recorder.wait_for("rotated-once", 1, HOOK_TIMEOUT)[0]
        seen_at = time.monotonic()
        assert delivered.parent in {pair.a.process.pid, pair.b.process.pid}
        new = Credentials(old.dn, delivered.value)
        assert whoami(pair.a, new) == old.dn.lower()
        assert whoami(pair.b, new) == old.dn.lower()
        assert whoami(pair.a, old) is None
        assert whoami(pair.b, old) is None
        # Both servers check every second: give the loser time to (wrongly) rotate too,
        # while staying well inside the new value's 4 s lifetime.
        time.sleep(max(0.0, 2 * CHECK_INTERVAL - (time.monotonic() - seen_at)))
    finally:
        pair.b.ctl("service-account", "delete", "rotated-once")  # no further rotations
    deliveries = pair.recorder.deliveries("rotated-once")
    assert len(deliveries) == 1, deliveries
    assert audit_count(pair.a.database_url, "token.rotate.expired", "token rotated-once") == 1


def test_users_created_through_both_servers_get_distinct_uid_numbers(pair: Pair) -> None:
    names_a = [f"via-a-{i:02d}" for i in range(USERS_PER_SERVER)]
    names_b = [f"via-b-{i:02d}" for i in range(USERS_PER_SERVER)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = [
            pool.submit(add_users_concurrently, pair.a, names_a, 4),
            pool.submit(add_users_concurrently, pair.b, names_b, 4),
        ]
        for future in futures:
            future.result()
    users = pair.b.ctl_json("user", "list")["users"]
    numbers = {u["name"]: u["uid_number"] for u in users if u["name"] in {*names_a, *names_b}}
    assert len(numbers) == 2 * USERS_PER_SERVER
    assert len(set(numbers.values())) == len(numbers), numbers


def test_groups_created_through_both_servers_get_distinct_gid_numbers(pair: Pair) -> None:
    names = [
        (server, [f"grp-{tag}-{i:02d}" for i in range(USERS_PER_SERVER)])
        for tag, server in (("a", pair.a), ("b", pair.b))
    ]

    def add_groups(server: LdapServer, group_names: list[str]) -> None:
        with ThreadPoolExecutor(max_workers=4) as pool:
            for future in [pool.submit(server.add_group, name) for name in group_names]:
                future.result()

    with ThreadPoolExecutor(max_workers=2) as pool:
        for future in [pool.submit(add_groups, s, n) for s, n in names]:
            future.result()
    wanted = {name for _, group_names in names for name in group_names}
    groups = pair.a.ctl_json("group", "list")["groups"]
    numbers = {g["name"]: g["gid_number"] for g in groups if g["name"] in wanted}
    assert len(numbers) == len(wanted)
    assert len(set(numbers.values())) == len(numbers), numbers


def test_admin_changes_through_either_server_are_audited_once_in_the_shared_trail(
    pair: Pair,
) -> None:
    pair.a.add_user("audited-a")
    pair.b.add_user("audited-b")
    pair.b.ctl("group", "add", "audited-group")
    pair.a.ctl("group", "add-member", "audited-group", "audited-b")
    for server in (pair.a, pair.b):
        events = server.ctl_json("audit")["events"]
        seen = Counter((e["action"], e["target"]) for e in events)
        for key in (
            ("user.add", "user audited-a"),
            ("user.add", "user audited-b"),
            ("group.add", "group audited-group"),
            ("group.add_member", "group audited-group"),
        ):
            assert seen[key] == 1, (server.ldap_url, key, seen)
    assert audit_count(pair.a.database_url, "user.add", "user audited-b") == 1
