"""``ldapsrv status`` on a running server: live connections, workers, the database
check, the certificate's expiry, and the tokens expiring within the warning
window (which are also logged as warnings)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import ldap
from cryptography import x509

from e2e.harness import LdapServer

WINDOW_DAYS = 30


def test_status_shows_connections_database_certificate_and_expiring_tokens(
    ldap_server_factory: Callable[..., LdapServer],
) -> None:
    server = ldap_server_factory(
        settings={
            "logging": {"access_log": False},
            "monitoring": {"expiry_warning_days": WINDOW_DAYS},
        }
    )
    server.create_service_account("nas-soon", "--expires", "3d")
    server.create_service_account("nas-later", "--expires", "90d")
    conn = ldap.initialize(server.ldap_url)
    conn.set_option(ldap.OPT_NETWORK_TIMEOUT, 10)
    conn.search_s("", ldap.SCOPE_BASE, "(objectClass=*)", ["namingContexts"])  # stays open

    status = server.ctl_json("status")
    text = server.ctl("status").stdout
    conn.unbind_s()

    assert status["connections"]["active"] >= 1 and status["connections"]["accepted"] >= 1
    assert status["workers"]["threads"] == 8 and status["workers"]["pid"] == server.process.pid
    assert (status["database_kind"], status["database_reachable"]) == ("sqlite", True)
    assert status["database_error"] is None

    cert = x509.load_pem_x509_certificate((server.data_dir / "tls" / "server.pem").read_bytes())
    shown = status["certificate"]
    assert shown["not_after"] == cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    days = (cert.not_valid_after_utc - datetime.now(UTC)).total_seconds() / 86400
    assert abs(shown["days_left"] - days) < 0.2
    assert shown["expiring"] is False  # a fresh development certificate lives ~2 years

    assert status["expiry_warning_days"] == WINDOW_DAYS
    soon = [t for t in status["expiring_tokens"] if t["account"] == "nas-soon"]
    assert len(soon) == 1 and 2.9 < soon[0]["days_left"] <= 3.0
    assert not any(t["account"] == "nas-later" for t in status["expiring_tokens"])
    warning = next(w for w in status["warnings"] if "nas-soon" in w)
    assert warning.startswith(f"token {soon[0]['identifier']} of nas-soon expires at ")

    assert f"certificate: {shown['path']} expires {shown['not_after']}" in text
    assert f"tokens expiring within {WINDOW_DAYS} days:" in text
    assert soon[0]["identifier"] in text and "nas-later" not in text
    assert "(sqlite, reachable," in text and "connections: " in text

    log = server.log_text()
    assert f"WARNING ldapsrv.expiry: {warning}" in log
    assert "ldapsrv.access" not in log  # logging.access_log = false
