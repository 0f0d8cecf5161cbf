"""Domain errors. They carry no LDAP result codes: ``ldap/`` maps them once,
the control socket maps them to its own error kinds."""

from __future__ import annotations


class DomainError(Exception):
    """Base of every error an admin or client is meant to read."""


class NotFound(DomainError):
    pass


class AlreadyExists(DomainError):
    pass


class InvalidValue(DomainError):
    """A value an admin or client supplied breaks a rule; the message names it."""


class RangeExhausted(DomainError):
    """No free uid/gid number is left in the configured range."""


class StoreUnavailable(DomainError):
    """The database cannot be reached or answered with an operational error."""


class StoreBusy(StoreUnavailable):
    """The database is there but locked by someone else for longer than we wait
    (a SQLite file held by another writer or a backup tool): try again shortly."""


class SchemaOutdated(DomainError):
    """The database schema is older than this code: run ``ldapsrv db upgrade``."""
