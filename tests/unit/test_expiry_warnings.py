"""Expiry warnings: the served certificate and tokens expiring within the window,
checked at start-up and then periodically, logged and passed to the metrics."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.testing import MemoryReactorClock

from ldapsrv.directory.records import AccountKind, TokenIntent, TokenRecord
from ldapsrv.observability.expiry import ExpiryReport, ExpiryService, check_expiries
from ldapsrv.tls import ensure_dev_certificate, served_certificate_path

NOW = datetime(2026, 6, 1, tzinfo=UTC)
WINDOW = timedelta(days=14)


def token(identifier: str, expires_in: timedelta | None, expiring: bool = True) -> TokenRecord:
    return TokenRecord(
        id=1,
        identifier=identifier,
        account_name=f"{identifier}-account",
        account_kind=AccountKind.SERVICE_ACCOUNT,
        intent=TokenIntent.APP_PASSWORD,
        description=None,
        lookup_id="x",
        secret_hash="x",
        encrypted_value=None,
        expiring=expiring,
        expires_at=None if expires_in is None else NOW + expires_in,
        lifetime_seconds=None,
        created=NOW,
        last_used_at=None,
        last_used_address=None,
        rotated_at=None,
        generation=1,
        hook_pending=False,
    )


class Tokens:
    def __init__(self, *records: TokenRecord) -> None:
        self.records = list(records)

    def list_tokens(self, account_name: str | None = None) -> list[TokenRecord]:
        return list(self.records)


TOKENS = Tokens(
    token("later", timedelta(days=30)),
    token("soon", timedelta(days=3)),
    token("overdue", timedelta(hours=-1)),
    token("forever", None, expiring=False),
    token("edge", WINDOW),
)


def test_tokens_within_the_window_are_reported_soonest_first(tmp_path: Path) -> None:
    report = check_expiries(None, TOKENS, NOW, WINDOW)  # type: ignore[arg-type]
    assert [t.identifier for t in report.tokens] == ["overdue", "soon", "edge"]
    assert report.tokens[1].seconds_left == 3 * 86400
    assert report.certificate is None and report.certificate_error is None
    assert report.warnings() == [
        "token overdue of overdue-account expired at 2026-05-31T23:00:00Z",
        "token soon of soon-account expires at 2026-06-04T00:00:00Z (in 3.0 days)",
        "token edge of edge-account expires at 2026-06-15T00:00:00Z (in 14.0 days)",
    ]


def test_the_served_certificate_is_read_and_warned_about_within_the_window(
    tmp_path: Path,
) -> None:
    dev = ensure_dev_certificate(tmp_path)
    path = served_certificate_path(None, tmp_path)
    assert path == dev.cert_path
    not_after = x509.load_pem_x509_certificate(path.read_bytes()).not_valid_after_utc
    now = datetime.now(UTC)
    quiet = check_expiries(path, Tokens(), now, WINDOW)  # type: ignore[arg-type]
    assert quiet.certificate is not None and quiet.certificate.not_after == not_after
    assert not quiet.certificate.expiring and quiet.warnings() == []

    late = check_expiries(path, Tokens(), not_after - timedelta(days=2), WINDOW)  # type: ignore[arg-type]
    assert late.certificate is not None and late.certificate.expiring
    assert late.warnings() == [
        f"TLS certificate {path} ({late.certificate.subject}) expires at "
        f"{not_after.isoformat().replace('+00:00', 'Z')} (in 2.0 days)"
    ]


def test_an_unreadable_certificate_is_reported_not_raised(tmp_path: Path) -> None:
    garbage = tmp_path / "cert.pem"
    garbage.write_text("not a certificate")
    for path in (garbage, tmp_path / "missing.pem"):
        report = check_expiries(path, Tokens(), NOW, WINDOW)  # type: ignore[arg-type]
        assert report.certificate is None
        assert report.certificate_error is not None and str(path) in report.certificate_error
        assert report.warnings()[0].startswith("cannot read the TLS certificate: ")


class ImmediateBlocking:
    """Runs the function at once, as the thread pool would later."""

    def run(self, fn: Callable[[], Any]) -> Deferred[Any]:
        try:
            return succeed(fn())
        except Exception as exc:
            return fail(exc)


def test_the_service_checks_at_start_and_every_interval(caplog: pytest.LogCaptureFixture) -> None:
    reactor = MemoryReactorClock()
    reports: list[ExpiryReport] = []
    calls = 0

    def check() -> ExpiryReport:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise OSError("disk gone")
        return check_expiries(None, TOKENS, NOW, WINDOW)  # type: ignore[arg-type]

    service = ExpiryService(reactor, ImmediateBlocking(), check, 3600, reports.append)  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, logger="ldapsrv.expiry"):
        service.startService()
        assert calls == 1 and len(reports) == 1
        assert "token soon of soon-account expires at" in caplog.text
        reactor.advance(3599)
        assert calls == 1
        reactor.advance(1)
        assert calls == 2 and len(reports) == 1  # a failed check is logged, then retried
        assert "expiry check failed" in caplog.text
        reactor.advance(3600)
        assert calls == 3 and len(reports) == 2
        service.stopService()
        reactor.advance(7200)
        assert calls == 3
    assert reports[0] == reports[1]  # same tokens, same instant: the same report
