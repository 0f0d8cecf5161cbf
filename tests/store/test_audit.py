"""The audit trail: appended with the change it records, read newest last."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from ldapsrv.directory.records import AuditEvent
from ldapsrv.errors import InvalidValue
from ldapsrv.store import audit as audit_module
from ldapsrv.store.audit import AuditLog
from ldapsrv.store.directory import SqlDirectory
from ldapsrv.store.models import audit_events

from .conftest import GID_RANGE, UID_RANGE


def event_(n: int, **details: str) -> AuditEvent:
    return AuditEvent(
        actor="control-socket uid=0",
        channel="control-socket",
        action=f"test.{n}",
        target=f"thing {n}",
        details=tuple(details.items()),
    )


def test_events_come_back_with_their_time_and_details_in_order(directory, clock):
    first = event_(1, identifier="nas-backup", expires="2025-01-01T00:00:00Z")
    directory.record_audit(first)
    at_first = clock.now
    directory.record_audit(event_(2))
    assert directory.list_audit() == [
        (at_first, first),
        (at_first + timedelta(seconds=1), event_(2)),
    ]


def test_times_keep_sub_second_precision(engine):
    instants = iter([datetime(2024, 1, 1, 0, 0, 0, 250000, tzinfo=UTC)])
    directory = SqlDirectory(
        engine, uid_range=UID_RANGE, gid_range=GID_RANGE, clock=lambda: next(instants)
    )
    directory.record_audit(event_(1))
    assert directory.list_audit()[0][0].microsecond == 250000


def test_limit_keeps_the_newest_and_lists_them_oldest_first(directory):
    for n in range(5):
        directory.record_audit(event_(n))
    assert [e.action for _, e in directory.list_audit(limit=2)] == ["test.3", "test.4"]
    assert directory.list_audit(limit=0) == []


def test_since_is_inclusive(directory, clock):
    for n in range(3):
        directory.record_audit(event_(n))
    second = directory.list_audit()[1][0]
    assert [e.action for _, e in directory.list_audit(since=second)] == ["test.1", "test.2"]


def test_events_in_the_same_instant_keep_insertion_order(engine):
    fixed = datetime(2024, 1, 1, tzinfo=UTC)
    directory = SqlDirectory(engine, uid_range=UID_RANGE, gid_range=GID_RANGE, clock=lambda: fixed)
    for n in range(4):
        directory.record_audit(event_(n))
    assert [e.action for _, e in directory.list_audit()] == [f"test.{n}" for n in range(4)]
    assert [e.action for _, e in directory.list_audit(limit=2)] == ["test.2", "test.3"]


def test_details_are_a_json_object_readable_in_sql(directory):
    directory.record_audit(event_(1, identifier="nas", note='quote " and é'))
    with directory.engine.connect() as conn:
        stored = conn.execute(select(audit_events.c.details)).scalar_one()
    assert stored == '{"identifier":"nas","note":"quote \\" and é"}'


def test_repeated_detail_keys_are_refused_rather_than_silently_merged(directory):
    repeated = AuditEvent("a", "server", "x", "y", details=(("k", "1"), ("k", "2")))
    with pytest.raises(InvalidValue, match=r"repeat a key"):
        directory.record_audit(repeated)
    assert directory.list_audit() == []


def test_over_long_fields_are_shortened_not_refused(directory):
    directory.record_audit(AuditEvent("a" * 300, "c" * 40, "x" * 70, "t" * 300))
    ((_, stored),) = directory.list_audit()
    assert (len(stored.actor), len(stored.channel), len(stored.action), len(stored.target)) == (
        255,
        32,
        64,
        255,
    )
    assert stored.actor.endswith("…")


def test_the_store_offers_no_way_to_change_or_remove_an_event():
    # Append-only by construction: the only statement on audit_events in the
    # store's audit module is an INSERT (and the SELECT that reads).
    # (StoreBase's ``reading`` only shares a read transaction between lookups.)
    public = {name for name in dir(AuditLog) if not name.startswith("_")}
    assert public == {"record_audit", "list_audit", "reading"}
    source = open(audit_module.__file__, encoding="utf-8").read()
    assert "update(" not in source and "delete(" not in source
