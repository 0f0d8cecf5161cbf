"""What the LDAP layer tells its observer: one record per finished operation.

The wire layer fills an ``OperationRecord`` at the one place an operation ends
and hands it to ``ServerContext.observer``; the access log and the metrics turn
it into text and numbers. The record carries the decoded request itself so the
wire layer stays free of formatting; whoever renders it must never print the
bind password or a Password Modify value (``accesslog.describe`` is the one
place that reads requests, and it does not).
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger("ldapsrv.observability")
_counter = itertools.count(1)
_pid = os.getpid()


def _forked() -> None:
    global _counter, _pid
    _counter, _pid = itertools.count(1), os.getpid()


os.register_at_fork(after_in_child=_forked)


def next_connection_id() -> str:
    """A connection id unique across the worker processes of one host:
    ``<pid>-<n>`` with ``n`` counting this process's connections from 1."""
    return f"{_pid}-{next(_counter)}"


@dataclass(frozen=True, slots=True)
class OperationRecord:
    """One LDAP operation as the access log and the metrics see it."""

    connection_id: str
    client: str  # "host:port"
    tls: bool
    message_id: int
    request: object  # the decoded request (ldapsrv.ldap.messages), or None
    request_type: str  # the request's class name, also when it could not be decoded
    identity: str  # the bound DN when the operation ended, "" for anonymous
    result_code: int | None  # None: no response (unbind, abandon, abandoned operations)
    entries: int  # search entries sent
    duration_ms: float
    refusal: str = ""  # why a bind was refused (server-side text, never a secret)
    cached: bool = False  # answered from the search or bind cache (ldapsrv/caching)


class Observer(Protocol):
    """Told about connections and finished operations, on the reactor thread.
    Implementations must be quick and must not raise."""

    def connection_opened(self, connection_id: str, client: str, tls: bool) -> None: ...

    def connection_closed(self, connection_id: str, client: str) -> None: ...

    def operation_done(self, record: OperationRecord) -> None: ...


def reads_requests(observer: Observer) -> bool:
    """Whether ``observer`` looks at ``OperationRecord.request`` (an observer that
    says nothing is taken to). Where none does, an operation answered before its
    request was decoded (a repeated search answered from the cache) is recorded
    with ``request=None``, its ``request_type`` still set."""
    return bool(getattr(observer, "reads_requests", True))


class NullObserver:
    """Sees nothing: the default for a server built without observability."""

    reads_requests = False

    def connection_opened(self, connection_id: str, client: str, tls: bool) -> None:
        pass

    def connection_closed(self, connection_id: str, client: str) -> None:
        pass

    def operation_done(self, record: OperationRecord) -> None:
        pass


class Observers:
    """Several observers as one; one that raises does not stop the others."""

    def __init__(self, *observers: Observer) -> None:
        self.observers = observers
        self.reads_requests = any(reads_requests(o) for o in observers)

    def connection_opened(self, connection_id: str, client: str, tls: bool) -> None:
        for observer in self.observers:
            _guard(observer.connection_opened, connection_id, client, tls)

    def connection_closed(self, connection_id: str, client: str) -> None:
        for observer in self.observers:
            _guard(observer.connection_closed, connection_id, client)

    def operation_done(self, record: OperationRecord) -> None:
        for observer in self.observers:
            _guard(observer.operation_done, record)


def _guard(call: Callable[..., None], *args: object) -> None:
    try:
        call(*args)
    except Exception:  # an observer bug must never cost a client its answer
        log.exception("observer failed")
