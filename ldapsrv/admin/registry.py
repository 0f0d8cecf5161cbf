"""The command registry: command name -> handler plus a declared argument schema.

Every command states its arguments (type, required or not, secret or not,
extra checks) in one place, so the wire layer can reject a malformed call with
an ``invalid`` error naming the argument before any handler runs, and so
handlers read typed values instead of re-checking JSON. Commands from later
issues (service accounts, tokens, permissions, status) register here the same
way, each module with its own ``register(registry)`` function.

The same registry serves two channels: the control socket (root only, every
command) and the management API (``ldapsrv.api``), where each command is
offered only if it declares an ``Access`` rule naming the management permission
its caller needs. Both channels run a command through ``dispatch``; the API
passes a ``gate`` that checks the rule after the arguments are valid and
before the handler runs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, TypeAlias

from twisted.internet.defer import Deferred, fail

from ldapsrv.admin.context import AdminContext, Caller
from ldapsrv.admin.errors import INVALID, UNKNOWN_COMMAND, AdminError
from ldapsrv.directory.records import Permission

Json: TypeAlias = "bool | int | float | str | list[Json] | dict[str, Json] | None"
JsonObject: TypeAlias = "dict[str, Json]"

# A check receives a value that already has the declared type and raises
# ValueError whose message completes "argument 'NAME': ...". It must never put
# the value itself into the message (secrets go through the same checks).
Check: TypeAlias = Callable[[Any], None]

HandlerResult: TypeAlias = "Deferred[JsonObject] | Coroutine[Any, Any, JsonObject]"
Handler: TypeAlias = Callable[[AdminContext, Caller, "Args"], HandlerResult]


class ArgType(Enum):
    STRING = "a string"
    INTEGER = "an integer"
    BOOLEAN = "true or false"
    STRING_LIST = "a list of strings"

    def accepts(self, value: object) -> bool:
        if self is ArgType.STRING:
            return isinstance(value, str)
        if self is ArgType.INTEGER:
            return isinstance(value, int) and not isinstance(value, bool)
        if self is ArgType.BOOLEAN:
            return isinstance(value, bool)
        return isinstance(value, list) and all(isinstance(v, str) for v in value)


@dataclass(frozen=True, slots=True)
class Arg:
    """One declared argument. ``secret`` ones are never logged or echoed."""

    name: str
    type: ArgType
    required: bool = False
    secret: bool = False
    checks: tuple[Check, ...] = ()
    help: str = ""


def described(check: Check, **schema: object) -> Check:
    """Attach the JSON Schema keywords that say what ``check`` enforces, so the
    API's OpenAPI description states the same limits (``schema_hints``)."""
    check.json_schema = schema  # type: ignore[attr-defined]
    return check


def schema_hints(check: Check) -> dict[str, object]:
    hints: dict[str, object] = getattr(check, "json_schema", {})
    return hints


def int_range(low: int, high: int) -> Check:
    def check(value: int) -> None:
        if not low <= value <= high:
            raise ValueError(f"must be from {low} to {high}")

    return described(check, minimum=low, maximum=high)


def max_length(limit: int) -> Check:
    def check(value: str) -> None:
        if len(value) > limit:
            raise ValueError(f"must be at most {limit} characters")

    return described(check, maxLength=limit)


def _non_empty(value: str) -> None:
    if not value:
        raise ValueError("must not be empty")


non_empty: Check = described(_non_empty, minLength=1)


def _type_name(value: object) -> str:
    """A JSON type name for messages: says what arrived without echoing it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


def _text_problem(value: object) -> str | None:
    """Why a string value (or one in a list) cannot be stored, or None. JSON can
    carry NUL characters and lone surrogates; no database column takes them."""
    texts = value if isinstance(value, list) else [value]
    for text in texts:
        if not isinstance(text, str):
            continue
        if "\x00" in text:
            return "must not contain NUL characters"
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return "is not valid Unicode (lone surrogate)"
    return None


class Args:
    """Validated arguments of one call, read through typed getters.

    Getters for required arguments cannot fail at run time (validation made
    sure they exist); the ``optional_*`` getters return None when absent.
    """

    def __init__(self, values: Mapping[str, object], secrets: frozenset[str] = frozenset()):
        self._values = dict(values)
        self._secrets = secrets

    def __contains__(self, name: object) -> bool:
        return name in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def _get(self, name: str, kind: type) -> Any:
        value = self._values[name]
        assert isinstance(value, kind), f"{name} was validated as {kind}"
        return value

    def string(self, name: str) -> str:
        value: str = self._get(name, str)
        return value

    def optional_string(self, name: str) -> str | None:
        return self.string(name) if name in self._values else None

    def integer(self, name: str) -> int:
        value: int = self._get(name, int)
        return value

    def optional_integer(self, name: str) -> int | None:
        return self.integer(name) if name in self._values else None

    def boolean(self, name: str, default: bool = False) -> bool:
        if name not in self._values:
            return default
        value: bool = self._get(name, bool)
        return value

    def string_list(self, name: str) -> list[str]:
        if name not in self._values:
            return []
        value: list[str] = list(self._get(name, list))
        return value

    def redacted(self) -> dict[str, object]:
        """The values with secrets masked: safe for a log line or an audit record."""
        return {k: ("***" if k in self._secrets else v) for k, v in self._values.items()}

    def __repr__(self) -> str:
        return f"Args({self.redacted()!r})"


Owner: TypeAlias = Callable[[AdminContext, "Args"], "str | None"]
"""Blocking: the account that what a call acts on belongs to (None: nobody's, or
not found), for self-service rules such as rotating one's own token."""


