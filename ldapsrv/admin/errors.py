"""Error kinds of the control-socket protocol, and the one table that maps
domain errors to them.

The same ``AdminError`` is raised by handlers on the server and by the client
when it reads an error response, so a kind means the same thing on both ends.
This module imports no Twisted: the blocking client uses it.
"""

from __future__ import annotations

from typing import Final

from ldapsrv.auth.passwords import PasswordRejected
from ldapsrv.errors import (
    AlreadyExists,
    DomainError,
    InvalidValue,
    NotFound,
    RangeExhausted,
    SchemaOutdated,
    StoreUnavailable,
)

NOT_FOUND: Final = "not_found"
ALREADY_EXISTS: Final = "already_exists"
INVALID: Final = "invalid"
# The request is well formed but the server will not do it, whoever asks:
# e.g. deleting or viewing the token of an internal service account.
FORBIDDEN: Final = "forbidden"
UNAVAILABLE: Final = "unavailable"
RANGE_EXHAUSTED: Final = "range_exhausted"
UNKNOWN_COMMAND: Final = "unknown_command"
BAD_REQUEST: Final = "bad_request"
INTERNAL: Final = "internal"

ERROR_KINDS: Final = frozenset(
    {
        NOT_FOUND,
        ALREADY_EXISTS,
        INVALID,
        FORBIDDEN,
        UNAVAILABLE,
        RANGE_EXHAUSTED,
        UNKNOWN_COMMAND,
        BAD_REQUEST,
        INTERNAL,
    }
)

# The message an unexpected exception is answered with: the details (and the
# traceback) go to the server log only, never to the client.
INTERNAL_MESSAGE: Final = "internal error in the server; its log has the details"


class AdminError(Exception):
    """A failed admin command: a wire ``kind`` and a message meant for the admin."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message

    def __repr__(self) -> str:
        return f"AdminError({self.kind!r}, {self.message!r})"


# Most specific first: the first matching class wins.
_KINDS: Final[tuple[tuple[type[Exception], str], ...]] = (
    (NotFound, NOT_FOUND),
    (AlreadyExists, ALREADY_EXISTS),
    (InvalidValue, INVALID),
    (RangeExhausted, RANGE_EXHAUSTED),
    (StoreUnavailable, UNAVAILABLE),
    (SchemaOutdated, UNAVAILABLE),
    (PasswordRejected, INVALID),
    # A domain error nobody has given a kind yet is still written for an
    # admin to read; "invalid" is the closest general meaning ("the server
    # refused what you asked"). Give new domain errors their own kind here.
    (DomainError, INVALID),
)


def classify(exc: BaseException) -> AdminError | None:
    """The wire error for ``exc``, or None when it is unexpected (a bug).

    Callers answer None with kind ``internal`` and ``INTERNAL_MESSAGE`` and
    log the traceback; this function never logs.
    """
    if isinstance(exc, AdminError):
        return exc
    for cls, kind in _KINDS:
        if isinstance(exc, cls):
            return AdminError(kind, str(exc) or cls.__name__)
    return None
