"""``ldapsrv health``: the steps, their order, the report and the exit status.

The LDAP side is a fake session (the real one, over ldap3, is exercised end to
end against a running server); the control-socket side is a real socket
served by a thread that answers ``health.credentials``.
"""

from __future__ import annotations

import io
import json
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ldapsrv import health
from ldapsrv.health import Credentials, HealthError, Step, check, report, run_health

TOKEN = "ldsrv_AAAAAAAAAAAA_" + "s" * 43
BIND_DN = "cn=ldapsrv-health,ou=users,dc=example,dc=org"
CREDS: dict[str, Any] = {
    "account": "ldapsrv-health",
    "bind_dn": BIND_DN,
    "token": TOKEN,
    "base_dn": "dc=example,dc=org",
    "ldap_url": "ldap://127.0.0.1:3389",
    "ca_file": None,
}


class FakeSession:
    """Answers like a healthy server unless told to fail at one step."""

    def __init__(self, creds: Credentials, timeout: float, fail_at: str | None = None) -> None:
        self.creds = creds
        self.timeout = timeout
        self.fail_at = fail_at
        self.done: list[str] = []
        self.closed = False
        self.authzid = f"dn:{creds.bind_dn}"
        self.found = [creds.bind_dn.upper().replace(",", ", ")]

    def _step(self, name: str) -> None:
        self.done.append(name)
        if name == self.fail_at:
            # what a careless library might put in a message: the password itself
            raise RuntimeError(f"{name} failed: invalidCredentials for password {self.creds.token}")

    def connect(self) -> None:
        self._step("connect")

    def bind(self) -> None:
        self._step("bind")

    def whoami(self) -> str:
        self._step("whoami")
        return self.authzid

    def search_base(self) -> int:
        self._step("search base")
        return 1

    def find_account(self) -> list[str]:
        self._step("search users")
        return self.found

    def close(self) -> None:
        self.closed = True


class Factory:
    def __init__(self, fail_at: str | None = None, **overrides: Any) -> None:
        self.fail_at = fail_at
        self.overrides = overrides
        self.sessions: list[FakeSession] = []

    def __call__(self, creds: Credentials, timeout: float) -> FakeSession:
        session = FakeSession(creds, timeout, self.fail_at)
        for key, value in self.overrides.items():
            setattr(session, key, value)
        self.sessions.append(session)
        return session


def test_a_healthy_server_passes_every_step_in_order() -> None:
    factory = Factory()
    steps = check(lambda: CREDS, factory, timeout=3)
    assert [s.name for s in steps] == list(health.STEP_NAMES)
    assert all(s.ok and s.ms >= 0 for s in steps)
    [session] = factory.sessions
    assert session.done == ["connect", "bind", "whoami", "search base", "search users"]
    assert session.closed and session.timeout == 3
    assert steps[2].detail == BIND_DN
    out = io.StringIO()
    assert report(steps, False, out) == 0
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("ok     credentials ")
    assert [line.split()[0] for line in lines[:-1]] == ["ok"] * 6
    assert all(" ms " in line or line.endswith(" ms") for line in lines[:-1])
    assert lines[-1].startswith("healthy (")


@pytest.mark.parametrize("step", ["connect", "bind", "whoami", "search base", "search users"])
def test_a_failed_step_is_named_stops_the_check_and_exits_1(step: str) -> None:
    factory = Factory(fail_at=step)
    steps = check(lambda: CREDS, factory)
    assert steps[-1].name == step and not steps[-1].ok
    assert all(s.ok for s in steps[:-1])
    assert factory.sessions[0].closed
    out = io.StringIO()
    assert report(steps, False, out) == 1
    text = out.getvalue()
    assert f"FAILED {step}" in text
    assert text.splitlines()[-1] == f"unhealthy: the {step} step failed"
    assert TOKEN not in text and "***" in text


def test_the_token_never_appears_in_json_either() -> None:
    steps = check(lambda: CREDS, Factory(fail_at="bind"))
    out = io.StringIO()
    assert report(steps, True, out) == 1
    document = json.loads(out.getvalue())
    assert document["healthy"] is False and document["failed_step"] == "bind"
    assert [s["step"] for s in document["steps"]] == ["credentials", "connect", "bind"]
    assert TOKEN not in out.getvalue()


def test_json_of_a_healthy_run() -> None:
    out = io.StringIO()
    assert report(check(lambda: CREDS, Factory()), True, out) == 0
    document = json.loads(out.getvalue())
    assert document["healthy"] is True and document["failed_step"] is None
    assert len(document["steps"]) == 6 and all(s["ok"] for s in document["steps"])
    assert document["total_ms"] >= 0


