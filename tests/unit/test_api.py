"""The management API's parts without sockets: Authorization parsing, the permission
gate, rate limits, error mapping and the OpenAPI description built from the registry.
(tests/e2e/test_api.py drives the whole thing over real HTTPS.)"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from ldapsrv.admin.commands import build_registry
from ldapsrv.admin.context import MANAGEMENT_API, AdminContext, Caller
from ldapsrv.admin.errors import AdminError
from ldapsrv.admin.ports import NewUser
from ldapsrv.admin.registry import (
    Access,
    Arg,
    Args,
    ArgType,
    CommandRegistry,
    JsonObject,
    int_range,
    max_length,
    non_empty,
)
from ldapsrv.admin.testing import SyncBlocking, in_memory_context
from ldapsrv.api.access import PermissionDenied, check_access
from ldapsrv.api.auth import ApiAuthenticator, Presented, Principal, parse_authorization
from ldapsrv.api.errors import ERROR_CODES, ApiError, from_admin_error, retry_later, unauthorized
from ldapsrv.api.limits import RateLimiter
from ldapsrv.api.openapi import api_commands, build_openapi
from ldapsrv.auth.ports import NewToken
from ldapsrv.auth.tokens import TokenVerifier, issue_token
from ldapsrv.config import load_config
from ldapsrv.directory.records import AccountKind, Credentials, Permission, TokenIntent

CALLER = Caller(MANAGEMENT_API, account="ci", token="ci-api", address="127.0.0.1")


def basic(text: bytes) -> bytes:
    return b"Basic " + base64.b64encode(text)


# ------------------------------------------------------------ Authorization


def test_basic_gives_the_name_and_the_secret_split_at_the_first_colon() -> None:
    assert parse_authorization(basic(b"ci:ldsrv_abc:def")) == Presented("ci", b"ldsrv_abc:def")


def test_bearer_gives_the_secret_alone() -> None:
    assert parse_authorization(b"Bearer ldsrv_x") == Presented(None, b"ldsrv_x")
    assert parse_authorization(b"bearer   ldsrv_x ") == Presented(None, b"ldsrv_x")


@pytest.mark.parametrize(
    "header",
    [
        None,
        b"",
        b"Basic",
        b"Basic !!!",
        basic(b"no-colon"),
        basic(b":secret-without-name"),
        basic(b"\xff\xfe:secret"),
        b"Bearer",
        b"Digest username=x",
        b"Bearer " + b"x" * 2000,
    ],
)
def test_unusable_headers_give_no_credentials(header: bytes | None) -> None:
    assert parse_authorization(header) is None


# ------------------------------------------------------------------ limits


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_allows_a_minutes_worth_then_says_how_long_to_wait() -> None:
    clock = Clock()
    limiter = RateLimiter(3, clock)
    assert [limiter.take("a") for _ in range(3)] == [None, None, None]
    wait = limiter.take("a")
    assert wait == pytest.approx(20.0)  # 3 a minute: one every 20 s
    assert limiter.take("b") is None  # keys are independent
    clock.now += 20.0
    assert limiter.take("a") is None
    assert limiter.take("a") is not None


def test_forgetting_old_buckets_keeps_memory_bounded() -> None:
    limiter = RateLimiter(1, Clock(), max_keys=2)
    for key in ("a", "b", "c"):
        assert limiter.take(key) is None
    assert limiter.take("a") is None  # forgotten, so full again
    assert limiter.take("c") is not None


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    ("kind", "status"),
    [
        ("not_found", 404),
        ("already_exists", 409),
        ("invalid", 400),
        ("forbidden", 403),
        ("permission_denied", 403),
        ("unavailable", 503),
        ("internal", 500),
    ],
)
def test_command_error_kinds_keep_their_code_and_get_a_status(kind: str, status: int) -> None:
    error = from_admin_error(AdminError(kind, "why"))
    assert (error.status, error.code, error.message) == (status, kind, "why")
    assert error.code in ERROR_CODES
    assert error.body() == b'{"error":{"code":"%s","message":"why"}}' % kind.encode()


def test_401_carries_a_basic_challenge_and_429_a_whole_retry_after() -> None:
    assert ("WWW-Authenticate", 'Basic realm="ldapsrv", charset="UTF-8"') in unauthorized(
        "no"
    ).headers
    assert retry_later("rate_limited", "slow down", 0.2).headers == (("Retry-After", "1"),)
    assert retry_later("rate_limited", "slow down", 20.01).headers == (("Retry-After", "21"),)


# ---------------------------------------------------------------- the gate


@pytest.fixture
def context() -> AdminContext:
    config = load_config(None, {"security.bcrypt_cost": 4}, environ={})
    ctx = in_memory_context(config, blocking=SyncBlocking())
    store: Any = ctx.directory
    store.create_user(NewUser("alice"))
    store.create_service_account("ci")
    store.create_group("ops")
    return ctx


def command(name: str) -> Any:
    found = build_registry().get(name)
    assert found is not None
    return found


def test_the_gate_wants_the_commands_permission(context: AdminContext) -> None:
    ci = Principal("ci", "ci-api")
    with pytest.raises(PermissionDenied, match="manage_groups"):
        check_access(context, ci, command("group.list"), Args({}))
    assert context.permissions is not None
    context.permissions.grant(Permission.MANAGE_GROUPS, group="ops")
    context.directory.add_member("ops", "ci")
    check_access(context, ci, command("group.list"), Args({}))  # through the group
    with pytest.raises(PermissionDenied, match="manage_accounts"):
        check_access(context, ci, command("user.list"), Args({}))


def test_ping_needs_no_permission(context: AdminContext) -> None:
    check_access(context, Principal("ci", "ci-api"), command("server.ping"), Args({}))


def test_socket_only_commands_are_refused(context: AdminContext) -> None:
    with pytest.raises(PermissionDenied, match="control socket only"):
        check_access(context, Principal("ci", "t"), command("health.credentials"), Args({}))


def test_every_command_but_the_health_check_is_offered_on_the_api() -> None:
    registry = build_registry()
    offered = {c.name for c in api_commands(registry).values()}
    assert offered == set(registry.names()) - {"health.credentials"}


# ------------------------------------------------------ dispatch with a gate


def outcome(d: Deferred[Any]) -> Any:
    box: list[Any] = []
    d.addBoth(box.append)
    assert box
    return box[0]


def test_the_gate_runs_after_validation_and_a_refusal_stops_the_handler(
    context: AdminContext,
) -> None:
    ran: list[str] = []
    registry = CommandRegistry()

    async def handler(ctx: AdminContext, caller: Caller, args: Args) -> JsonObject:
        ran.append(args.string("name"))
        return {"ok": True}

    registry.register(
        "test.run", handler, (Arg("name", ArgType.STRING, required=True),), access=Access(None)
    )
    gated: list[str] = []

    async def allow(cmd: Any, args: Args) -> None:
        gated.append(args.string("name"))

    async def refuse(cmd: Any, args: Args) -> None:
        raise PermissionDenied("no")

    failure = outcome(registry.dispatch(context, CALLER, "test.run", {}, allow))
    assert isinstance(failure, Failure) and failure.value.kind == "invalid"
    assert gated == []  # invalid arguments never reach the gate
    failure = outcome(registry.dispatch(context, CALLER, "test.run", {"name": "x"}, refuse))
    assert isinstance(failure, Failure) and failure.value.kind == "permission_denied"
    assert ran == []
    assert outcome(registry.dispatch(context, CALLER, "test.run", {"name": "y"}, allow)) == {
        "ok": True
    }
    assert (gated, ran) == (["y"], ["y"])


@pytest.mark.parametrize(
    ("value", "problem"),
    [("a\x00b", "must not contain NUL characters"), ("\ud800", "lone surrogate")],
)
def test_strings_a_database_cannot_store_are_invalid(
    context: AdminContext, value: str, problem: str
) -> None:
    failure = outcome(build_registry().dispatch(context, CALLER, "user.add", {"name": value}))
    assert isinstance(failure, Failure)
    assert failure.value.kind == "invalid" and problem in failure.value.message


def test_api_caller_describes_itself_by_account_and_token_identifier() -> None:
    assert CALLER.describe() == "api account=ci token=ci-api"


# ----------------------------------------------------------------- OpenAPI


def test_openapi_is_generated_from_the_argument_declarations() -> None:
    registry = CommandRegistry()

    async def handler(ctx: AdminContext, caller: Caller, args: Args) -> JsonObject:
        return {}

    registry.register(
        "thing.make",
        handler,
        (
            Arg("name", ArgType.STRING, required=True, checks=(non_empty, max_length(9))),
            Arg("size", ArgType.INTEGER, checks=(int_range(1, 5),)),
            Arg("tags", ArgType.STRING_LIST),
            Arg("secret", ArgType.STRING, secret=True),
        ),
        "make a thing",
        access=Access(Permission.MANAGE_GROUPS),
    )
    registry.register("thing.hidden", handler, (), "socket only")
    spec = build_openapi(registry)
    assert list(spec["paths"]) == ["/api/v1/thing.make"]
    operation = spec["paths"]["/api/v1/thing.make"]["post"]
    assert operation["operationId"] == "thing.make"
    assert "manage_groups" in operation["description"]
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    assert schema == {
        "type": "object",
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 9},
            "size": {"type": "integer", "minimum": 1, "maximum": 5},
            "tags": {"type": "array", "items": {"type": "string"}},
            "secret": {"type": "string", "writeOnly": True},
        },
        "additionalProperties": False,
        "required": ["name"],
    }
    assert {"200", "400", "401", "403", "413", "429"} <= set(operation["responses"])


def test_the_api_error_type_is_an_exception_with_its_status() -> None:
    error = ApiError(413, "body_too_large", "too big")
    assert isinstance(error, Exception) and error.status == 413


# ------------------------------------------------------------ authenticator


class Accounts:
    """get_credentials over a dict: name -> disabled."""

    def __init__(self, **disabled: bool) -> None:
        self.disabled = disabled

    def get_credentials(self, name: str) -> Credentials | None:
        if name not in self.disabled:
            return None
        return Credentials(1, name, None, self.disabled[name], "service_account")


NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def tokens() -> Any:
    from ldapsrv.admin.testing import InMemoryDirectory

    store = InMemoryDirectory(clock=lambda: NOW)
    store.create_service_account("ci")
    store.create_service_account("health", kind=AccountKind.INTERNAL_SERVICE_ACCOUNT)
    return store


def issue(tokens: Any, identifier: str, account: str, intent: TokenIntent, **kw: Any) -> str:
    issued = issue_token(4, None)
    tokens.create_token(
        NewToken(
            identifier=identifier,
            account_name=account,
            intent=intent,
            lookup_id=issued.lookup_id,
            secret_hash=issued.secret_hash,
            encrypted_value=None,
            expiring=kw.get("expires_at") is not None,
            expires_at=kw.get("expires_at"),
            lifetime_seconds=None,
        )
    )
    return issued.value


def authenticator(tokens: Any, **disabled: bool) -> ApiAuthenticator:
    accounts = Accounts(**(disabled or {"ci": False, "health": False}))
    return ApiAuthenticator(tokens, accounts, TokenVerifier(4), lambda: NOW)


def test_an_api_token_authenticates_as_its_account_by_basic_or_bearer(tokens: Any) -> None:
    value = issue(tokens, "ci-api", "ci", TokenIntent.API)
    auth = authenticator(tokens)
    for presented in (Presented("CI", value.encode()), Presented(None, value.encode())):
        outcome = auth.authenticate(presented, "127.0.0.1")
        assert outcome.principal == Principal("ci", "ci-api"), outcome.reason


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("app_password", "intent app_password"),
        ("expired", "expired"),
        ("other_name", "belongs to account ci"),
        ("internal", "internal"),
        ("disabled", "disabled"),
        ("password", "not a token"),
        ("unknown", "unknown token"),
        ("wrong_secret", "wrong secret"),
    ],
)
def test_everything_but_a_live_api_token_is_refused(tokens: Any, case: str, reason: str) -> None:
    api = issue(tokens, "ci-api", "ci", TokenIntent.API)
    name: str | None = "ci"
    disabled = {"ci": False, "health": False}
    if case == "app_password":
        secret = issue(tokens, "ci-app", "ci", TokenIntent.APP_PASSWORD)
    elif case == "expired":
        secret = issue(tokens, "ci-old", "ci", TokenIntent.API, expires_at=NOW)
    elif case == "other_name":
        secret, name = api, "alice"
    elif case == "internal":
        secret, name = issue(tokens, "health-api", "health", TokenIntent.API), None
    elif case == "disabled":
        secret, disabled = api, {"ci": True}
    elif case == "password":
        secret = "correct horse battery staple"
    elif case == "unknown":
        secret = "ldsrv_" + "A" * 12 + "_" + "B" * 43
    else:
        secret = api[:-1] + ("A" if api[-1] != "A" else "B")
    outcome = authenticator(tokens, **disabled).authenticate(
        Presented(name, secret.encode()), "127.0.0.1"
    )
    assert outcome.principal is None
    assert reason in outcome.reason
