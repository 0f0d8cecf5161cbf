"""LDAP result codes (RFC 4511 Appendix A) and the one table that maps domain
errors to them. Nothing else in the server chooses a code for a domain error."""

from __future__ import annotations

from ldapsrv import errors
from ldapsrv.ldap.messages import LDAPResult

SUCCESS = 0
OPERATIONS_ERROR = 1
PROTOCOL_ERROR = 2
TIME_LIMIT_EXCEEDED = 3
SIZE_LIMIT_EXCEEDED = 4
COMPARE_FALSE = 5
COMPARE_TRUE = 6
AUTH_METHOD_NOT_SUPPORTED = 7
STRONGER_AUTH_REQUIRED = 8
ADMIN_LIMIT_EXCEEDED = 11
UNAVAILABLE_CRITICAL_EXTENSION = 12
CONFIDENTIALITY_REQUIRED = 13
UNDEFINED_ATTRIBUTE_TYPE = 17
NO_SUCH_OBJECT = 32
INVALID_DN_SYNTAX = 34
INVALID_CREDENTIALS = 49
INSUFFICIENT_ACCESS_RIGHTS = 50
BUSY = 51
UNAVAILABLE = 52
UNWILLING_TO_PERFORM = 53
CONSTRAINT_VIOLATION = 19
OTHER = 80

_DOMAIN_ERRORS: tuple[tuple[type[Exception], int], ...] = (
    (errors.NotFound, NO_SUCH_OBJECT),
    (errors.AlreadyExists, CONSTRAINT_VIOLATION),
    (errors.InvalidValue, CONSTRAINT_VIOLATION),
    (errors.RangeExhausted, UNWILLING_TO_PERFORM),
    (errors.StoreBusy, BUSY),
    (errors.StoreUnavailable, UNAVAILABLE),
    (errors.SchemaOutdated, UNAVAILABLE),
)


def result_for(exc: BaseException) -> LDAPResult:
    """The result a client gets for a domain error; anything else is an internal
    error whose details stay in the server log."""
    for kind, code in _DOMAIN_ERRORS:
        if isinstance(exc, kind):
            if kind is errors.StoreBusy:
                return LDAPResult(code, "the directory database is busy: try again")
            if kind is errors.StoreUnavailable:
                return LDAPResult(code, "the directory database is unavailable")
            return LDAPResult(code, str(exc))
    return LDAPResult(OTHER, "internal server error")
