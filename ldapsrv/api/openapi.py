"""The OpenAPI description of the management API, generated from the registry.

One operation per command that declares an ``Access`` rule: ``POST
/api/v1/<command>`` with the command's arguments as a JSON object. Argument
types, required ones and the limits their checks enforce (``schema_hints``)
come from the same ``Arg`` declarations that validate a call, so the
description cannot drift from what the server accepts.
"""

from __future__ import annotations

from typing import Any, Final

from ldapsrv import __version__
from ldapsrv.admin.registry import Arg, ArgType, Command, CommandRegistry, schema_hints
from ldapsrv.api.errors import ERROR_CODES

PREFIX: Final = "/api/v1/"
OPENAPI_PATH: Final = "/api/v1/openapi.json"

_TYPES: Final[dict[ArgType, dict[str, Any]]] = {
    ArgType.STRING: {"type": "string"},
    ArgType.INTEGER: {"type": "integer"},
    ArgType.BOOLEAN: {"type": "boolean"},
    ArgType.STRING_LIST: {"type": "array", "items": {"type": "string"}},
}

# Statuses any operation may answer, and when.
_RESPONSES: Final[dict[str, str]] = {
    "400": "invalid JSON or arguments (the message names the argument)",
    "401": "missing or refused credentials (an api token is needed)",
    "403": "the caller lacks the permission, or nobody may do this",
    "404": "what the call names does not exist",
    "409": "already exists, or a number range is exhausted",
    "413": "request body larger than api.max_body_bytes",
    "429": "rate limit or failed-authentication lock-out; see Retry-After",
    "503": "the server cannot do it now (e.g. the database is unreachable)",
}


def endpoint(command: Command) -> str:
    return PREFIX + command.name


def _argument_schema(arg: Arg) -> dict[str, Any]:
    schema = dict(_TYPES[arg.type])
    for check in arg.checks:
        schema.update(schema_hints(check))
    if arg.help:
        schema["description"] = arg.help
    if arg.secret:
        schema["writeOnly"] = True
    return schema


def _request_schema(command: Command) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {a.name: _argument_schema(a) for a in command.args},
        "additionalProperties": False,
    }
    required = [a.name for a in command.args if a.required]
    if required:
        schema["required"] = required
    return schema


def _describe_access(command: Command) -> str:
    access = command.access
    assert access is not None
    if access.permission is None:
        text = "Any authenticated account may call this."
    else:
        text = f"Needs the management permission `{access.permission.value}`."
    if access.own is not None:
        text += f" `{access.own.value}` suffices for the caller's own tokens."
    return text


def _operation(command: Command) -> dict[str, Any]:
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    responses: dict[str, Any] = {
        "200": {
            "description": "the command's result",
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    }
    for status, why in _RESPONSES.items():
        responses[status] = {"description": why, "content": error}
    operation: dict[str, Any] = {
        "operationId": command.name,
        "summary": command.summary,
        "description": _describe_access(command),
        "tags": [command.name.partition(".")[0]],
        "requestBody": {
            "required": False,
            "content": {"application/json": {"schema": _request_schema(command)}},
        },
        "responses": responses,
    }
    return operation


def api_commands(registry: CommandRegistry) -> dict[str, Command]:
    """Endpoint path -> command, for every command offered on the API."""
    return {endpoint(c): c for c in registry.commands() if c.access is not None}


def build_openapi(registry: CommandRegistry) -> dict[str, Any]:
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "ldapsrv management API",
            "version": __version__,
            "description": (
                "The control socket's commands as JSON over HTTPS. Authenticate with an "
                "`api` token: HTTP Basic (account name and token) or Bearer (the token). "
                'Errors are {"error": {"code", "message"}} with a stable code.'
            ),
        },
        "paths": {
            path: {"post": _operation(command)} for path, command in api_commands(registry).items()
        },
        "security": [{"basic": []}, {"bearer": []}],
        "components": {
            "securitySchemes": {
                "basic": {"type": "http", "scheme": "basic"},
                "bearer": {"type": "http", "scheme": "bearer"},
            },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {
                            "type": "object",
                            "required": ["code", "message"],
                            "properties": {
                                "code": {"type": "string", "enum": sorted(ERROR_CODES)},
                                "message": {"type": "string"},
                            },
                        }
                    },
                }
            },
        },
    }
