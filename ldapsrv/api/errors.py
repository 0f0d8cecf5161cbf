"""Errors of the management API: a stable ``code``, an HTTP status, a message.

Every refusal is answered with ``{"error": {"code": ..., "message": ...}}``.
Command failures keep the control socket's error kinds as their codes (one
table, ``ldapsrv.admin.errors``); the HTTP layer adds its own codes for what
happens before a command runs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Final

from ldapsrv.admin import errors as kinds

UNAUTHORIZED: Final = "unauthorized"
PERMISSION_DENIED: Final = "permission_denied"
UNKNOWN_ENDPOINT: Final = "unknown_endpoint"
METHOD_NOT_ALLOWED: Final = "method_not_allowed"
BODY_TOO_LARGE: Final = "body_too_large"
RATE_LIMITED: Final = "rate_limited"
THROTTLED: Final = "throttled"

_STATUS_OF_KIND: Final[dict[str, int]] = {
    kinds.NOT_FOUND: 404,
    kinds.ALREADY_EXISTS: 409,
    kinds.INVALID: 400,
    kinds.FORBIDDEN: 403,
    kinds.UNAVAILABLE: 503,
    kinds.RANGE_EXHAUSTED: 409,
    kinds.UNKNOWN_COMMAND: 404,
    kinds.BAD_REQUEST: 400,
    kinds.INTERNAL: 500,
    PERMISSION_DENIED: 403,
}

ERROR_CODES: Final = frozenset(
    {
        *_STATUS_OF_KIND,
        UNAUTHORIZED,
        UNKNOWN_ENDPOINT,
        METHOD_NOT_ALLOWED,
        BODY_TOO_LARGE,
        RATE_LIMITED,
        THROTTLED,
    }
)
"""Every code a client may see (the OpenAPI description lists them)."""

REALM: Final = 'Basic realm="ldapsrv", charset="UTF-8"'


@dataclass(eq=False)  # not frozen: raising sets __traceback__ and __cause__
class ApiError(Exception):
    """A refusal with its HTTP status; ``headers`` go out with it (Retry-After...)."""

    status: int
    code: str
    message: str
    headers: tuple[tuple[str, str], ...] = field(default=())

    def body(self) -> bytes:
        return encode({"error": {"code": self.code, "message": self.message}})


def from_admin_error(error: kinds.AdminError) -> ApiError:
    """The HTTP answer for a failed command (its kind is the stable code)."""
    return ApiError(_STATUS_OF_KIND.get(error.kind, 500), error.kind, error.message)


def unauthorized(message: str) -> ApiError:
    return ApiError(401, UNAUTHORIZED, message, (("WWW-Authenticate", REALM),))


def retry_later(code: str, message: str, seconds: float) -> ApiError:
    wait = max(1, int(seconds + 0.999))  # whole seconds, rounded up, at least 1
    return ApiError(429, code, message, (("Retry-After", str(wait)),))


def encode(document: object) -> bytes:
    """JSON as the API sends it: ASCII-only, no NaN, one line."""
    text = json.dumps(document, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    return text.encode("ascii")
