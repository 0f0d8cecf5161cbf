"""The control-socket wire protocol: newline-delimited JSON, one request per line.

Request:  ``{"id": 1, "command": "user.add", "args": {...}}``
Response: ``{"id": 1, "ok": true, "result": {...}}`` or
          ``{"id": 1, "ok": false, "error": {"kind": "...", "message": "..."}}``

Requests on one connection run one at a time, in order: while one runs the
transport is paused, so a client that pipelines cannot make the server buffer
without bound, and responses come back in request order. A malformed request
is answered with ``bad_request`` and the connection stays usable; only a line
longer than the limit closes it, because the rest of such a line cannot be
trusted to be a request boundary.
"""

from __future__ import annotations

import json
import socket
import struct
from typing import Any, cast
from typing import Protocol as TypingProtocol

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import ITransport
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from ldapsrv.admin.context import CONTROL_SOCKET, AdminContext, Caller
from ldapsrv.admin.errors import BAD_REQUEST, INTERNAL, INTERNAL_MESSAGE, AdminError, classify
from ldapsrv.admin.registry import CommandRegistry, Json, JsonObject

MAX_REQUEST_BYTES = 64 * 1024
_REQUEST_FIELDS = frozenset({"id", "command", "args"})

log = Logger()


class _Transport(TypingProtocol):
    """The transport methods this protocol uses (zope interfaces type poorly)."""

    def write(self, data: bytes) -> None: ...

    def loseConnection(self) -> None: ...

    def pauseProducing(self) -> None: ...

    def resumeProducing(self) -> None: ...


def encode_message(message: JsonObject) -> bytes:
    """One response (or request) line. ASCII-only JSON, so no byte in a value
    can ever be mistaken for the line separator."""
    text = json.dumps(message, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    return text.encode("ascii") + b"\n"


def error_message(request_id: Json, kind: str, message: str) -> JsonObject:
    return {"id": request_id, "ok": False, "error": {"kind": kind, "message": message}}


def wire_error(failure: Failure, command: str, caller: Caller) -> AdminError:
    """The single place where a failed command becomes a wire error (on the
    control socket and the management API alike).

    Domain errors keep their (admin-readable) message; anything unexpected is
    logged here with its traceback and answered with a generic message, so no
    internal detail reaches the client.
    """
    exc = failure.value
    mapped = classify(exc) if isinstance(exc, BaseException) else None
    if mapped is not None:
        return mapped
    log.failure(
        "admin command {command} from {caller} failed unexpectedly",
        failure,
        command=command,
        caller=caller.describe(),
    )
    return AdminError(INTERNAL, INTERNAL_MESSAGE)


def peer_caller(transport: ITransport | None) -> Caller:
    """The connecting process as the kernel reports it (SO_PEERCRED, Linux).

    Fields stay None where that is unavailable (other platforms, in-memory
    transports in tests); the server still serves, it just knows less.
    """
    option = getattr(socket, "SO_PEERCRED", None)
    get_handle = getattr(transport, "getHandle", None)
    if option is None or get_handle is None:
        return Caller(CONTROL_SOCKET)
    handle = get_handle()
    if not isinstance(handle, socket.socket):
        return Caller(CONTROL_SOCKET)
    try:
        raw = handle.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("3i"))
    except OSError:
        return Caller(CONTROL_SOCKET)
    pid, uid, gid = struct.unpack("3i", raw)
    return Caller(CONTROL_SOCKET, uid=uid, gid=gid, pid=pid)


