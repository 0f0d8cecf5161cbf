"""server.status: version, listeners, redacted database URL, throttle state."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from test_throttle import Clock, MemoryStore

from ldapsrv.admin.testing import AdminHarness, in_memory_context
from ldapsrv.auth.throttle import BindThrottle, ThrottlePolicy
from ldapsrv.config import load_config

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_status_reports_listeners_uptime_and_hides_the_database_password() -> None:
    config = load_config(
        None,
        {"database.url": "postgresql+psycopg2://ldap:s3cret@db.example:5432/ldap"},
        environ={},
    )
    ctx = in_memory_context(config, clock=lambda: T0 + timedelta(seconds=90), started_at=T0)
    status = AdminHarness(ctx).call("server.status")
    assert status["uptime_seconds"] == 90
    assert status["listeners"] == ["ldap://127.0.0.1:3389", "ldaps://127.0.0.1:3636"]
    assert "s3cret" not in status["database"]
    assert status["database"].startswith("postgresql+psycopg2://ldap:***@db.example")
    assert (status["throttling"], status["throttled"]) == ("off", [])


def test_status_lists_locked_out_pairs_and_addresses() -> None:
    clock = Clock()
    throttle = BindThrottle(MemoryStore(), ThrottlePolicy(pair_lockout_failures=3), clock)
    for _ in range(3):
        throttle.failed("alice", "192.0.2.9")
    ctx = in_memory_context(load_config(None, environ={}), throttle=throttle, clock=clock)
    status = AdminHarness(ctx).call("server.status")
    assert status["throttling"] == "on"
    pair = next(t for t in status["throttled"] if t["kind"] == "pair")
    assert pair["failures"] == 3
    assert pair["locked_until"] is not None
    assert "192.0.2.9" in pair["subject"]
