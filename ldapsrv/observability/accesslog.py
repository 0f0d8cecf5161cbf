"""The access log: one structured line per LDAP operation, like slapd's ``stats``.

``describe`` turns an ``OperationRecord`` into ordered fields (connection,
client, TLS, operation, bound identity, what was asked, result, entries,
duration); ``json_line`` and ``logfmt_line`` render them. Secrets never appear:
a bind shows its DN and method (anonymous, password, token, sasl), never the
credentials; a compare shows the attribute, not the value; Password Modify
shows only that it happened.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from typing import Final

from ldapsrv.auth.tokens import parse_token
from ldapsrv.ldap import rootdse
from ldapsrv.ldap.messages import (
    AddRequest,
    BindRequest,
    CompareRequest,
    DelRequest,
    ExtendedRequest,
    ModifyDNRequest,
    ModifyRequest,
    SaslAuth,
    SearchRequest,
)
from ldapsrv.observability.filtertext import filter_text
from ldapsrv.observability.records import OperationRecord

Field = str | int | float | bool | None | list[str]
Fields = dict[str, Field]

ACCESS_LOGGER: Final = "ldapsrv.access"

#: RFC 4511 Appendix A names, as slapd and every LDAP tool print them.
RESULT_NAMES: Final[Mapping[int, str]] = {
    0: "success",
    1: "operationsError",
    2: "protocolError",
    3: "timeLimitExceeded",
    4: "sizeLimitExceeded",
    5: "compareFalse",
    6: "compareTrue",
    7: "authMethodNotSupported",
    8: "strongerAuthRequired",
    10: "referral",
    11: "adminLimitExceeded",
    12: "unavailableCriticalExtension",
    13: "confidentialityRequired",
    14: "saslBindInProgress",
    16: "noSuchAttribute",
    17: "undefinedAttributeType",
    18: "inappropriateMatching",
    19: "constraintViolation",
    20: "attributeOrValueExists",
    21: "invalidAttributeSyntax",
    32: "noSuchObject",
    33: "aliasProblem",
    34: "invalidDNSyntax",
    36: "aliasDereferencingProblem",
    48: "inappropriateAuthentication",
    49: "invalidCredentials",
    50: "insufficientAccessRights",
    51: "busy",
    52: "unavailable",
    53: "unwillingToPerform",
    54: "loopDetect",
    64: "namingViolation",
    65: "objectClassViolation",
    66: "notAllowedOnNonLeaf",
    67: "notAllowedOnRDN",
    68: "entryAlreadyExists",
    69: "objectClassModsProhibited",
    71: "affectsMultipleDSAs",
    80: "other",
}

_OPERATIONS: Final[Mapping[str, str]] = {
    "BindRequest": "bind",
    "UnbindRequest": "unbind",
    "SearchRequest": "search",
    "CompareRequest": "compare",
    "AbandonRequest": "abandon",
    "ExtendedRequest": "extended",
    "AddRequest": "add",
    "ModifyRequest": "modify",
    "DelRequest": "delete",
    "ModifyDNRequest": "modrdn",
}

_EXTENDED: Final[Mapping[str, str]] = {
    rootdse.START_TLS: "starttls",
    rootdse.WHO_AM_I: "whoami",
    rootdse.PASSWORD_MODIFY: "passwd",
}

_SCOPES: Final = ("base", "one", "sub")

#: Bind refusal reasons (the server-side text) -> a short, bounded label.
_REFUSALS: Final[tuple[tuple[str, str], ...]] = (
    ("wrong password", "wrong_password"),
    ("no such account", "no_such_account"),
    ("bind DN does not name an account", "no_such_account"),
    ("account has no password", "no_password"),
    ("account is disabled", "account_disabled"),
    ("service accounts bind only with", "service_account_password"),
    ("unknown token", "unknown_token"),
    ("wrong token secret", "wrong_token_secret"),
    ("token belongs to account", "token_of_other_account"),
)


def result_name(code: int | None) -> str:
    if code is None:
        return "none"
    return RESULT_NAMES.get(code, str(code))


def operation_name(record: OperationRecord) -> str:
    """``bind``, ``search``, ..., and for extended operations the known ones by
    name (``starttls``, ``whoami``, ``passwd``)."""
    if isinstance(record.request, ExtendedRequest):
        return _EXTENDED.get(record.request.name, "extended")
    return _OPERATIONS.get(record.request_type, record.request_type)


def bind_method(request: BindRequest) -> str:
    """How a bind authenticated, judged from the request's shape (never its value)."""
    if isinstance(request.auth, SaslAuth):
        return "sasl"
    if not request.auth.password:
        return "anonymous" if not request.name else "unauthenticated"
    return "token" if parse_token(request.auth.password) is not None else "password"


