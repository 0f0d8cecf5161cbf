"""The database goes away under load: ldapsrv answers fast, never lets a bind through,
and serves again by itself once the database is back.

Each backend fails the way it fails in production, for real: a private PostgreSQL
cluster is stopped with ``pg_ctl -m immediate`` (a crash) and started again; a MariaDB
account is locked and its connections killed with ``KILL`` (a failover or an admin
cleaning up), then unlocked; a SQLite file is write-locked by another process's
``BEGIN EXCLUSIVE`` (a backup tool or an admin's sqlite3 shell), then released.
"""

from __future__ import annotations

import secrets
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from e2e.clients import ALICE_PASSWORD
from e2e.harness import LdapServer, fresh_database, require_service, start_server, wait_until
from e2e.wire import INTERNALS, Outcome, WireClient
from ldaptor.protocols import pureldap
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from faults.load import BackgroundLoad
from faults.private_postgres import PrivatePostgres, private_postgres

UNAVAILABLE = 52
BUSY = 51
SUCCESS = 0
#: No operation may take longer than this while the database is down.
ANSWER_BOUND = 8.0
#: Service must resume this soon after the database is back.
RECOVERY_BOUND = 15.0


def alice_dn(server: LdapServer) -> str:
    return server.user_dn("alice")


def bound_as_alice(server: LdapServer) -> Callable[[WireClient], None]:
    def setup(client: WireClient) -> None:
        outcome = client.bind(alice_dn(server), ALICE_PASSWORD)
        assert outcome.code == SUCCESS, outcome

    return setup


def bound_client(server: LdapServer) -> WireClient:
    client = WireClient(server.host, server.ldap_port, timeout=ANSWER_BOUND + 5)
    bound_as_alice(server)(client)
    return client


def search_alice(server: LdapServer) -> Callable[[WireClient], Outcome]:
    return lambda client: client.search(server.base_dn, "(uid=alice)")


def timed(action: Callable[[], Outcome]) -> tuple[Outcome, float]:
    started = time.monotonic()
    outcome = action()
    return outcome, time.monotonic() - started


def assert_fast_refusals(server: LdapServer, bound: WireClient, codes: tuple[int, ...]) -> None:
    """While the database is down: searches (on ``bound``, a connection bound before
    the outage), binds (right password included) and admin commands all answer within
    ANSWER_BOUND, with ``codes``, and no bind succeeds."""
    for _ in range(3):
        outcome, took = timed(lambda: bound.search(server.base_dn, "(uid=alice)"))
        assert outcome.code in codes, outcome
        assert took < ANSWER_BOUND, f"search took {took:.1f} s"
        assert not INTERNALS.search(outcome.message), outcome.message
    with WireClient(server.host, server.ldap_port, timeout=ANSWER_BOUND + 5) as client:
        for password in (ALICE_PASSWORD, "wrong-password"):
            outcome, took = timed(lambda p=password: client.bind(alice_dn(server), p))
            assert outcome.code in codes, f"bind during the outage: {outcome}"
            assert not INTERNALS.search(outcome.message), outcome.message
            assert took < ANSWER_BOUND, f"bind took {took:.1f} s"
    started = time.monotonic()
    result = server.ctl("user", "list", check=False)
    assert time.monotonic() - started < ANSWER_BOUND + 5
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr
    assert "unavailable" in result.stderr.lower() or "busy" in result.stderr.lower(), result.stderr


def assert_recovers(server: LdapServer, since: float) -> float:
    """Binds and searches work again without any restart; returns seconds taken."""

    def serving() -> bool:
        try:
            with WireClient(server.host, server.ldap_port, timeout=ANSWER_BOUND) as client:
                if client.bind(alice_dn(server), ALICE_PASSWORD).code != SUCCESS:
                    return False
                return len(client.search(server.base_dn, "(uid=alice)").entries) == 1
        except (OSError, TimeoutError):
            return False

    wait_until(serving, RECOVERY_BOUND, "service resumes after the database is back", 0.2)
    assert server.process.poll() is None, "the server exited"
    return time.monotonic() - since


def assert_load_stayed_bounded(load: BackgroundLoad, allowed: set[int | None]) -> None:
    report = load.stop()
    assert report.samples, "the background load never ran"
    assert report.codes() <= allowed, report.codes()
    assert not report.failures(), report.failures()[:3]
    assert max(report.latencies()) < ANSWER_BOUND, max(report.latencies())


# --------------------------------------------------------------------- PostgreSQL


@pytest.fixture
def pg_server(tmp_path: Path) -> Iterator[tuple[LdapServer, PrivatePostgres]]:
    with private_postgres() as pg:
        url = pg.create_database("ldapsrv")
        server = start_server(tmp_path / "server", url)
        try:
            server.add_user("alice", ALICE_PASSWORD)
            yield server, pg
        finally:
            server.stop()


def test_postgresql_stopped_mid_load_answers_unavailable_fast_and_recovers_by_itself(
    pg_server: tuple[LdapServer, PrivatePostgres],
) -> None:
    server, pg = pg_server
    with BackgroundLoad(server, search_alice(server), setup=bound_as_alice(server)) as load:
        load.wait_for_successes(5, 20)
        with bound_client(server) as bound:
            pg.stop("immediate")
            assert_fast_refusals(server, bound, (UNAVAILABLE, BUSY))
        time.sleep(1)  # the load keeps hitting the dead database meanwhile
        pg.start()
        restarted = time.monotonic()
        took = assert_recovers(server, restarted)
        load.wait_for_successes(len(load.report.successes_after(restarted)) + 3, RECOVERY_BOUND)
        assert_load_stayed_bounded(load, {SUCCESS, UNAVAILABLE, BUSY})
    # One connection served the whole load: an outage does not cost clients their session.
    print(f"PostgreSQL: service resumed {took:.2f} s after the restart")
    assert UNAVAILABLE in load.report.codes(), "the load never saw the outage"


