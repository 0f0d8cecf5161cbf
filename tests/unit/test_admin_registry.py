"""The command registry: argument schemas reject bad calls before a handler runs."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.defer import Deferred, succeed
from twisted.python.failure import Failure

from ldapsrv.admin.context import AdminContext, Caller
from ldapsrv.admin.errors import AdminError
from ldapsrv.admin.registry import (
    Arg,
    Args,
    ArgType,
    CommandRegistry,
    JsonObject,
    int_range,
    max_length,
)
from ldapsrv.admin.testing import in_memory_context
from ldapsrv.config import load_config

CALLER = Caller("control-socket", uid=1000, gid=1000, pid=42)


@pytest.fixture
def context() -> AdminContext:
    config = load_config(None, {"security.bcrypt_cost": 4}, environ={})
    return in_memory_context(config)


def outcome(d: Deferred[Any]) -> Any:
    """The value a fired Deferred holds (a Failure for an error); fails if it has not fired."""
    box: list[Any] = []
    d.addBoth(box.append)
    assert box, "the Deferred has not fired"
    return box[0]


def error_of(d: Deferred[Any]) -> AdminError:
    result = outcome(d)
    assert isinstance(result, Failure), f"expected a failure, got {result!r}"
    assert isinstance(result.value, AdminError), result.getTraceback()
    return result.value


def echo_registry(*args: Arg) -> tuple[CommandRegistry, list[Args]]:
    seen: list[Args] = []
    registry = CommandRegistry()

    async def echo(ctx: AdminContext, caller: Caller, a: Args) -> JsonObject:
        seen.append(a)
        return {"ok": True}

    registry.register("test.echo", echo, args)
    return registry, seen


def test_unknown_command_is_reported_with_its_name(context: AdminContext) -> None:
    registry, _ = echo_registry()
    error = error_of(registry.dispatch(context, CALLER, "no.such", {}))
    assert (error.kind, error.message) == ("unknown_command", "unknown command 'no.such'")


def test_missing_required_argument_is_invalid_and_named(context: AdminContext) -> None:
    registry, seen = echo_registry(Arg("name", ArgType.STRING, required=True))
    error = error_of(registry.dispatch(context, CALLER, "test.echo", {}))
    assert error.kind == "invalid"
    assert "'name'" in error.message and "required" in error.message
    assert seen == []


def test_wrong_type_names_the_argument_and_the_expected_type(context: AdminContext) -> None:
    registry, _ = echo_registry(Arg("uid_number", ArgType.INTEGER))
    error = error_of(registry.dispatch(context, CALLER, "test.echo", {"uid_number": "10"}))
    assert error.kind == "invalid"
    assert error.message == "argument 'uid_number': expected an integer, got a string"


def test_a_boolean_is_not_accepted_as_an_integer(context: AdminContext) -> None:
    registry, _ = echo_registry(Arg("uid_number", ArgType.INTEGER))
    error = error_of(registry.dispatch(context, CALLER, "test.echo", {"uid_number": True}))
    assert error.kind == "invalid"


def test_unknown_argument_is_invalid_and_lists_the_allowed_ones(context: AdminContext) -> None:
    registry, _ = echo_registry(Arg("name", ArgType.STRING), Arg("mail", ArgType.STRING))
    error = error_of(registry.dispatch(context, CALLER, "test.echo", {"nmae": "x"}))
    assert error.kind == "invalid"
    assert "'nmae'" in error.message and "name, mail" in error.message


def test_null_optional_argument_counts_as_absent(context: AdminContext) -> None:
    registry, seen = echo_registry(Arg("mail", ArgType.STRING))
    outcome(registry.dispatch(context, CALLER, "test.echo", {"mail": None}))
    assert "mail" not in seen[0]
    assert seen[0].optional_string("mail") is None


def test_typed_getters_return_validated_values(context: AdminContext) -> None:
    registry, seen = echo_registry(
        Arg("name", ArgType.STRING, required=True),
        Arg("n", ArgType.INTEGER),
        Arg("flag", ArgType.BOOLEAN),
        Arg("tags", ArgType.STRING_LIST),
    )
    raw = {"name": "alice", "n": 7, "flag": True, "tags": ["a", "b"]}
    assert outcome(registry.dispatch(context, CALLER, "test.echo", raw)) == {"ok": True}
    args = seen[0]
    assert args.string("name") == "alice"
    assert args.integer("n") == 7
    assert args.boolean("flag") is True
    assert args.string_list("tags") == ["a", "b"]


def test_a_failed_check_names_the_argument(context: AdminContext) -> None:
    registry, _ = echo_registry(Arg("uid_number", ArgType.INTEGER, checks=(int_range(1, 9),)))
    error = error_of(registry.dispatch(context, CALLER, "test.echo", {"uid_number": 0}))
    assert error.message == "argument 'uid_number': must be from 1 to 9"


def test_a_secret_argument_value_never_appears_in_errors_or_redacted_args(
    context: AdminContext,
) -> None:
    secret = "hunter2-very-secret"
    registry, _ = echo_registry(
        Arg("password", ArgType.STRING, secret=True, checks=(max_length(5),))
    )
    error = error_of(registry.dispatch(context, CALLER, "test.echo", {"password": secret}))
    assert secret not in error.message
    registry2, seen2 = echo_registry(Arg("password", ArgType.STRING, secret=True))
    outcome(registry2.dispatch(context, CALLER, "test.echo", {"password": secret}))
    assert seen2[0].redacted() == {"password": "***"}
    assert secret not in repr(seen2[0])


def test_registering_a_command_twice_is_refused() -> None:
    registry, _ = echo_registry()

    async def other(ctx: AdminContext, caller: Caller, a: Args) -> JsonObject:
        return {}

    with pytest.raises(ValueError, match="already registered"):
        registry.register("test.echo", other)


def test_declaring_an_argument_twice_is_refused() -> None:
    async def handler(ctx: AdminContext, caller: Caller, a: Args) -> JsonObject:
        return {}

    with pytest.raises(ValueError, match="twice"):
        CommandRegistry().register(
            "x.y", handler, (Arg("a", ArgType.STRING), Arg("a", ArgType.INTEGER))
        )


def test_handlers_may_return_a_deferred_instead_of_a_coroutine(context: AdminContext) -> None:
    registry = CommandRegistry()

    def plain(ctx: AdminContext, caller: Caller, a: Args) -> Deferred[JsonObject]:
        return succeed({"via": "deferred"})

    registry.register("test.plain", plain)
    assert outcome(registry.dispatch(context, CALLER, "test.plain", {})) == {"via": "deferred"}


def test_a_handler_that_raises_synchronously_fails_the_deferred(context: AdminContext) -> None:
    registry = CommandRegistry()

    def broken(ctx: AdminContext, caller: Caller, a: Args) -> Deferred[JsonObject]:
        raise RuntimeError("boom")

    registry.register("test.broken", broken)
    result = outcome(registry.dispatch(context, CALLER, "test.broken", {}))
    assert isinstance(result, Failure) and isinstance(result.value, RuntimeError)
    assert "broken" in result.getTraceback()  # the traceback survives for the log


def test_handlers_receive_the_caller(context: AdminContext) -> None:
    registry = CommandRegistry()

    async def whoami(ctx: AdminContext, caller: Caller, a: Args) -> JsonObject:
        return {"uid": caller.uid, "pid": caller.pid, "channel": caller.channel}

    registry.register("test.whoami", whoami)
    result = outcome(registry.dispatch(context, CALLER, "test.whoami", {}))
    assert result == {"uid": 1000, "pid": 42, "channel": "control-socket"}


def test_the_server_registry_knows_every_directory_command() -> None:
    from ldapsrv.admin.commands import build_registry

    assert set(build_registry().names()) >= {
        "server.ping",
        "user.add",
        "user.list",
        "user.show",
        "user.delete",
        "user.set_password",
        "group.add",
        "group.list",
        "group.show",
        "group.delete",
        "group.add_member",
        "group.remove_member",
    }
