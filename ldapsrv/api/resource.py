"""The management API over Twisted Web: routing, limits, and the pipeline of one call.

One call, in order: rate limit per client address; route (404 for an unknown
path, 405 for a wrong method); body size (413); authentication in the thread
pool (401 with ``WWW-Authenticate``, or 429 while the failed-authentication
throttle locks the client out); rate limit per account; JSON body (400); then
``CommandRegistry.dispatch`` (the control socket's own path) with a gate that
checks the command's permission (403) in the thread pool; finally an
``api.call`` audit event naming the account, the token identifier, the address
and the outcome, written before the answer goes out. Nothing blocking runs on
the reactor thread.
"""

from __future__ import annotations

import io
import json
from collections.abc import Awaitable, Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import server
from twisted.web.resource import Resource

from ldapsrv.admin.context import MANAGEMENT_API, AdminContext, Caller
from ldapsrv.admin.errors import BAD_REQUEST, INTERNAL, INTERNAL_MESSAGE
from ldapsrv.admin.protocol import wire_error
from ldapsrv.admin.registry import Args, Command, CommandRegistry, JsonObject
from ldapsrv.api.access import check_access
from ldapsrv.api.auth import ApiAuthenticator, Principal, parse_authorization
from ldapsrv.api.errors import (
    BODY_TOO_LARGE,
    METHOD_NOT_ALLOWED,
    RATE_LIMITED,
    THROTTLED,
    UNKNOWN_ENDPOINT,
    ApiError,
    encode,
    from_admin_error,
    retry_later,
    unauthorized,
)
from ldapsrv.api.limits import RateLimiter
from ldapsrv.api.openapi import OPENAPI_PATH, api_commands, build_openapi
from ldapsrv.directory.records import AuditEvent

log = Logger()

Sleep = Callable[[float], Awaitable[object]]
Answer = tuple[int, bytes, tuple[tuple[str, str], ...]]

_COMMON_HEADERS = (
    ("Content-Type", "application/json"),
    ("Cache-Control", "no-store"),  # results may hold a token value
    ("X-Content-Type-Options", "nosniff"),
)


class LimitedRequest(server.Request):
    """A request that keeps at most ``max_body`` bytes of its body.

    Twisted buffers a whole body before the resource sees it; this one counts
    what arrives (declared length or chunks) and, past the limit, keeps
    nothing more and marks itself, so the resource answers 413 without the
    server ever holding an oversized body.
    """

    max_body = 64 * 1024
    body_too_large = False
    _received = 0

    def gotLength(self, length: int | None) -> None:
        if length is not None and length > self.max_body:
            self.body_too_large = True
            length = None  # an in-memory buffer that stays empty
        super().gotLength(length)  # type: ignore[no-untyped-call]

    def handleContentChunk(self, data: bytes) -> None:
        if self.body_too_large:
            return
        self._received += len(data)
        if self._received > self.max_body:
            self.body_too_large = True
            self.content = io.BytesIO()  # drop what was kept so far
            return
        super().handleContentChunk(data)  # type: ignore[no-untyped-call]


def limited_request(max_body: int) -> type[LimitedRequest]:
    """A request class for a Site whose bodies may be at most ``max_body`` bytes."""

    class Limited(LimitedRequest):
        pass

    Limited.max_body = max_body
    return Limited