# ------------------------------------------------------------------------ MariaDB


def test_mariadb_connections_killed_and_account_locked_answer_unavailable_then_recover(
    tmp_path: Path,
) -> None:
    admin_url = require_service("mariadb")
    user = f"ldapsrv_f_{secrets.token_hex(4)}"
    password = secrets.token_hex(12)
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")

    def sql(statement: str) -> list[tuple[object, ...]]:
        with admin.connect() as connection:
            # pymysql applies %-formatting even without parameters.
            result = connection.exec_driver_sql(statement.replace("%", "%%"))
            return [tuple(row) for row in result] if result.returns_rows else []

    hosts = ("%", "localhost")
    with fresh_database("mariadb", tmp_path) as root_url:
        database = make_url(root_url).database
        for host in hosts:
            sql(f"CREATE USER '{user}'@'{host}' IDENTIFIED BY '{password}'")
            sql(f"GRANT ALL ON `{database}`.* TO '{user}'@'{host}'")
        url = (
            make_url(root_url)
            .set(username=user, password=password)
            .render_as_string(hide_password=False)
        )
        server = start_server(tmp_path / "server", url)

        def kill_connections() -> int:
            ids = sql(f"SELECT id FROM information_schema.processlist WHERE user = '{user}'")
            for (connection_id,) in ids:
                try:
                    sql(f"KILL {int(str(connection_id))}")
                except Exception as exc:  # already gone
                    if "Unknown thread" not in str(exc):
                        raise
            return len(ids)

        try:
            server.add_user("alice", ALICE_PASSWORD)
            with BackgroundLoad(server, search_alice(server), setup=bound_as_alice(server)) as load:
                load.wait_for_successes(5, 20)
                # Killed connections alone: the pool notices and reconnects at once.
                assert kill_connections() > 0
                assert_recovers(server, time.monotonic())
                # Locked out as well: a lasting outage.
                with bound_client(server) as bound:
                    for host in hosts:
                        sql(f"ALTER USER '{user}'@'{host}' ACCOUNT LOCK")
                    kill_connections()
                    assert_fast_refusals(server, bound, (UNAVAILABLE, BUSY))
                for host in hosts:
                    sql(f"ALTER USER '{user}'@'{host}' ACCOUNT UNLOCK")
                back = time.monotonic()
                took = assert_recovers(server, back)
                load.wait_for_successes(len(load.report.successes_after(back)) + 3, 15)
                assert_load_stayed_bounded(load, {SUCCESS, UNAVAILABLE, BUSY})
            print(f"MariaDB: service resumed {took:.2f} s after the unlock")
        finally:
            server.stop()
            for host in hosts:
                sql(f"DROP USER IF EXISTS '{user}'@'{host}'")
            admin.dispose()


# ------------------------------------------------------------------------- SQLite


def password_modify(old: str, new: str) -> pureldap.LDAPPasswordModifyRequest:
    return pureldap.LDAPPasswordModifyRequest(oldPasswd=old.encode(), newPasswd=new.encode())


def test_a_write_locked_sqlite_file_answers_busy_quickly_and_writes_resume_after(
    tmp_path: Path,
) -> None:
    with fresh_database("sqlite", tmp_path) as url:
        server = start_server(tmp_path / "server", url)
        try:
            server.add_user("alice", ALICE_PASSWORD)
            path = make_url(url).database
            assert path is not None
            locker = sqlite3.connect(path, isolation_level=None)
            try:
                locker.execute("BEGIN EXCLUSIVE")
                with WireClient(server.host, server.ldap_port, timeout=ANSWER_BOUND + 5) as client:
                    assert client.bind(alice_dn(server), ALICE_PASSWORD).code == SUCCESS
                    # A write (a password change) waits the busy timeout, then: busy.
                    outcome, took = timed(
                        lambda: client.operation(password_modify(ALICE_PASSWORD, "New-pass-1"))
                    )
                    assert outcome.code == BUSY, outcome
                    assert took < 5.0, f"busy answer took {took:.1f} s"
                    # Readers are not blocked by a writer (WAL): searches still work.
                    assert len(client.search(server.base_dn, "(uid=alice)").entries) == 1
                    # A failed bind must record its failure: it cannot, so it is refused
                    # as busy (51), the answer that tells the client to try again.
                    assert client.bind(alice_dn(server), "wrong").code == BUSY
                result = server.ctl("user", "add", "bob", check=False)
                assert result.returncode != 0
                assert "busy" in result.stderr.lower(), result.stderr
                assert "Traceback" not in result.stderr
            finally:
                locker.execute("ROLLBACK")
                locker.close()
            server.add_user("bob")
            with WireClient(server.host, server.ldap_port) as client:
                assert client.bind(alice_dn(server), ALICE_PASSWORD).code == SUCCESS
                outcome = client.operation(password_modify(ALICE_PASSWORD, "New-pass-1"))
                assert outcome.code == SUCCESS, outcome
        finally:
            server.stop()
