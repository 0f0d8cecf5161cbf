"""Decoded LDAP requests and the pieces of responses (RFC 4511 section 4).

These are plain values: the codec (``codec.py``) turns bytes into requests and
responses into bytes, the protocol (``server.py``) never sees BER.
Distinguished names and LDAP strings are ``str`` (UTF-8 decoded by the codec);
assertion and attribute values are ``bytes``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ldapsrv.directory.filters import Filter


@dataclass(frozen=True, slots=True)
class Control:
    oid: str
    critical: bool = False
    value: bytes | None = None


@dataclass(frozen=True, slots=True)
class SimpleAuth:
    password: bytes


@dataclass(frozen=True, slots=True)
class SaslAuth:
    mechanism: str
    credentials: bytes | None


@dataclass(frozen=True, slots=True)
class BindRequest:
    version: int
    name: str
    auth: SimpleAuth | SaslAuth


@dataclass(frozen=True, slots=True)
class UnbindRequest:
    pass


SCOPE_BASE = 0
SCOPE_ONE = 1
SCOPE_SUB = 2


@dataclass(frozen=True, slots=True)
class SearchRequest:
    base: str
    scope: int
    deref_aliases: int
    size_limit: int
    time_limit: int
    types_only: bool
    filter: Filter
    attributes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Change:
    operation: int  # 0 add, 1 delete, 2 replace, 3 increment
    attr: str
    values: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class ModifyRequest:
    dn: str
    changes: tuple[Change, ...]


@dataclass(frozen=True, slots=True)
class AddRequest:
    dn: str
    attributes: tuple[tuple[str, tuple[bytes, ...]], ...]


@dataclass(frozen=True, slots=True)
class DelRequest:
    dn: str


@dataclass(frozen=True, slots=True)
class ModifyDNRequest:
    dn: str
    new_rdn: str
    delete_old_rdn: bool
    new_superior: str | None


@dataclass(frozen=True, slots=True)
class CompareRequest:
    dn: str
    attr: str
    value: bytes


@dataclass(frozen=True, slots=True)
class AbandonRequest:
    message_id: int


@dataclass(frozen=True, slots=True)
class ExtendedRequest:
    name: str
    value: bytes | None


Request = (
    BindRequest
    | UnbindRequest
    | SearchRequest
    | ModifyRequest
    | AddRequest
    | DelRequest
    | ModifyDNRequest
    | CompareRequest
    | AbandonRequest
    | ExtendedRequest
)


@dataclass(frozen=True, slots=True)
class LDAPMessage:
    message_id: int
    request: Request
    controls: tuple[Control, ...] = field(default=())
    #: A search's protocolOp and controls exactly as received (everything but the
    #: message ID): what identifies a repeated request, cheaply. b"" otherwise.
    body: bytes = field(default=b"", compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class LDAPResult:
    code: int
    message: str = ""
    matched_dn: str = ""


class RequestRejected(Exception):
    """A well-framed request whose content cannot be served as sent.

    The server answers it with ``result_code`` in the response that matches
    ``request_type`` (no response for Abandon/Unbind) and keeps the connection.
    """

    def __init__(self, message_id: int, request_type: type, result_code: int, message: str) -> None:
        super().__init__(message)
        self.message_id = message_id
        self.request_type = request_type
        self.result_code = result_code
        self.message = message


class ProtocolViolation(Exception):
    """The byte stream is not LDAP: answer a Notice of Disconnection and close."""
