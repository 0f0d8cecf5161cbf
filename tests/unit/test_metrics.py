"""The collectors: what an operation, a database event or an expiry report does to
them; and multiprocess mode, where worker processes' values are added up."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from ldapsrv.directory.filters import Present
from ldapsrv.errors import StoreUnavailable
from ldapsrv.ldap.messages import BindRequest, SearchRequest, SimpleAuth
from ldapsrv.observability.expiry import CertificateExpiry, ExpiryReport, TokenExpiry
from ldapsrv.observability.metrics import Metrics
from ldapsrv.observability.records import OperationRecord
from ldapsrv.store.engine import make_engine, run

REPO = Path(__file__).resolve().parents[2]


def record(request: object, result_code: int | None = 0, **changes: object) -> OperationRecord:
    values: dict[str, object] = {
        "connection_id": "1-1",
        "client": "127.0.0.1:1",
        "tls": False,
        "message_id": 1,
        "request": request,
        "request_type": type(request).__name__,
        "identity": "",
        "result_code": result_code,
        "entries": 0,
        "duration_ms": 2.0,
    }
    values.update(changes)
    return OperationRecord(**values)  # type: ignore[arg-type]


def sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_operations_are_counted_by_operation_and_result_and_timed() -> None:
    metrics = Metrics()
    search = SearchRequest("dc=example,dc=org", 2, 0, 0, 0, False, Present("cn"), ())
    bind = BindRequest(3, "cn=alice", SimpleAuth(b"pw"))
    metrics.operation_done(record(search, entries=4))
    metrics.operation_done(record(search, result_code=32))
    metrics.operation_done(record(bind, result_code=49, refusal="wrong password"))
    metrics.operation_done(record(bind, result_code=49, refusal="no such account"))
    metrics.operation_done(record(bind))
    ops = "ldapsrv_operations_total"
    assert sample(metrics, ops, operation="search", result="success") == 1
    assert sample(metrics, ops, operation="search", result="noSuchObject") == 1
    assert sample(metrics, ops, operation="bind", result="invalidCredentials") == 2
    assert sample(metrics, "ldapsrv_search_entries_total") == 4
    failures = "ldapsrv_bind_failures_total"
    assert sample(metrics, failures, reason="wrong_password") == 1
    assert sample(metrics, failures, reason="no_such_account") == 1
    histogram = "ldapsrv_operation_duration_seconds"
    assert sample(metrics, f"{histogram}_count", operation="bind") == 3
    assert sample(metrics, f"{histogram}_sum", operation="bind") == pytest.approx(0.006)
    assert sample(metrics, f"{histogram}_bucket", operation="bind", le="0.001") == 0
    assert sample(metrics, f"{histogram}_bucket", operation="bind", le="0.0025") == 3


def test_connections_are_counted_and_tracked_live() -> None:
    metrics = Metrics()
    metrics.connection_opened("1-1", "x", False)
    metrics.connection_opened("1-2", "x", True)
    metrics.connection_closed("1-1", "x")
    assert sample(metrics, "ldapsrv_connections_active") == 1
    assert sample(metrics, "ldapsrv_connections_total", tls="true") == 1
    assert sample(metrics, "ldapsrv_connections_total", tls="false") == 1


def test_two_servers_in_one_process_keep_separate_registries() -> None:
    first, second = Metrics(), Metrics()
    first.token_rotated("expired")
    assert sample(first, "ldapsrv_token_rotations_total", trigger="expired") == 1
    assert sample(second, "ldapsrv_token_rotations_total", trigger="expired") is None


def test_pool_usage_and_database_errors_follow_the_engine(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}", pool_size=3)
    metrics = Metrics()
    metrics.watch_engine(engine)
    assert sample(metrics, "ldapsrv_database_pool_size") == 3
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
        assert sample(metrics, "ldapsrv_database_pool_connections", state="checked_out") == 1
    assert sample(metrics, "ldapsrv_database_pool_connections", state="checked_out") == 0
    assert sample(metrics, "ldapsrv_database_pool_connections", state="open") == 1

    with pytest.raises(StoreUnavailable):  # SQLite reports a missing table as operational
        run(engine, lambda conn: conn.execute(text("SELECT * FROM no_such_table")), write=False)
    assert sample(metrics, "ldapsrv_database_errors_total", kind="unavailable") == 1
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (x INTEGER UNIQUE)"))
        conn.execute(text("INSERT INTO t VALUES (1)"))
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(text("INSERT INTO t VALUES (1)"))
    assert sample(metrics, "ldapsrv_database_errors_total", kind="integrity") == 1
    engine.dispose()


def test_expiry_reports_set_the_gauges() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    not_after = now + timedelta(days=10)
    cert = CertificateExpiry("/x.pem", "CN=x", not_after, 10 * 86400.0, True)
    token = TokenExpiry("nas", "nas-acct", now + timedelta(days=1), 86400.0)
    metrics = Metrics()
    metrics.expiry_checked(ExpiryReport(timedelta(days=14), cert, None, (token,)))
    assert sample(metrics, "ldapsrv_tls_certificate_expiry_seconds") == 864000
    assert sample(metrics, "ldapsrv_tls_certificate_not_after_timestamp_seconds") == (
        not_after.timestamp()
    )
    assert sample(metrics, "ldapsrv_tokens_expiring_soon") == 1


_WORKER = """
import os, sys
from ldapsrv.observability.multiproc import use_private_dir
{setup}
from ldapsrv.observability.metrics import Metrics, exposition_registry
from prometheus_client import generate_latest
metrics = Metrics()
metrics.connection_opened("x", "y", False)
metrics.token_rotated("admin")
sys.stdout.write(generate_latest(exposition_registry(metrics)).decode())
"""


def _run_worker(setup: str, env: dict[str, str]) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_WORKER.format(setup=setup))],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=REPO,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_multiprocess_mode_adds_up_the_workers(tmp_path: Path) -> None:
    base = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    first = _run_worker(f"from pathlib import Path; use_private_dir(Path({str(tmp_path)!r}))", base)
    assert 'ldapsrv_token_rotations_total{trigger="admin"} 1.0' in first
    directory = tmp_path / "prometheus"
    # a second worker shares the directory (set by its parent, not wiped again)
    env = {**base, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    second = _run_worker("", env)
    assert 'ldapsrv_token_rotations_total{trigger="admin"} 2.0' in second
    # the connections gauge counts live processes only: both have exited, their pids
    # are not marked dead, so both still count
    assert "ldapsrv_connections_active 2.0" in second
    assert any(directory.iterdir())


def test_single_process_mode_without_the_variable(tmp_path: Path) -> None:
    out = _run_worker("", {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert 'ldapsrv_token_rotations_total{trigger="admin"} 1.0' in out
    assert "ldapsrv_connections_active 1.0" in out