def test_failing_to_get_credentials_is_the_first_step() -> None:
    def fetch() -> Any:
        raise HealthError("cannot reach ldapsrv control socket at /x: is the server running?")

    factory = Factory()
    steps = check(fetch, factory)
    assert [(s.name, s.ok) for s in steps] == [("credentials", False)]
    assert "is the server running" in steps[0].detail
    assert factory.sessions == []


def test_an_incomplete_answer_fails_the_credentials_step() -> None:
    steps = check(lambda: {"token": TOKEN}, Factory())
    assert [(s.name, s.ok) for s in steps] == [("credentials", False)]
    assert "incomplete" in steps[0].detail and TOKEN not in steps[0].detail


def test_whoami_as_someone_else_fails() -> None:
    steps = check(lambda: CREDS, Factory(authzid="dn:cn=alice,ou=users,dc=example,dc=org"))
    assert (steps[-1].name, steps[-1].ok) == ("whoami", False)
    assert "cn=alice" in steps[-1].detail


def test_an_anonymous_whoami_fails() -> None:
    steps = check(lambda: CREDS, Factory(authzid=""))
    assert (steps[-1].name, steps[-1].ok) == ("whoami", False)


def test_not_finding_itself_in_ou_users_fails() -> None:
    steps = check(lambda: CREDS, Factory(found=[]))
    assert (steps[-1].name, steps[-1].ok) == ("search users", False)
    assert "got 0 entries" in steps[-1].detail


def test_a_session_that_cannot_be_made_fails_connect() -> None:
    def factory(creds: Credentials, timeout: float) -> Any:
        raise HealthError("the health check needs the Python package ldap3 (pip install ldap3)")

    steps = check(lambda: CREDS, factory)
    assert [(s.name, s.ok) for s in steps] == [("credentials", True), ("connect", False)]
    assert "ldap3" in steps[-1].detail


def test_credentials_keep_the_token_out_of_repr() -> None:
    creds = Credentials.from_result(CREDS)
    assert TOKEN not in repr(creds)
    assert creds.token == TOKEN


def test_step_json() -> None:
    assert Step("bind", True, 1.23456, "x").as_json() == {
        "step": "bind",
        "ok": True,
        "ms": 1.235,
        "detail": "x",
    }


def test_the_real_session_needs_no_server_to_be_built() -> None:
    session = health.Ldap3Session(Credentials.from_result(CREDS), 2.0)
    session.close()  # never opened: closing quietly is fine


def test_the_real_session_reports_a_refused_connection(unused_port: int) -> None:
    answer = {**CREDS, "ldap_url": f"ldap://127.0.0.1:{unused_port}"}
    steps = check(lambda: answer, health.Ldap3Session, 2.0)
    assert [(s.name, s.ok) for s in steps] == [("credentials", True), ("connect", False)]
    assert TOKEN not in steps[-1].detail


def test_the_real_session_connects_with_a_fractional_timeout() -> None:
    """ldap3 packs the receive timeout as whole seconds; a float used to break open()."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)  # the kernel completes the handshake without accept()
        port = listener.getsockname()[1]
        creds = Credentials.from_result({**CREDS, "ldap_url": f"ldap://127.0.0.1:{port}"})
        session = health.Ldap3Session(creds, 0.5)
        try:
            session.connect()
        finally:
            session.close()


@pytest.fixture
def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


# --- over a real control socket ------------------------------------------------------


@pytest.fixture
def control_socket(tmp_path: Path) -> Iterator[Path]:
    """A control socket that answers every request with the health credentials."""
    path = tmp_path / "control.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(os.fspath(path))
    listener.listen(4)
    listener.settimeout(0.05)  # so the thread notices ``stop`` promptly
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(5)
            with conn:
                request = json.loads(conn.makefile("rb").readline())
                assert request["command"] == "health.credentials"
                answer = {"id": request["id"], "ok": True, "result": CREDS}
                conn.sendall(json.dumps(answer).encode() + b"\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield path
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


def test_run_health_fetches_credentials_over_the_socket(control_socket: Path) -> None:
    out = io.StringIO()
    factory = Factory()
    assert run_health(control_socket, session_factory=factory, out=out) == 0
    assert factory.sessions[0].creds.token == TOKEN
    assert "healthy" in out.getvalue() and TOKEN not in out.getvalue()


def test_run_health_without_a_server_fails_at_credentials(tmp_path: Path) -> None:
    out = io.StringIO()
    code = run_health(tmp_path / "none.sock", as_json=True, session_factory=Factory(), out=out)
    assert code == 1
    document = json.loads(out.getvalue())
    assert document["failed_step"] == "credentials"
    assert "is the server running" in document["steps"][0]["detail"]
