"""The control-socket protocol, bytes in and bytes out over an in-memory transport."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.testing import StringTransport
from twisted.logger import LogEvent, eventAsText, globalLogPublisher

from ldapsrv.admin.commands import build_registry
from ldapsrv.admin.context import AdminContext, Caller
from ldapsrv.admin.errors import INTERNAL_MESSAGE, AdminError, classify
from ldapsrv.admin.protocol import ControlFactory, ControlProtocol, peer_caller
from ldapsrv.admin.registry import Args, CommandRegistry, JsonObject
from ldapsrv.admin.testing import in_memory_context
from ldapsrv.auth.passwords import PasswordRejected
from ldapsrv.config import load_config
from ldapsrv.errors import (
    AlreadyExists,
    DomainError,
    InvalidValue,
    NotFound,
    RangeExhausted,
    SchemaOutdated,
    StoreUnavailable,
)


@pytest.fixture
def context() -> AdminContext:
    config = load_config(None, {"security.bcrypt_cost": 4}, environ={})
    return in_memory_context(config)


@pytest.fixture
def log_events() -> Iterator[list[LogEvent]]:
    events: list[LogEvent] = []
    globalLogPublisher.addObserver(events.append)
    try:
        yield events
    finally:
        globalLogPublisher.removeObserver(events.append)


class Connection:
    def __init__(self, registry: CommandRegistry, context: AdminContext, limit: int = 65536):
        self.transport = StringTransport()
        self.protocol = ControlFactory(registry, context, limit).buildProtocol(None)
        self.protocol.makeConnection(self.transport)

    def send(self, data: bytes) -> None:
        self.protocol.dataReceived(data)

    def request(self, message: dict[str, Any]) -> None:
        self.send(json.dumps(message).encode() + b"\n")

    def responses(self) -> list[dict[str, Any]]:
        lines = self.transport.value().split(b"\n")
        self.transport.clear()
        assert lines[-1] == b"", "a response must end with a newline"
        return [json.loads(line) for line in lines[:-1]]

    def response(self) -> dict[str, Any]:
        (only,) = self.responses()
        return only


@pytest.fixture
def conn(context: AdminContext) -> Connection:
    return Connection(build_registry(), context)


def test_a_request_is_answered_with_its_id_and_result(conn: Connection) -> None:
    conn.request({"id": 7, "command": "server.ping", "args": {}})
    response = conn.response()
    assert response["id"] == 7 and response["ok"] is True
    assert response["result"]["pong"] is True


def test_args_may_be_omitted_and_string_ids_are_echoed(conn: Connection) -> None:
    conn.request({"id": "abc", "command": "user.list"})
    assert conn.response() == {"id": "abc", "ok": True, "result": {"users": []}}


def test_bad_json_is_a_bad_request_and_the_connection_stays_usable(conn: Connection) -> None:
    conn.send(b"{not json\n")
    assert conn.response() == {
        "id": None,
        "ok": False,
        "error": {"kind": "bad_request", "message": "request is not valid JSON"},
    }
    assert not conn.transport.disconnecting
    conn.request({"id": 2, "command": "server.ping"})
    assert conn.response()["ok"] is True


def test_invalid_utf8_is_a_bad_request(conn: Connection) -> None:
    conn.send(b'{"id": 1, "command": "\xff"}\n')
    assert conn.response()["error"]["kind"] == "bad_request"


def test_deeply_nested_json_is_a_bad_request_not_a_crash(conn: Connection) -> None:
    conn.send(b"[" * 50000 + b"\n")
    assert conn.response()["error"]["kind"] == "bad_request"


@pytest.mark.parametrize(
    ("message", "needle"),
    [
        ([1, 2], "JSON object"),
        ({"id": 1}, '"command"'),
        ({"id": 1, "command": ""}, '"command"'),
        ({"id": 1, "command": "user.list", "args": [1]}, '"args"'),
        ({"id": 1, "command": "user.list", "extra": 1}, "unknown request field 'extra'"),
        ({"id": [1], "command": "user.list"}, '"id"'),
    ],
)
def test_malformed_requests_are_bad_requests_that_say_what_is_wrong(
    conn: Connection, message: Any, needle: str
) -> None:
    conn.request(message)
    response = conn.response()
    assert response["ok"] is False
    assert response["error"]["kind"] == "bad_request"
    assert needle in response["error"]["message"]
    assert not conn.transport.disconnecting


def test_a_bad_request_echoes_a_usable_id(conn: Connection) -> None:
    conn.request({"id": 9, "command": 5})
    assert conn.response()["id"] == 9


def test_unknown_command_kind(conn: Connection) -> None:
    conn.request({"id": 1, "command": "user.frobnicate"})
    assert conn.response()["error"]["kind"] == "unknown_command"


def test_a_request_split_across_many_reads_is_reassembled(conn: Connection) -> None:
    data = json.dumps({"id": 3, "command": "server.ping"}).encode() + b"\n"
    for i in range(len(data)):
        conn.send(data[i : i + 1])
    assert conn.response()["id"] == 3


def test_several_requests_in_one_read_are_answered_in_order(conn: Connection) -> None:
    lines = [json.dumps({"id": i, "command": "server.ping"}).encode() for i in range(5)]
    conn.send(b"\n".join(lines) + b"\n")
    assert [r["id"] for r in conn.responses()] == [0, 1, 2, 3, 4]


def test_blank_lines_are_ignored(conn: Connection) -> None:
    conn.send(b"\n\r\n  \n")
    assert conn.transport.value() == b""


def test_an_over_long_line_is_refused_and_the_connection_closed(context: AdminContext) -> None:
    conn = Connection(build_registry(), context, limit=1024)
    conn.send(b'{"id": 1, "command": "' + b"x" * 2000)  # no newline yet: refused early
    response = conn.response()
    assert response["error"] == {
        "kind": "bad_request",
        "message": "request line longer than 1024 bytes",
    }
    assert conn.transport.disconnecting
    conn.send(b'"}\n{"id": 2, "command": "server.ping"}\n')
    assert conn.transport.value() == b"", "nothing is answered after the refusal"


def test_a_line_of_exactly_the_limit_is_accepted(context: AdminContext) -> None:
    request = json.dumps({"id": 1, "command": "server.ping"}).encode()
    padded = request[:-1] + b" " * (1024 - len(request)) + b"}"
    assert len(padded) == 1024
    conn = Connection(build_registry(), context, limit=1024)
    conn.send(padded + b"\n")
    assert conn.response()["ok"] is True


def test_requests_wait_for_the_previous_one_and_the_transport_is_paused(
    context: AdminContext,
) -> None:
    pending: list[Deferred[JsonObject]] = []
    registry = CommandRegistry()

    def slow(ctx: AdminContext, caller: Caller, a: Args) -> Deferred[JsonObject]:
        d: Deferred[JsonObject] = Deferred()
        pending.append(d)
        return d

    registry.register("test.slow", slow)
    conn = Connection(registry, context)
    conn.send(b'{"id": 1, "command": "test.slow"}\n{"id": 2, "command": "test.slow"}\n')
    assert len(pending) == 1
    assert conn.transport.producerState == "paused"
    assert conn.transport.value() == b""
    pending[0].callback({"n": 1})
    assert len(pending) == 2
    pending[1].callback({"n": 2})
    assert [r["result"]["n"] for r in conn.responses()] == [1, 2]
    assert conn.transport.producerState == "producing"


def test_a_response_after_the_client_left_is_dropped(context: AdminContext) -> None:
    pending: list[Deferred[JsonObject]] = []
    registry = CommandRegistry()

    def slow(ctx: AdminContext, caller: Caller, a: Args) -> Deferred[JsonObject]:
        d: Deferred[JsonObject] = Deferred()
        pending.append(d)
        return d

    registry.register("test.slow", slow)
    conn = Connection(registry, context)
    conn.send(b'{"id": 1, "command": "test.slow"}\n')
    conn.protocol.connectionLost()
    pending[0].callback({})
    assert conn.transport.value() == b""


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (NotFound("no user named 'x'"), "not_found"),
        (AlreadyExists("a user named 'x' already exists"), "already_exists"),
        (InvalidValue("bad name"), "invalid"),
        (PasswordRejected("password must not be empty"), "invalid"),
        (RangeExhausted("no free uid"), "range_exhausted"),
        (StoreUnavailable("database down"), "unavailable"),
        (SchemaOutdated("run ldapsrv db upgrade"), "unavailable"),
        (DomainError("some rule"), "invalid"),
        (AdminError("bad_request", "m"), "bad_request"),
    ],
)
def test_domain_errors_map_to_their_kind_with_their_message(
    context: AdminContext, exc: Exception, kind: str
) -> None:
    mapped = classify(exc)
    assert mapped is not None and mapped.kind == kind and mapped.message == str(exc)

    registry = CommandRegistry()

    async def fails(ctx: AdminContext, caller: Caller, a: Args) -> JsonObject:
        raise exc

    registry.register("test.fails", fails)
    conn = Connection(registry, context)
    conn.request({"id": 1, "command": "test.fails"})
    assert conn.response()["error"] == {"kind": kind, "message": str(exc)}


def test_an_unexpected_exception_is_internal_generic_and_logged_with_traceback(
    context: AdminContext, log_events: list[LogEvent]
) -> None:
    registry = CommandRegistry()

    async def buggy(ctx: AdminContext, caller: Caller, a: Args) -> JsonObject:
        raise KeyError("secret-internal-detail")

    registry.register("test.buggy", buggy)
    conn = Connection(registry, context)
    conn.request({"id": 1, "command": "test.buggy"})
    response = conn.response()
    assert response["error"] == {"kind": "internal", "message": INTERNAL_MESSAGE}
    assert "secret-internal-detail" not in json.dumps(response)
    logged = [e for e in log_events if e.get("log_failure") is not None]
    assert logged, "the failure must be logged"
    text = eventAsText(logged[0])
    assert "secret-internal-detail" in text and "Traceback" in text and "test.buggy" in text


def test_a_result_that_is_not_json_becomes_an_internal_error(
    context: AdminContext, log_events: list[LogEvent]
) -> None:
    registry = CommandRegistry()

    async def odd(ctx: AdminContext, caller: Caller, a: Args) -> JsonObject:
        return {"value": object()}  # type: ignore[dict-item]

    registry.register("test.odd", odd)
    conn = Connection(registry, context)
    conn.request({"id": 1, "command": "test.odd"})
    assert conn.response()["error"]["kind"] == "internal"
    assert any(e.get("log_failure") is not None for e in log_events)


def test_the_password_never_reaches_the_log(conn: Connection, log_events: list[LogEvent]) -> None:
    password = "correct horse battery staple"
    conn.request({"id": 1, "command": "user.add", "args": {"name": "al", "password": password}})
    conn.request({"id": 2, "command": "user.set_password", "args": {"name": "al", "password": ""}})
    conn.request({"id": 3, "command": "user.set_password", "args": {"name": "al", "password": 5}})
    responses = conn.responses()
    assert [r["ok"] for r in responses] == [True, False, False]
    assert log_events, "commands are logged"
    for event in log_events:
        assert password not in (eventAsText(event) or "")
        assert password not in repr(event)
    assert password not in json.dumps(responses)


def test_peer_credentials_come_from_the_kernel() -> None:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:

        class Transport(StringTransport):
            def getHandle(self) -> socket.socket:
                return ours

        caller = peer_caller(Transport())
    finally:
        ours.close()
        theirs.close()
    assert caller == Caller("control-socket", uid=os.getuid(), gid=os.getgid(), pid=os.getpid())


def test_without_a_socket_the_caller_is_known_only_by_channel(conn: Connection) -> None:
    assert isinstance(conn.protocol, ControlProtocol)
    assert conn.protocol.caller == Caller("control-socket")