@dataclass(frozen=True, slots=True)
class Access:
    """Who may run a command on the management API.

    ``permission``: the management permission the caller needs (None: any
    authenticated caller). ``own``: a narrower permission that suffices when
    ``owner`` says the call acts on something of the caller's own account.
    A command without an Access rule is served on the control socket only.
    """

    permission: Permission | None
    own: Permission | None = None
    owner: Owner | None = None

    def __post_init__(self) -> None:
        if (self.own is None) != (self.owner is None):
            raise ValueError("a self-service rule needs both 'own' and 'owner'")


Gate: TypeAlias = Callable[["Command", "Args"], Awaitable[None]]
"""Runs after validation and before the handler; refuses by raising AdminError."""


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    handler: Handler
    args: tuple[Arg, ...]
    summary: str
    access: Access | None = None

    def validate(self, raw: Mapping[str, object]) -> Args:
        """Check ``raw`` against the schema; AdminError("invalid") names the argument."""
        declared = {a.name: a for a in self.args}
        unknown = sorted(k for k in raw if k not in declared)
        if unknown:
            allowed = ", ".join(declared) or "none"
            raise AdminError(
                INVALID,
                f"unknown argument {unknown[0]!r} for {self.name}; allowed: {allowed}",
            )
        values: dict[str, object] = {}
        for arg in self.args:
            value = raw.get(arg.name)
            if value is None:
                if arg.required:
                    raise AdminError(INVALID, f"argument {arg.name!r} is required")
                continue
            if not arg.type.accepts(value):
                raise AdminError(
                    INVALID,
                    f"argument {arg.name!r}: expected {arg.type.value}, got {_type_name(value)}",
                )
            problem = _text_problem(value)
            if problem is not None:
                raise AdminError(INVALID, f"argument {arg.name!r}: {problem}")
            for check in arg.checks:
                try:
                    check(value)
                except ValueError as exc:
                    raise AdminError(INVALID, f"argument {arg.name!r}: {exc}") from None
            values[arg.name] = value
        return Args(values, frozenset(a.name for a in self.args if a.secret))


class CommandRegistry:
    """Name -> Command. One per server; built by ``ldapsrv.admin.commands``."""

    def __init__(self) -> None:
        self._commands: dict[str, Command] = {}

    def register(
        self,
        name: str,
        handler: Handler,
        args: tuple[Arg, ...] = (),
        summary: str = "",
        *,
        access: Access | None = None,
    ) -> None:
        """Add a command; ``access`` offers it on the management API too."""
        if name in self._commands:
            raise ValueError(f"command {name!r} is already registered")
        names = [a.name for a in args]
        if len(set(names)) != len(names):
            raise ValueError(f"command {name!r} declares an argument twice")
        self._commands[name] = Command(name, handler, args, summary, access)

    def command(
        self, name: str, *args: Arg, summary: str = "", access: Access | None = None
    ) -> Callable[[Handler], Handler]:
        """Decorator form of ``register``."""

        def decorate(handler: Handler) -> Handler:
            self.register(name, handler, args, summary, access=access)
            return handler

        return decorate

    def get(self, name: str) -> Command | None:
        return self._commands.get(name)

    def names(self) -> list[str]:
        return sorted(self._commands)

    def commands(self) -> list[Command]:
        return [self._commands[name] for name in self.names()]

    def dispatch(
        self,
        context: AdminContext,
        caller: Caller,
        name: str,
        raw_args: Mapping[str, object],
        gate: Gate | None = None,
    ) -> Deferred[JsonObject]:
        """Validate and run one command: the one path every channel takes.

        ``gate`` (the management API's authorization) runs after validation and
        before the handler. Failures arrive as the Deferred's errback
        (AdminError for expected ones); this method never raises."""
        command = self._commands.get(name)
        if command is None:
            return fail(AdminError(UNKNOWN_COMMAND, f"unknown command {name[:100]!r}"))
        try:
            args = command.validate(raw_args)
            if gate is None:
                result = command.handler(context, caller, args)
                if isinstance(result, Deferred):
                    return result
                return Deferred.fromCoroutine(result)
        except Exception:
            return fail()  # a Failure of the current exception keeps its traceback

        async def gated() -> JsonObject:
            await gate(command, args)
            return await command.handler(context, caller, args)

        return Deferred.fromCoroutine(gated())
