"""Which writes bump which change counter, on every backend.

Caches answer only while the counters they were stamped with are unchanged, so
every write that can change an LDAP answer or a bind decision must bump
``directory`` (in its own transaction), failed-bind bookkeeping must bump
``throttle`` and only that, and pure bookkeeping (audit lines alone, a token's
last use) must bump nothing, or the caches would be needlessly cold.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine
from twisted.internet.defer import Deferred, succeed

from ldapsrv.auth.throttle import BindThrottle, FailureCount, throttle_keys
from ldapsrv.caching.counters import PooledCounters
from ldapsrv.directory.records import AuditEvent
from ldapsrv.errors import AlreadyExists
from ldapsrv.store.changes import Counters, read_counters
from ldapsrv.store.directory import NewUser, SqlDirectory
from ldapsrv.store.engine import run

from .test_tokens import T0, spec

ADDRESS = "203.0.113.7"


def counters(engine: Engine) -> Counters:
    return run(engine, read_counters, write=False)


@pytest.fixture
def start(directory: SqlDirectory) -> Iterator[Counters]:
    """The counters before the test's write (0, 0 on the emptied database)."""
    yield counters(directory.engine)


def test_an_emptied_database_reads_zero(start: Counters) -> None:
    assert start == Counters(0, 0)


def test_creating_a_user_bumps_directory_only(directory: SqlDirectory, start: Counters) -> None:
    directory.create_user(NewUser("alice"))
    assert counters(directory.engine) == Counters(start.directory + 1, start.throttle)


def test_every_directory_write_bumps_directory_once(directory: SqlDirectory) -> None:
    directory.create_user(NewUser("alice"))
    directory.create_group("ops")
    steps: list[Callable[[], object]] = [
        lambda: directory.add_member("ops", "alice"),
        lambda: directory.remove_member("ops", "alice"),
        lambda: directory.set_disabled("alice", True),
        lambda: directory.set_password_hash("alice", "$2b$04$" + "x" * 53),
        lambda: directory.delete_group("ops"),
        lambda: directory.delete_user("alice"),
    ]
    for step in steps:
        before = counters(directory.engine)
        step()
        assert counters(directory.engine) == Counters(before.directory + 1, before.throttle)


def test_a_recorded_bind_failure_bumps_throttle_and_not_directory(
    directory: SqlDirectory, start: Counters
) -> None:
    keys = throttle_keys("alice", ADDRESS)
    directory.record_bind_failures(keys, lambda key, old: FailureCount(1, T0, T0))
    assert counters(directory.engine) == Counters(start.directory, start.throttle + 1)
    directory.clear_bind_failures(keys)  # what a successful bind after failures does
    assert counters(directory.engine) == Counters(start.directory, start.throttle + 2)


def test_a_failed_bind_through_the_throttle_changes_throttle_only(
    directory: SqlDirectory, start: Counters
) -> None:
    throttle = BindThrottle(directory)
    throttle.failed("alice", ADDRESS)  # the failure (and the first prune of this process)
    after = counters(directory.engine)
    assert after.directory == start.directory
    assert after.throttle > start.throttle
    throttle.before("alice", ADDRESS)  # reads only
    assert counters(directory.engine) == after


def test_recording_an_audit_line_alone_bumps_nothing(
    directory: SqlDirectory, start: Counters
) -> None:
    directory.record_audit(AuditEvent("tester", "server", "test.nothing", "nothing"))
    assert counters(directory.engine) == start
    assert len(directory.list_audit()) == 1  # it was written


def test_a_tokens_last_use_bumps_nothing_but_deleting_it_bumps_directory(
    directory: SqlDirectory,
) -> None:
    directory.create_service_account("nas")
    directory.create_token(spec("t", "nas"))
    before = counters(directory.engine)
    directory.record_token_use("Lt", T0 + timedelta(seconds=1), "192.0.2.7")
    assert counters(directory.engine) == before
    used = directory.find_token("Lt")
    assert used is not None and used.last_used_at is not None  # it was written
    directory.delete_token("t")
    assert counters(directory.engine) == Counters(before.directory + 1, before.throttle)


def test_a_failed_write_bumps_nothing(directory: SqlDirectory) -> None:
    directory.create_user(NewUser("alice"))
    before = counters(directory.engine)
    with pytest.raises(AlreadyExists):
        directory.create_user(NewUser("alice"))
    assert counters(directory.engine) == before


def test_pooled_counters_read_the_database_counters(directory: SqlDirectory) -> None:
    def synchronous(fn: Callable[..., Any], *args: Any) -> Deferred[Any]:
        return succeed(fn(*args))

    pooled = PooledCounters(directory.engine, synchronous)
    seen: list[Counters | None] = []
    first = pooled.current()
    assert isinstance(first, Deferred)
    first.addCallback(seen.append)
    directory.create_user(NewUser("alice"))
    second = pooled.current()
    assert isinstance(second, Deferred)
    second.addCallback(seen.append)
    assert seen == [Counters(0, 0), Counters(1, 0)]
