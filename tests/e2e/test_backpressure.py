"""A client that stops reading a huge search must not make the server buffer it.

A raw-socket client with a small receive window asks for every one of 30,000 large
entries (no paging, no size limit) and stops reading. The server's resident memory
must stay flat while it waits, other clients must keep getting answers quickly, and
when the slow client reads again it must get every entry, exactly once.
"""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, insert

from e2e.harness import LdapServer, serving
from e2e.rawldap import RawClient
from ldapsrv.store.models import Account

ENTRIES = 30_000
PREFIX = "bulk"
#: Buffering this whole result grows the server by ~33 MiB (measured); waiting for
#: the client costs ~5 MiB (its socket buffer, one batch of rows, allocator noise).
MAX_RSS_GROWTH = 16 * 1024 * 1024
P99_BOUND = 0.5


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def add_bulk_people(database_url: str, count: int) -> None:
    """Large entries straight into the database (the CLI would take minutes)."""
    now = datetime.now(UTC)
    rows = [
        {
            "uuid": str(uuid.uuid4()),
            "kind": "user",
            "name": f"{PREFIX}{i:05d}",
            "name_lower": f"{PREFIX}{i:05d}",
            "disabled": False,
            "uid_number": 200_000 + i,
            "gid_number": 200_000,
            "display_name": f"Display name {i} " + "d" * 200,
            "given_name": "g" * 120,
            "surname": "s" * 120,
            "mail": f"{PREFIX}{i:05d}@example.org",
            "gecos": "g" * 200,
            "home_directory": f"/home/{PREFIX}{i:05d}",
            "login_shell": "/bin/bash",
            "created_at": now,
            "modified_at": now,
        }
        for i in range(count)
    ]
    engine = create_engine(database_url)
    try:
        with engine.begin() as connection:
            connection.execute(insert(Account.__table__), rows)
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LdapServer]:
    workdir = tmp_path_factory.mktemp("backpressure")
    settings = {
        "security": {"anonymous_read": True},
        "limits": {"size_limit": 0, "time_limit": 0},
    }
    with serving("sqlite", workdir, settings=settings) as server:
        add_bulk_people(server.database_url, ENTRIES)
        yield server


def quick_answer_latency(server: LdapServer) -> float:
    """Seconds for a fresh client to connect, read one entry and get its result."""
    started = time.monotonic()
    client = RawClient.connect(server.ldap_port)
    try:
        entries, done = client.until_done(
            client.search(f"cn={PREFIX}00042,ou=users,{server.base_dn}", ("cn",), scope=0)
        )
    finally:
        client.close()
    assert int(done.resultCode) == 0 and len(entries) == 1
    return time.monotonic() - started


def test_a_client_that_stops_reading_costs_bounded_memory_and_nobody_waits(
    server: LdapServer,
) -> None:
    pid = server.process.pid
    for _ in range(20):  # warm up: code paths, thread pool, database connections
        quick_answer_latency(server)
    baseline = rss_bytes(pid)

    slow = RawClient.connect(server.ldap_port, receive_buffer=16 * 1024)
    mid = slow.search(f"ou=users,{server.base_dn}", ("*",))
    time.sleep(3)  # the server fills the socket and its buffer, then has to wait

    latencies = []
    peak = baseline
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:
        latencies.append(quick_answer_latency(server))
        peak = max(peak, rss_bytes(pid))
    growth = peak - baseline
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    print(
        f"rss baseline {baseline / 2**20:.1f} MiB, growth {growth / 2**20:.1f} MiB; "
        f"{len(latencies)} requests, median {statistics.median(latencies) * 1000:.1f} ms, "
        f"p99 {p99 * 1000:.1f} ms"
    )
    assert growth < MAX_RSS_GROWTH, f"server RSS grew by {growth / 2**20:.1f} MiB"
    assert p99 < P99_BOUND, f"p99 {p99 * 1000:.0f} ms while a client was not reading"

    entries, done = slow.until_done(mid, timeout=300)  # it reads again: everything arrives
    assert int(done.resultCode) == 0
    names = [e.objectName for e in entries]
    bulk = [n for n in names if n.startswith(b"cn=" + PREFIX.encode())]
    assert len(bulk) == ENTRIES and len(set(bulk)) == ENTRIES
    last = next(e for e in reversed(entries) if e.objectName in bulk).toWire()
    assert b"mail" in last and b"@example.org" in last  # whole entries, all attributes
    slow.close()