class ControlProtocol(Protocol):
    """One admin connection."""

    def __init__(
        self,
        registry: CommandRegistry,
        context: AdminContext,
        max_request_bytes: int = MAX_REQUEST_BYTES,
    ) -> None:
        self._registry = registry
        self._context = context
        self._max = max_request_bytes
        self._buffer = b""
        self._busy = False
        self._draining = False
        self._closed = False
        self._transport: _Transport | None = None
        self.caller = Caller(CONTROL_SOCKET)

    def connectionMade(self) -> None:
        self._transport = cast(_Transport, self.transport)
        self.caller = peer_caller(self.transport)
        log.debug("control socket: connection from {caller}", caller=self.caller.describe())

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._closed = True
        self._buffer = b""

    def dataReceived(self, data: bytes) -> None:
        if self._closed:
            return
        self._buffer += data
        self._drain()

    def _drain(self) -> None:
        """Handle complete lines until one is in progress or none is left."""
        if self._draining:
            return  # a request finished synchronously inside the loop below
        self._draining = True
        try:
            while not self._busy and not self._closed:
                line, newline, rest = self._buffer.partition(b"\n")
                if len(line) > self._max:
                    self._too_long()
                    return
                if not newline:
                    return
                self._buffer = rest
                self._handle_line(line)
        finally:
            self._draining = False

    def _too_long(self) -> None:
        self._send(error_message(None, BAD_REQUEST, f"request line longer than {self._max} bytes"))
        self._closed = True
        self._buffer = b""
        assert self._transport is not None
        self._transport.loseConnection()

    def _handle_line(self, line: bytes) -> None:
        if not line.strip():
            return  # tolerate blank lines (e.g. a human with socat)
        try:
            request = json.loads(line)
        except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError
            self._send(error_message(None, BAD_REQUEST, "request is not valid JSON"))
            return
        parsed = self._parse(request)
        if isinstance(parsed, AdminError):
            request_id = request.get("id") if isinstance(request, dict) else None
            if not _valid_id(request_id):
                request_id = None
            self._send(error_message(request_id, parsed.kind, parsed.message))
            return
        request_id, command, args = parsed
        self._run(request_id, command, args)

    @staticmethod
    def _parse(request: Any) -> tuple[Json, str, dict[str, object]] | AdminError:
        if not isinstance(request, dict):
            return AdminError(BAD_REQUEST, "request must be a JSON object")
        unknown = sorted(set(request) - _REQUEST_FIELDS)
        if unknown:
            return AdminError(BAD_REQUEST, f"unknown request field {unknown[0][:100]!r}")
        request_id = request.get("id")
        if not _valid_id(request_id):
            return AdminError(BAD_REQUEST, '"id" must be an integer, a string or null')
        command = request.get("command")
        if not isinstance(command, str) or not command:
            return AdminError(BAD_REQUEST, '"command" must be a non-empty string')
        args = request.get("args", {})
        if args is None:
            args = {}
        if not isinstance(args, dict):
            return AdminError(BAD_REQUEST, '"args" must be a JSON object')
        return request_id, command, args

    def _run(self, request_id: Json, command: str, args: dict[str, object]) -> None:
        self._busy = True
        assert self._transport is not None
        self._transport.pauseProducing()
        caller = self.caller
        d: Deferred[JsonObject] = self._registry.dispatch(self._context, caller, command, args)

        def succeeded(result: JsonObject) -> None:
            try:
                line = encode_message({"id": request_id, "ok": True, "result": result})
            except (TypeError, ValueError):
                failed(Failure())  # type: ignore[no-untyped-call]
                return
            log.info(
                "control socket: {command} from {caller}: ok",
                command=command,
                caller=caller.describe(),
            )
            self._write(line)

        def failed(failure: Failure) -> None:
            error = wire_error(failure, command, caller)
            log.info(
                "control socket: {command} from {caller}: {kind}",
                command=command,
                caller=caller.describe(),
                kind=error.kind,
            )
            self._send(error_message(request_id, error.kind, error.message))

        def finished(_: object) -> None:
            self._busy = False
            if self._closed:
                return
            assert self._transport is not None
            self._transport.resumeProducing()
            self._drain()

        d.addCallbacks(succeeded, failed)
        d.addBoth(finished)
        # A bug in the callbacks above must not leave an unhandled error behind.
        d.addErrback(lambda f: log.failure("control socket: response handling failed", f))

    def _send(self, message: JsonObject) -> None:
        self._write(encode_message(message))

    def _write(self, line: bytes) -> None:
        if not self._closed and self._transport is not None:
            self._transport.write(line)


def _valid_id(value: object) -> bool:
    return (
        value is None
        or isinstance(value, str)
        or (isinstance(value, int) and not isinstance(value, bool))
    )


class ControlFactory(Factory):
    """Builds a ControlProtocol per connection, all sharing one registry and context."""

    noisy = False  # ControlProtocol logs connections itself, with the peer's uid/pid

    def __init__(
        self,
        registry: CommandRegistry,
        context: AdminContext,
        max_request_bytes: int = MAX_REQUEST_BYTES,
    ) -> None:
        self.registry = registry
        self.context = context
        self.max_request_bytes = max_request_bytes

    def buildProtocol(self, addr: object) -> ControlProtocol:
        protocol = ControlProtocol(self.registry, self.context, self.max_request_bytes)
        protocol.factory = self
        return protocol