class ManagementApi(Resource):
    """The whole API as one leaf resource (it routes by exact path)."""

    isLeaf = True

    def __init__(
        self,
        registry: CommandRegistry,
        context: AdminContext,
        authenticator: ApiAuthenticator,
        *,
        address_limit: RateLimiter,
        account_limit: RateLimiter,
        sleep: Sleep,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._registry = registry
        self._context = context
        self._authenticator = authenticator
        self._address_limit = address_limit
        self._account_limit = account_limit
        self._sleep = sleep
        self._commands = api_commands(registry)
        self._openapi = encode(build_openapi(registry))

    def render(self, request: server.Request) -> int:
        finished = {"done": False}

        def gone(_: object) -> None:
            finished["done"] = True

        request.notifyFinish().addBoth(gone)
        d = Deferred.fromCoroutine(self._answer(request))

        def respond(answer: Answer) -> None:
            if not finished["done"]:
                _write(request, answer)

        def crashed(failure: Failure) -> None:
            log.failure("api: answering a request failed", failure)
            if not finished["done"]:
                _write(request, _as_answer(ApiError(500, INTERNAL, INTERNAL_MESSAGE)))

        d.addCallbacks(respond, crashed)
        return server.NOT_DONE_YET

    async def _answer(self, request: server.Request) -> Answer:
        address = _address(request)
        try:
            return await self._pipeline(request, address)
        except ApiError as error:
            return _as_answer(error)

    async def _pipeline(self, request: server.Request, address: str) -> Answer:
        wait = self._address_limit.take(address)
        if wait is not None:
            raise retry_later(RATE_LIMITED, f"too many requests from {address}", wait)
        command = self._route(request)
        if command is None:
            return 200, self._openapi, ()
        if getattr(request, "body_too_large", False):
            limit = getattr(request, "max_body", 0)
            raise ApiError(413, BODY_TOO_LARGE, f"request body larger than {limit} bytes")
        principal = await self._authenticate(request, address)
        wait = self._account_limit.take(principal.account.casefold())
        if wait is not None:
            raise retry_later(
                RATE_LIMITED, f"too many requests by account {principal.account!r}", wait
            )
        caller = Caller(
            MANAGEMENT_API, account=principal.account, token=principal.token, address=address
        )
        try:
            result = await self._run(request, command, principal, caller)
        except ApiError as error:
            await self._audit(caller, command, error.status, error.code)
            raise
        await self._audit(caller, command, 200, "ok")
        return 200, result, ()

    def _route(self, request: server.Request) -> Command | None:
        """The command a request names (None: the OpenAPI description)."""
        try:
            path = request.path.decode("ascii")
        except UnicodeDecodeError:
            path = ""
        method = request.method
        if path == OPENAPI_PATH:
            if method not in (b"GET", b"HEAD"):
                raise _wrong_method(method, "GET, HEAD")
            return None
        command = self._commands.get(path)
        if command is None:
            raise ApiError(404, UNKNOWN_ENDPOINT, f"no endpoint {path[:100]!r}; see {OPENAPI_PATH}")
        if method != b"POST":
            raise _wrong_method(method, "POST")
        return command

    async def _authenticate(self, request: server.Request, address: str) -> Principal:
        presented = parse_authorization(request.getHeader(b"authorization"))
        if presented is None:
            raise unauthorized(
                "authentication required: HTTP Basic (account name and an api token) "
                "or Bearer (an api token)"
            )
        outcome = await self._context.blocking.run(
            self._authenticator.authenticate, presented, address
        )
        if outcome.principal is not None:
            return outcome.principal
        log.info(
            "api: authentication refused from {address}: {reason}",
            address=address,
            reason=outcome.reason,
        )
        if outcome.locked_until is not None:
            seconds = (outcome.locked_until - self._context.clock()).total_seconds()
            raise retry_later(
                THROTTLED,
                f"too many failed authentications from {address}; try again later",
                seconds,
            )
        if outcome.delay > 0:
            await self._sleep(outcome.delay)
        raise unauthorized("invalid credentials")

    async def _run(
        self, request: server.Request, command: Command, principal: Principal, caller: Caller
    ) -> bytes:
        arguments = _json_arguments(request)
        context = self._context

        async def gate(gated: Command, args: Args) -> None:
            await context.blocking.run(check_access, context, principal, gated, args)

        d: Deferred[JsonObject] = self._registry.dispatch(
            context, caller, command.name, arguments, gate
        )
        try:
            result = await d
            return encode(result)
        except Exception:
            failure = Failure()  # type: ignore[no-untyped-call]
            raise from_admin_error(wire_error(failure, command.name, caller)) from None

    async def _audit(self, caller: Caller, command: Command, status: int, outcome: str) -> None:
        """Record the call (after its own change event, if any). A failure to
        record is logged; it cannot undo a change that already happened."""
        event = AuditEvent(
            actor=caller.describe(),
            channel=MANAGEMENT_API,
            action="api.call",
            target=f"command {command.name}",
            details=(
                ("address", caller.address or "unknown"),
                ("outcome", outcome),
                ("status", str(status)),
                ("token", caller.token or ""),
            ),
        )
        log.info(
            "api: {command} by {actor} from {address}: {status} {outcome}",
            command=command.name,
            actor=caller.describe(),
            address=caller.address,
            status=status,
            outcome=outcome,
        )
        try:
            await self._context.blocking.run(self._context.service_accounts.record_audit, event)
        except Exception:
            log.failure("api: cannot record the audit event of {command}", command=command.name)


def _json_arguments(request: server.Request) -> dict[str, object]:
    """The body as the command's arguments: a JSON object, or nothing at all."""
    content = request.content
    raw = content.read() if content is not None else b""
    if not raw.strip():
        return {}
    try:
        document: Any = json.loads(raw)
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError
        raise ApiError(400, BAD_REQUEST, "request body is not valid JSON") from None
    if not isinstance(document, dict):
        raise ApiError(400, BAD_REQUEST, "request body must be a JSON object of arguments")
    return document


def _wrong_method(method: bytes, allowed: str) -> ApiError:
    shown = method.decode("ascii", "replace")[:20]
    return ApiError(
        405, METHOD_NOT_ALLOWED, f"method {shown} not allowed here; use {allowed}",
        (("Allow", allowed),),
    )  # fmt: skip


def _address(request: server.Request) -> str:
    peer = request.getClientAddress()  # type: ignore[no-untyped-call]
    host = getattr(peer, "host", None)
    return host if isinstance(host, str) else "unknown"


def _as_answer(error: ApiError) -> Answer:
    return error.status, error.body(), error.headers


def _write(request: server.Request, answer: Answer) -> None:
    status, body, headers = answer
    request.setResponseCode(status)
    for name, value in (*_COMMON_HEADERS, *headers):
        request.setHeader(name, value)  # type: ignore[no-untyped-call]
    request.setHeader("Content-Length", str(len(body)))  # type: ignore[no-untyped-call]
    if request.method != b"HEAD":
        request.write(body)  # type: ignore[no-untyped-call]
    request.finish()  # type: ignore[no-untyped-call]


def make_site(api: ManagementApi, max_body_bytes: int) -> server.Site:
    site = server.Site(api, requestFactory=limited_request(max_body_bytes))  # type: ignore[no-untyped-call]
    site.displayTracebacks = False
    site.noisy = False
    return site