def refusal_reason(record: OperationRecord) -> str:
    """Why a bind failed, as a bounded label for logs and metrics ("" if it did not)."""
    if record.result_code in (None, 0):
        return ""
    if record.refusal.startswith("throttl") or "locked out" in record.refusal:
        return "throttled"
    for prefix, label in _REFUSALS:
        if record.refusal.startswith(prefix):
            return label
    if record.refusal.startswith("token"):
        return "token_expired" if " expired at " in record.refusal else "token_not_usable"
    if record.refusal:
        return "other"
    return result_name(record.result_code)


def describe(record: OperationRecord) -> Fields:
    """The fields of one access log line, in a stable order."""
    fields: Fields = {
        "conn": record.connection_id,
        "client": record.client,
        "tls": record.tls,
        "op": operation_name(record),
        "msgid": record.message_id,
        "identity": record.identity,
    }
    fields.update(_request_fields(record))
    if record.result_code is not None:
        fields["result"] = record.result_code
        fields["result_name"] = result_name(record.result_code)
    if isinstance(record.request, SearchRequest):
        fields["entries"] = record.entries
    if record.cached:
        fields["cached"] = True
    fields["ms"] = round(record.duration_ms, 3)
    return fields


def _request_fields(record: OperationRecord) -> Fields:
    request = record.request
    if isinstance(request, BindRequest):
        fields: Fields = {"dn": request.name, "method": bind_method(request)}
        if isinstance(request.auth, SaslAuth):
            fields["mechanism"] = request.auth.mechanism
        reason = refusal_reason(record)
        if reason:
            fields["reason"] = reason
        return fields
    if isinstance(request, SearchRequest):
        scope = _SCOPES[request.scope] if 0 <= request.scope < len(_SCOPES) else request.scope
        return {
            "base": request.base,
            "scope": scope,
            "filter": filter_text(request.filter),
            "attrs": list(request.attributes),
        }
    if isinstance(request, CompareRequest):
        return {"dn": request.dn, "attr": request.attr}  # the value may be a secret
    if isinstance(request, ExtendedRequest):
        return {"oid": request.name}  # the value may carry passwords
    if isinstance(request, AddRequest | DelRequest | ModifyRequest | ModifyDNRequest):
        return {"dn": request.dn}
    return {}


# -- rendering ------------------------------------------------------------------------


def json_line(fields: Mapping[str, Field]) -> str:
    """One JSON object; non-ASCII kept, control characters escaped by JSON itself."""
    return json.dumps(fields, ensure_ascii=False, separators=(",", ":"))


_BARE: Final = re.compile(r"[!#-<>-\[\]-~]+")  # printable ASCII but space, ", = and \
_PRINTABLE_ASCII: Final = re.compile(r"[ -~]*")
_QUOTED_ESCAPES: Final = str.maketrans({'"': '\\"', "\\": "\\\\"})
_CONTROL_ESCAPES: Final = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def logfmt_value(value: Field) -> str:
    """A value as logfmt: bare when safe, else double-quoted with ``\\``, ``"`` and
    control characters escaped. Lists are comma-joined; None is empty."""
    if value is None:
        text = ""
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, list):
        text = ",".join(value)
    else:
        text = str(value)
    if _BARE.fullmatch(text):
        return text
    if _PRINTABLE_ASCII.fullmatch(text):  # the common case, e.g. any DN
        return '"' + text.translate(_QUOTED_ESCAPES) + '"'
    return '"' + "".join(_escape_char(char) for char in text) + '"'


def _escape_char(char: str) -> str:
    if char in '"\\':
        return "\\" + char
    if char in _CONTROL_ESCAPES:
        return _CONTROL_ESCAPES[char]
    if char != " " and not char.isprintable():
        return f"\\u{ord(char):04x}"
    return char


def logfmt_line(fields: Mapping[str, Field]) -> str:
    return " ".join(f"{key}={logfmt_value(value)}" for key, value in fields.items())


# -- the observer ---------------------------------------------------------------------


class AccessLog:
    """Writes the access log to the ``ldapsrv.access`` logger at INFO.

    Each log record carries the fields as ``record.access``, so the JSON and
    logfmt formatters (``logformat.py``) print them as fields; the plain text
    formatter prints the logfmt rendering as the message.
    """

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.log = logger or logging.getLogger(ACCESS_LOGGER)

    def _emit(self, fields: Fields) -> None:
        if self.log.isEnabledFor(logging.INFO):
            self.log.info("%s", _LogfmtMessage(fields), extra={"access": fields})

    def connection_opened(self, connection_id: str, client: str, tls: bool) -> None:
        self._emit({"conn": connection_id, "client": client, "tls": tls, "op": "connect"})

    def connection_closed(self, connection_id: str, client: str) -> None:
        self._emit({"conn": connection_id, "client": client, "op": "disconnect"})

    def operation_done(self, record: OperationRecord) -> None:
        self._emit(describe(record))


class _LogfmtMessage:
    """The text format's message, rendered only if a formatter asks for it (the
    JSON and logfmt formatters render the fields themselves)."""

    __slots__ = ("fields",)

    def __init__(self, fields: Fields) -> None:
        self.fields = fields

    def __str__(self) -> str:
        return logfmt_line(self.fields)
