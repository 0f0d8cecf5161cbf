"""``ldapsrv status``, ``/metrics`` and the management API of a server with
``[server] workers = 2``: the supervisor answers all three, and they show the
workers' LDAP connections and operations (not the supervisor's own, which serves
no LDAP), also after a worker was killed with SIGKILL."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from e2e.api_client import Api, api_client, api_token
from e2e.harness import LOOPBACK, LdapServer, free_ports, serving, wait_until
from e2e.rawldap import RawClient
from e2e.test_metrics import Samples, read_samples, value
from e2e.test_workers import WORKERS, worker_pids

TIMEOUT = 20
#: Connections opened, at most, until each worker holds at least one.
MAX_HELD = 40
BINDS = ("ldapsrv_operations_total", {"operation": "bind", "result": "success"})


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LdapServer, int]]:
    workdir = tmp_path_factory.mktemp("supervised")
    metrics_port = free_ports(1)[0]
    settings: dict[str, dict[str, object]] = {
        "server": {"workers": WORKERS},
        "metrics": {"enabled": True, "listen": f"{LOOPBACK}:{metrics_port}"},
        "api": {"enabled": True},
    }
    with serving("sqlite", workdir, settings=settings) as server:
        server.create_service_account("ci-admin")
        for permission in ("read_audit", "manage_accounts"):
            server.grant(permission, user="ci-admin")
        yield server, metrics_port


@pytest.fixture(scope="module")
def server(served: tuple[LdapServer, int]) -> LdapServer:
    return served[0]


@pytest.fixture(scope="module")
def api(server: LdapServer) -> Iterator[Api]:
    with api_client(server) as client:
        yield Api(client, "ci-admin", api_token(server, "ci-admin", "ci-admin-api"))


def scrape(served: tuple[LdapServer, int]) -> Samples:
    return read_samples(f"http://{LOOPBACK}:{served[1]}/metrics")


def binds(samples: Samples) -> float:
    name, labels = BINDS
    return value(samples, name, **labels)


def status(server: LdapServer) -> dict[str, Any]:
    result: dict[str, Any] = server.ctl_json("status")
    return result


def settled(server: LdapServer, active: int) -> dict[str, Any]:
    """The status once the workers' reports add up to ``active`` open connections."""

    def check() -> dict[str, Any] | None:
        now = status(server)
        return now if now["connections"]["active"] == active else None

    result: dict[str, Any] = wait_until(check, TIMEOUT, f"status showing {active} connections")
    return result


class Held:
    """LDAP connections kept open, each after one anonymous bind."""

    def __init__(self, server: LdapServer) -> None:
        self.server = server
        self.clients: list[RawClient] = []

    def open(self) -> None:
        client = RawClient.connect(self.server.ldap_port)
        self.clients.append(client)
        _, answer = client.until_done(client.bind())
        assert int(answer.resultCode) == 0

    def on_every_worker(self) -> dict[str, Any]:
        """Open connections until each worker holds one; the status that shows it."""
        while True:
            self.open()
            self.open()
            now = settled(self.server, len(self.clients))
            if all(p["connections"]["active"] >= 1 for p in now["workers"]["processes"]):
                return now
            assert len(self.clients) < MAX_HELD, now["workers"]["processes"]

    def close(self) -> None:
        for client in self.clients:
            client.close()
        self.clients.clear()


@pytest.fixture
def held(server: LdapServer) -> Iterator[Held]:
    connections = Held(server)
    try:
        yield connections
    finally:
        connections.close()


def test_status_and_metrics_count_the_connections_and_operations_of_both_workers(
    server: LdapServer, served: tuple[LdapServer, int], held: Held
) -> None:
    before = scrape(served)
    shown = held.on_every_worker()
    count = len(held.clients)

    assert shown["role"] == "supervisor"
    assert shown["workers"]["pid"] == server.process.pid
    processes = shown["workers"]["processes"]
    assert [p["slot"] for p in processes] == list(range(WORKERS))
    assert {p["pid"] for p in processes} == worker_pids(server)
    assert all(p["ready"] and p["restarts"] == 0 for p in processes)
    for process in processes:
        started = datetime.strptime(process["started"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        assert abs((datetime.now(UTC) - started).total_seconds()) < 3600
    assert sum(p["connections"]["active"] for p in processes) == count
    assert shown["connections"]["accepted"] >= count

    text = server.ctl("status").stdout
    assert f"connections: {count} active, " in text
    assert f"{WORKERS} processes of 8 threads each (supervisor pid {server.process.pid}" in text
    assert "worker processes:" in text and "serving" in text
    assert all(str(p["pid"]) in text for p in processes)

    during = scrape(served)
    assert value(during, "ldapsrv_connections_active") == count
    assert binds(during) - binds(before) == count  # each worker counted its own
    connections = value(during, "ldapsrv_connections_total", tls="false")
    assert connections - value(before, "ldapsrv_connections_total", tls="false") == count

    held.close()
    assert settled(server, 0)["connections"]["accepted"] >= count
    wait_until(
        lambda: value(scrape(served), "ldapsrv_connections_active") == 0,
        TIMEOUT,
        "metrics showing no open connection",
    )


def test_the_management_api_answers_from_the_supervisor(server: LdapServer, api: Api) -> None:
    assert api.ok("server.ping")["pong"] is True
    server.add_user("dave")
    assert "dave" in [u["name"] for u in api.ok("user.list")["users"]]
    shown = api.ok("server.status")
    assert shown["role"] == "supervisor"
    assert {p["pid"] for p in shown["workers"]["processes"]} == worker_pids(server)


def test_a_killed_workers_connections_drop_out_and_everything_still_answers(
    server: LdapServer, served: tuple[LdapServer, int], held: Held, api: Api
) -> None:
    shown = held.on_every_worker()
    victim, survivor = shown["workers"]["processes"]
    remaining = survivor["connections"]["active"]
    counted = binds(scrape(served))

    os.kill(victim["pid"], signal.SIGKILL)

    def replaced() -> dict[str, Any] | None:
        now = status(server)
        slot = now["workers"]["processes"][victim["slot"]]
        gone = slot["pid"] != victim["pid"]
        return now if gone and now["connections"]["active"] == remaining else None

    after = wait_until(replaced, TIMEOUT, "the dead worker's connections dropped from status")
    assert after["workers"]["processes"][survivor["slot"]]["pid"] == survivor["pid"]
    wait_until(
        lambda: value(scrape(served), "ldapsrv_connections_active") == remaining,
        TIMEOUT,
        "the dead worker's connections dropped from the metrics",
    )
    assert binds(scrape(served)) == counted  # what the dead worker did still counts
    assert api.ok("server.ping")["pong"] is True

    def serving_again() -> dict[str, Any] | None:
        now = status(server)
        slot = now["workers"]["processes"][victim["slot"]]
        return now if slot["ready"] and slot["restarts"] == 1 else None

    again = wait_until(serving_again, 60, "a replacement worker serving")
    assert {p["pid"] for p in again["workers"]["processes"]} == worker_pids(server)
    assert again["connections"]["active"] == remaining
    assert "Traceback" not in server.log_text()
