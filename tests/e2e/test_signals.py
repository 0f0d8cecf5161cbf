"""Fault injection on a real ``ldapsrv serve`` process: SIGTERM and SIGHUP.

SIGTERM must stop the listeners at once, let an operation in flight finish (here a
bind held back by the failed-bind throttle), then say goodbye and exit 0. SIGHUP must
put a rotated certificate on new handshakes while an established LDAPS connection
keeps working, and a broken configuration must change nothing.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e.harness import LdapServer, serving, wait_until
from e2e.rawldap import RawClient, refused
from ldapsrv.tls import ensure_dev_certificate

THROTTLE_DELAY = 3.0
UNAVAILABLE = 52
INVALID_CREDENTIALS = 49


def exit_status(server: LdapServer, timeout: float) -> int:
    return server.process.wait(timeout=timeout)


@pytest.fixture
def throttled_server(tmp_path: Path) -> Iterator[LdapServer]:
    settings = {
        "throttle": {"free_failures": 0, "base_delay": THROTTLE_DELAY, "max_delay": THROTTLE_DELAY},
        "server": {"shutdown_grace": 10},
    }
    with serving("sqlite", tmp_path, settings=settings) as server:
        yield server


def test_sigterm_stops_listening_finishes_the_operation_in_flight_and_exits_0(
    throttled_server: LdapServer,
) -> None:
    server = throttled_server
    idle = RawClient.connect(server.ldap_port)
    busy = RawClient.connect(server.ldap_port)
    started = time.monotonic()
    mid = busy.bind(server.user_dn("nobody"), "wrong password")  # held back by the throttle
    time.sleep(0.5)
    os.kill(server.process.pid, signal.SIGTERM)
    wait_until(lambda: refused(server.ldap_port), 3, "new connections refused after SIGTERM")
    assert refused(server.ldaps_port)
    assert idle.closed_with_notice() == UNAVAILABLE  # idle clients are told at once
    _, response = busy.until_done(mid, timeout=THROTTLE_DELAY + 5)
    assert int(response.resultCode) == INVALID_CREDENTIALS
    assert time.monotonic() - started >= THROTTLE_DELAY - 0.1  # it really was in flight
    assert busy.closed_with_notice() == UNAVAILABLE
    assert exit_status(server, 15) == 0
    log = server.log_text()
    assert "Traceback" not in log


def test_sigterm_gives_up_on_an_operation_after_the_grace_period(tmp_path: Path) -> None:
    settings = {
        "throttle": {"free_failures": 0, "base_delay": 30, "max_delay": 30},
        "server": {"shutdown_grace": 1},
    }
    with serving("sqlite", tmp_path, settings=settings) as server:
        busy = RawClient.connect(server.ldap_port)
        busy.bind(server.user_dn("nobody"), "wrong password")
        time.sleep(0.5)
        started = time.monotonic()
        os.kill(server.process.pid, signal.SIGTERM)
        assert busy.closed_with_notice(timeout=10) == UNAVAILABLE
        assert exit_status(server, 15) == 0
        assert time.monotonic() - started < 8


# ---------------------------------------------------------------------------- SIGHUP


def fingerprint_of_pem(path: Path) -> str:
    """SHA-256 of the first certificate in a PEM file."""
    der = ssl.PEM_cert_to_DER_cert(
        path.read_text().split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n"
    )
    return hashlib.sha256(der).hexdigest()


def presented_fingerprint(port: int) -> str:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    client = RawClient.connect(port, tls=context)
    try:
        der = client.sock.getpeercert(binary_form=True)  # type: ignore[attr-defined]
        assert der is not None
        return hashlib.sha256(der).hexdigest()
    finally:
        client.close()


def test_sighup_puts_a_rotated_certificate_on_new_connections_only(tmp_path: Path) -> None:
    first = ensure_dev_certificate(tmp_path / "a")
    second = ensure_dev_certificate(tmp_path / "b")
    live = tmp_path / "live"
    live.mkdir()
    cert, key = live / "server.pem", live / "server.key"
    shutil.copy(first.cert_path, cert)
    shutil.copy(first.key_path, key)
    settings = {"tls": {"cert": str(cert), "key": str(key)}}
    with serving("sqlite", tmp_path / "server", settings=settings) as server:
        assert presented_fingerprint(server.ldaps_port) == fingerprint_of_pem(first.cert_path)
        trusting_a = ssl.create_default_context(cafile=str(first.ca_path))
        established = RawClient.connect(server.ldaps_port, tls=trusting_a)
        _, answer = established.until_done(established.whoami())
        assert int(answer.resultCode) == 0

        shutil.copy(second.cert_path, cert)
        shutil.copy(second.key_path, key)
        os.kill(server.process.pid, signal.SIGHUP)
        wait_until(
            lambda: (
                presented_fingerprint(server.ldaps_port) == fingerprint_of_pem(second.cert_path)
            ),
            10,
            "the new certificate on new LDAPS connections",
        )
        _, answer = established.until_done(established.whoami())
        assert int(answer.resultCode) == 0  # the old connection was not dropped
        trusting_b = ssl.create_default_context(cafile=str(second.ca_path))
        fresh = RawClient.connect(server.ldaps_port, tls=trusting_b)  # verifies B for 127.0.0.1
        _, answer = fresh.until_done(fresh.whoami())
        assert int(answer.resultCode) == 0
        assert server.process.poll() is None

        # A broken file on the next SIGHUP is reported and changes nothing.
        key.write_text("not a key\n")
        os.kill(server.process.pid, signal.SIGHUP)
        wait_until(
            lambda: "keeping the current TLS certificate" in server.log_text(),
            10,
            "the bad key reported",
        )
        assert presented_fingerprint(server.ldaps_port) == fingerprint_of_pem(second.cert_path)
        assert "Traceback" not in server.log_text()


def test_sighup_reloads_limits_and_reports_a_bad_file(tmp_path: Path) -> None:
    with serving(
        "sqlite", tmp_path, settings={"limits": {"max_connections_per_address": 0}}
    ) as server:
        held = [RawClient.connect(server.ldap_port) for _ in range(3)]
        for client in held:
            _, answer = client.until_done(client.whoami())
            assert int(answer.resultCode) == 0
        text = server.config_path.read_text()
        assert "max_connections_per_address = 0" in text
        server.config_path.write_text(
            text.replace("max_connections_per_address = 0", "max_connections_per_address = 3")
        )
        os.kill(server.process.pid, signal.SIGHUP)
        wait_until(lambda: "limits, access switches" in server.log_text(), 10, "reload logged")
        extra = RawClient.connect(server.ldap_port)
        assert extra.closed_with_notice() == 51  # busy: the new cap applies at once
        for client in held:  # and the connections already open stay
            _, answer = client.until_done(client.whoami())
            assert int(answer.resultCode) == 0

        server.config_path.write_text("[limits]\nmax_connections = -1\n")
        os.kill(server.process.pid, signal.SIGHUP)
        wait_until(lambda: "configuration not reloaded" in server.log_text(), 10, "error logged")
        assert "limits.max_connections" in server.log_text()
        assert server.process.poll() is None
