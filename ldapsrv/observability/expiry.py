"""Warnings ahead of trouble: the TLS certificate and tokens that expire soon.

``check_expiries`` reads the served certificate's not-after and the tokens
whose expiry falls within the window (``monitoring.expiry_warning_days``);
``warn`` logs one WARNING per item (token identifiers and account names only,
never values). ``ExpiryService`` does both at start-up and every
``monitoring.expiry_check_interval`` seconds and hands the report to the
metrics; ``ldapsrv status`` runs the same check on demand.

An expiring app-password token is rotated automatically at expiry, but the
device using it then needs the new value: without a rotation hook an admin has
to carry it over, which is why tokens are warned about too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from twisted.application.service import Service
from twisted.internet.defer import Deferred

from ldapsrv.auth.ports import TokenStore
from ldapsrv.blocking import Blocking

log = logging.getLogger("ldapsrv.expiry")
_DAY = 86400.0


@dataclass(frozen=True, slots=True)
class CertificateExpiry:
    path: str
    subject: str
    not_after: datetime
    seconds_left: float
    expiring: bool  # within the warning window (or already expired)


@dataclass(frozen=True, slots=True)
class TokenExpiry:
    identifier: str
    account_name: str
    expires_at: datetime
    seconds_left: float


@dataclass(frozen=True, slots=True)
class ExpiryReport:
    window: timedelta
    certificate: CertificateExpiry | None
    certificate_error: str | None
    tokens: tuple[TokenExpiry, ...]  # expiring within the window, soonest first

    def warnings(self) -> list[str]:
        """One human sentence per item that needs attention."""
        out: list[str] = []
        cert = self.certificate
        if self.certificate_error is not None:
            out.append(f"cannot read the TLS certificate: {self.certificate_error}")
        elif cert is not None and cert.expiring:
            out.append(
                f"TLS certificate {cert.path} ({cert.subject}) "
                f"{_expires_phrase(cert.not_after, cert.seconds_left)}"
            )
        for token in self.tokens:
            out.append(
                f"token {token.identifier} of {token.account_name} "
                f"{_expires_phrase(token.expires_at, token.seconds_left)}"
            )
        return out


def _expires_phrase(at: datetime, seconds_left: float) -> str:
    when = at.isoformat().replace("+00:00", "Z")
    if seconds_left <= 0:
        return f"expired at {when}"
    return f"expires at {when} (in {seconds_left / _DAY:.1f} days)"


def read_certificate(path: Path, now: datetime, window: timedelta) -> CertificateExpiry:
    """The first certificate of the PEM file ``path`` (the server's own)."""
    cert = x509.load_pem_x509_certificates(path.read_bytes())[0]
    not_after = cert.not_valid_after_utc
    seconds_left = (not_after - now).total_seconds()
    return CertificateExpiry(
        path=str(path),
        subject=cert.subject.rfc4514_string(),
        not_after=not_after,
        seconds_left=seconds_left,
        expiring=seconds_left <= window.total_seconds(),
    )


def tokens_expiring(tokens: TokenStore, now: datetime, window: timedelta) -> list[TokenExpiry]:
    """Expiring tokens whose expiry is at most ``window`` away (or already past)."""
    horizon = now + window
    found = [
        TokenExpiry(
            t.identifier, t.account_name, t.expires_at, (t.expires_at - now).total_seconds()
        )
        for t in tokens.list_tokens()
        if t.expiring and t.expires_at is not None and t.expires_at <= horizon
    ]
    return sorted(found, key=lambda t: (t.expires_at, t.identifier))


def check_expiries(
    cert_path: Path | None, tokens: TokenStore, now: datetime, window: timedelta
) -> ExpiryReport:
    """Blocking (file and SQL reads): run it in the thread pool."""
    certificate, error = None, None
    if cert_path is not None:
        try:
            certificate = read_certificate(cert_path, now, window)
        except (OSError, ValueError, IndexError) as exc:
            error = f"{cert_path}: {exc or type(exc).__name__}"
    return ExpiryReport(window, certificate, error, tuple(tokens_expiring(tokens, now, window)))


def warn(report: ExpiryReport) -> None:
    for message in report.warnings():
        log.warning("%s", message)


class ExpiryService(Service):
    """Checks at start-up and then every ``interval`` seconds; logs the warnings
    and passes each report to ``on_report`` (the metrics' gauges)."""

    def __init__(
        self,
        reactor: Any,
        blocking: Blocking,
        check: Callable[[], ExpiryReport],
        interval: float,
        on_report: Callable[[ExpiryReport], None] = lambda report: None,
    ) -> None:
        self.reactor = reactor
        self.blocking = blocking
        self.check = check
        self.interval = interval
        self.on_report = on_report
        self._call: Any = None
        self._running: Deferred[None] | None = None

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        self._tick()

    def stopService(self) -> Deferred[None] | None:
        super().stopService()  # type: ignore[no-untyped-call]
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        return self._running

    def _tick(self) -> None:
        self._call = None
        self._running = Deferred.fromCoroutine(self._pass())

    async def _pass(self) -> None:
        try:
            report = await self.blocking.run(self.check)
        except Exception:
            log.exception("expiry check failed; trying again in %ss", self.interval)
        else:
            warn(report)
            self.on_report(report)
        finally:
            self._running = None
        if self.running:
            self._call = self.reactor.callLater(self.interval, self._tick)
