"""Prometheus metrics scraped over HTTP with a real client while real LDAP clients
work: counters and histograms move, live gauges follow connections, the
certificate and token expiry gauges match ``ldapsrv status``."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import datetime

import ldap
import pytest
from cryptography import x509
from prometheus_client.parser import text_string_to_metric_families

from e2e.clients import ALICE_PASSWORD, populate
from e2e.harness import BACKENDS, LOOPBACK, LdapServer, free_ports, serving, wait_until

TIMEOUT = 10
WARNING_DAYS = 1000  # longer than the development certificate lives: it must warn

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
Scrape = Callable[[], Samples]


@pytest.fixture(scope="module", params=BACKENDS)
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LdapServer, int]]:
    """A server with metrics on (and its metrics port), on each database."""
    backend = str(request.param)
    workdir = tmp_path_factory.mktemp(f"metrics-{backend}")
    metrics_port = free_ports(1)[0]
    settings = {
        "metrics": {"enabled": True, "listen": f"{LOOPBACK}:{metrics_port}"},
        "monitoring": {"expiry_warning_days": WARNING_DAYS},
    }
    with serving(backend, workdir, settings=settings) as server:
        populate(server)
        server.add_full_directory_reader("alice")
        yield server, metrics_port


@pytest.fixture
def server(served: tuple[LdapServer, int]) -> LdapServer:
    return served[0]


@pytest.fixture
def metrics_port(served: tuple[LdapServer, int]) -> int:
    return served[1]


@pytest.fixture
def scrape(metrics_port: int) -> Callable[[], Samples]:
    """GET /metrics with a real HTTP client, parsed with prometheus_client's parser."""
    return lambda: read_samples(f"http://{LOOPBACK}:{metrics_port}/metrics")


def read_samples(address: str) -> Samples:
    with urllib.request.urlopen(address, timeout=TIMEOUT) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def connect(server: LdapServer) -> ldap.ldapobject.SimpleLDAPObject:
    conn = ldap.initialize(server.ldap_url)
    conn.set_option(ldap.OPT_NETWORK_TIMEOUT, TIMEOUT)
    conn.set_option(ldap.OPT_TIMEOUT, TIMEOUT)
    return conn


def test_operations_move_counters_and_histograms(server: LdapServer, scrape: Scrape) -> None:
    before = scrape()
    conn = connect(server)
    conn.search_s("", ldap.SCOPE_BASE, "(objectClass=*)", ["namingContexts"])
    for _ in range(2):
        with pytest.raises(ldap.INVALID_CREDENTIALS):
            conn.simple_bind_s(server.user_dn("alice"), "wrong-Password-1")
    with pytest.raises(ldap.INVALID_CREDENTIALS):
        conn.simple_bind_s(server.user_dn("nobody"), "whatever-Password-2")
    conn.simple_bind_s(server.user_dn("alice"), ALICE_PASSWORD)
    entries = conn.search_s(f"ou=users,{server.base_dn}", ldap.SCOPE_ONELEVEL, "(uid=*)", ["uid"])
    assert conn.compare_s(server.user_dn("alice"), "uid", b"alice")
    during = scrape()
    assert value(during, "ldapsrv_connections_active") >= 1
    conn.unbind_s()

    def settled() -> Samples | None:
        after = scrape()
        return after if value(after, "ldapsrv_connections_active") == 0 else None

    after: Samples = wait_until(settled, TIMEOUT, "active connections back to 0")

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    ops = "ldapsrv_operations_total"
    assert delta(ops, operation="search", result="success") == 2
    assert delta(ops, operation="bind", result="invalidCredentials") == 3
    assert delta(ops, operation="bind", result="success") == 1
    assert delta(ops, operation="compare", result="compareTrue") == 1
    assert delta(ops, operation="unbind", result="none") == 1
    failures = "ldapsrv_bind_failures_total"
    assert delta(failures, reason="wrong_password") == 2
    assert delta(failures, reason="no_such_account") == 1
    assert delta("ldapsrv_search_entries_total") == 1 + len(entries)
    assert delta("ldapsrv_connections_total", tls="false") == 1
    histogram = "ldapsrv_operation_duration_seconds"
    assert delta(f"{histogram}_count", operation="bind") == 4
    assert delta(f"{histogram}_sum", operation="bind") > 0
    assert delta(f"{histogram}_bucket", operation="bind", le="+Inf") == 4
    assert delta(f"{histogram}_count", operation="search") == 2
    # bcrypt runs for every bind: the slowest bucket boundaries hold them all
    assert delta(f"{histogram}_bucket", operation="bind", le="10.0") == 4


def test_pool_usage_is_exported(server: LdapServer, scrape: Scrape) -> None:
    samples = scrape()
    assert value(samples, "ldapsrv_database_pool_size") == 8  # database.pool_size default
    opened = value(samples, "ldapsrv_database_pool_connections", state="open")
    busy = value(samples, "ldapsrv_database_pool_connections", state="checked_out")
    assert opened >= 1 and busy == 0  # the binds above opened connections and gave them back


def test_token_rotations_are_counted(server: LdapServer, scrape: Scrape) -> None:
    account = server.create_service_account("nas-metrics")
    before = value(scrape(), "ldapsrv_token_rotations_total", trigger="admin")
    server.ctl("token", "rotate", account["token_identifier"])
    after = value(scrape(), "ldapsrv_token_rotations_total", trigger="admin")
    assert after - before == 1


def test_expiry_gauges_match_status(server: LdapServer, scrape: Scrape) -> None:
    account = server.create_service_account("nas-soon")
    server.create_token("soon-token", "nas-soon", "--expires", "3d")
    status = server.ctl_json("status")  # a status check also refreshes the gauges
    samples = scrape()
    cert = x509.load_pem_x509_certificate((server.data_dir / "tls" / "server.pem").read_bytes())
    not_after = cert.not_valid_after_utc
    assert value(samples, "ldapsrv_tls_certificate_not_after_timestamp_seconds") == (
        not_after.timestamp()
    )
    seconds_left = value(samples, "ldapsrv_tls_certificate_expiry_seconds")
    assert abs(seconds_left - (not_after - datetime.now(not_after.tzinfo)).total_seconds()) < 120
    expiring = {t["identifier"] for t in status["expiring_tokens"]}
    assert {"soon-token", account["token_identifier"]} <= expiring  # 3 and 360 days < 1000
    assert status["certificate"]["expiring"] is True
    assert value(samples, "ldapsrv_tokens_expiring_soon") == len(status["expiring_tokens"])


def test_only_the_metrics_path_is_served(server: LdapServer, metrics_port: int) -> None:
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(f"http://{LOOPBACK}:{metrics_port}/", timeout=TIMEOUT)
    assert missing.value.code == 404


def test_metrics_are_off_by_default(ldap_server_factory: Callable[..., LdapServer]) -> None:
    server = ldap_server_factory()
    status = server.ctl_json("status")
    assert status["metrics"] is None
    assert "Site starting" not in server.log_text()
