"""The LDAP wire protocol: one ``LDAPConnection`` per client.

Owns what ldaptor's ``LDAPServer`` gets wrong: framing with limits before any
decoding, a failed bind that leaves the connection anonymous, rootDSE reads
for any filter, no reply to Abandon, no internal error text on the wire, size
and time limits, typesOnly, paged results with per-connection cookies.
Blocking work (SQL, bcrypt) goes to the thread pool; this module only decodes,
dispatches, encodes and writes. Connection limits (ldap/limits.py) and
back-pressure (ldap/flow.py) decide when it reads, writes and closes.

Searches and token binds are first looked up in the caches (ldapsrv/caching)
after reading the database's change counters (on SQLite a read of a few
microseconds on this thread, elsewhere one query in the pool shared by the
operations waiting for it); identical searches running at once share one
computation. An operation that needs no thread finishes without a Deferred
(ldap/driving.py).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Coroutine, Hashable
from dataclasses import dataclass, field
from typing import Any

from twisted.internet import defer, protocol
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IAddress
from twisted.python.failure import Failure

from ldapsrv.auth.binding import (
    BindOutcome,
    NotPermitted,
    PasswordAuthenticator,
    ServiceAccountHasNoPassword,
    WrongPassword,
)
from ldapsrv.auth.passwords import PasswordRejected, generate_password
from ldapsrv.auth.tokens import parse_token
from ldapsrv.caching.binds import BindCache
from ldapsrv.caching.counters import CounterSource, read_current
from ldapsrv.caching.search_results import (
    AnswerCapture,
    CachedAnswer,
    Position,
    SearchResultCache,
)
from ldapsrv.directory.dit import Dit, Kind, NoSuchBase, SearchPlan, StoredEntries
from ldapsrv.directory.dn import DNError, normalize, parse_dn
from ldapsrv.directory.entries import Entry, Renderer, Selection
from ldapsrv.directory.filters import Equality, Filter
from ldapsrv.directory.records import EffectivePermissions
from ldapsrv.directory.schema import Schema
from ldapsrv.directory.visibility import Viewer
from ldapsrv.errors import DomainError, NotFound, StoreBusy
from ldapsrv.ldap import codec, rootdse
from ldapsrv.ldap import results as rc
from ldapsrv.ldap.driving import drive
from ldapsrv.ldap.flow import WriteFlow
from ldapsrv.ldap.framing import PDUFramer
from ldapsrv.ldap.limits import (
    ConnectionLimits,
    ConnectionTracker,
    ConnectionWatch,
    IdentityLimits,
)
from ldapsrv.ldap.messages import (
    SCOPE_BASE,
    AbandonRequest,
    BindRequest,
    CompareRequest,
    Control,
    ExtendedRequest,
    LDAPMessage,
    LDAPResult,
    ProtocolViolation,
    RequestRejected,
    SaslAuth,
    SearchRequest,
    SimpleAuth,
    UnbindRequest,
)
from ldapsrv.ldap.search import Cursor, PreparedSearch, SearchEngine, Stop, held_up
from ldapsrv.ldap.sending import send_reply
from ldapsrv.memo import Memo
from ldapsrv.observability.records import (
    NullObserver,
    Observer,
    OperationRecord,
    next_connection_id,
    reads_requests,
)
from ldapsrv.store.changes import Counters

log = logging.getLogger("ldapsrv.ldap")

MAX_PAGED_SEARCHES = 16
#: Seconds a closing connection gets to flush its last bytes before it is aborted
#: (a client that does not read would otherwise hold it open for ever).
CLOSE_GRACE = 5.0
SHUTTING_DOWN = "the server is shutting down"
_SUBSCHEMA = normalize(parse_dn("cn=Subschema"))
_USER_SUBSCHEMA_ATTRS = frozenset({"objectclass", "cn"})
#: Entries sent per write when a cached answer is replayed (back-pressure checked between).
REPLAY_CHUNK = 64
#: Seconds a search waits for an identical one that is computing its answer.
CLAIM_WAIT = 1.0
_SUCCESS = LDAPResult(rc.SUCCESS)
_REPEATABLE_CODES = frozenset({rc.SUCCESS, rc.SIZE_LIMIT_EXCEEDED, rc.NO_SUCH_OBJECT})


@dataclass(frozen=True, slots=True)
class ServerSettings:
    max_pdu_bytes: int
    max_filter_depth: int
    size_limit: int
    time_limit: int
    anonymous_read: bool
    require_tls_for_binds: str = "never"  # "never" | "non-loopback" | "always"
    require_tls_for_searches: str = "never"
    connections: ConnectionLimits = field(default_factory=ConnectionLimits)
    identity_limits: IdentityLimits = field(default_factory=IdentityLimits)

    def search_limits(self, account: str | None) -> tuple[int, int]:
        """(size limit, time limit) for searches by ``account`` (None: anonymous)."""
        own = self.identity_limits.get(account)
        if own is not None:
            return own.size_limit, own.time_limit
        return self.size_limit, self.time_limit


@dataclass(slots=True)
class ServerContext:
    """Everything a connection needs, shared by all connections of a server."""

    settings: ServerSettings
    dit: Dit
    schema: Schema
    engine: SearchEngine
    authenticator: PasswordAuthenticator
    tls_options: Any | None  # CertificateOptions, or ldapsrv.reloading.ReloadableTLS
    run_blocking: Callable[..., Deferred[Any]]
    sleep: Callable[[float], Deferred[None]] = field(default=lambda seconds: succeed(None))
    observer: Observer = field(default_factory=NullObserver)  # access log, metrics
    #: IReactorTime for idle/incomplete-request timers and close deadlines (None: off).
    clock: Any | None = None
    connections: ConnectionTracker = field(
        default_factory=lambda: ConnectionTracker(time.monotonic)
    )
    #: Search answers and warm token binds kept in memory (None: off), each
    #: validated against the change counters of the database it was read from.
    results: SearchResultCache | None = None
    search_counters: CounterSource | None = None
    binds: BindCache | None = None
    bind_counters: CounterSource | None = None


@dataclass(slots=True)
class PagedSearch:
    fingerprint: tuple[object, ...]
    prepared: PreparedSearch | None  # None until a page has to be read from the store
    cursor: Cursor
    #: Bytes of the pages sent so far. Past a quarter of the search cache, later
    #: pages are not kept: a huge enumeration streams through without filling the
    #: cache, and only its first pages are kept, whoever runs it.
    sent_bytes: int = 0


@dataclass(slots=True)
class Operation:
    message_id: int
    abandoned: bool = False
    # for the observer: what the client was answered, and how it went
    started: float = field(default_factory=time.monotonic)
    result_code: int | None = None
    entries: int = 0
    refusal: str = ""
    cached: bool = False  # answered from a cache


@dataclass(frozen=True, slots=True)
class Identity:
    name: str
    dn: str
    permissions: EffectivePermissions = field(default_factory=EffectivePermissions)


@dataclass(frozen=True, slots=True)
class _Asking:
    """Who searches on a connection, as its searches need it (until the next bind
    or settings reload)."""

    identity: Identity | None
    settings: ServerSettings
    viewer: Viewer
    #: Who asks, as far as an answer depends on it (part of every cache key).
    asker: tuple[object, ...]
    size_limit: int  # the account's own limits (0: none)
    time_limit: int


@dataclass(slots=True)
class _Answering:
    """Where one search's entries and result go, and what of them is kept."""

    conn: LDAPConnection
    mid: int
    op: Operation
    paged: bool  # the request carried the paged results control
    sent: list[tuple[int, str, str]] = field(default_factory=list)  # the ending result
    capture: AnswerCapture | None = None  # the entries, while they may be kept

    def done(
        self, code: int, text: str = "", matched: str = "", controls: tuple[Control, ...] = ()
    ) -> None:
        self.sent.append((code, text, matched))
        if not self.op.abandoned:
            self.op.result_code = code
            self.conn._write(
                codec.encode_search_done(
                    self.mid, LDAPResult(code, text, matched), controls=controls
                )
            )

    def no_paging(self) -> tuple[Control, ...]:
        """The paged results control that ends a paged search (none if not paged)."""
        if not self.paged:
            return ()
        return (Control(rootdse.PAGED_RESULTS, False, codec.encode_paged_results_value(0, b"")),)

    def emit(self, entry: Entry) -> None:
        dn, attributes = entry
        self.op.entries += 1
        encoded = codec.encode_search_entry_op(dn, attributes)
        if self.capture is not None:
            self.capture.add(encoded)
        self.conn._write(codec.wrap_search_entry(self.mid, encoded))

    def cancelled(self) -> bool:
        return self.op.abandoned or self.conn.closed


@dataclass(slots=True)
class _SearchJob:
    """What a search asks, as planned: the parts every way of answering it needs."""

    request: SearchRequest
    plan: SearchPlan
    asking: _Asking
    deadline: float | None

    @property
    def viewer(self) -> Viewer:
        return self.asking.viewer

    def asked(self) -> tuple[object, ...]:
        """What is asked, decoded (a search's request bytes stand for it when known)."""
        request = self.request
        return (
            request.base.lower(),
            request.scope,
            request.filter,
            tuple(a.lower() for a in request.attributes),
            request.types_only,
        )


class LDAPConnection(protocol.Protocol):
    def __init__(self, ctx: ServerContext, tls_active: bool) -> None:
        self.ctx = ctx
        self.tls_active = tls_active
        self.framer = PDUFramer(ctx.settings.max_pdu_bytes)
        self.identity: Identity | None = None
        self.bind_generation = 0
        self.operations: dict[int, Operation] = {}
        self.paged: OrderedDict[bytes, PagedSearch] = OrderedDict()
        self.closed = False
        self.starting_tls = False
        self.peer = "?"
        self.peer_host: str | None = None
        self.connection_id = ""
        # Flow control: requests read but not yet started (beyond the outstanding
        # operations limit), and whether reading from the socket is paused.
        self.backlog: deque[bytes] = deque()
        self.flow = WriteFlow(self._flow_changed)
        self.watch: ConnectionWatch | None = None
        self.shutting_down = False
        self._reading_paused = False
        self._handling = False
        self._lost = False
        self._abort_timer: Any = None
        self._loopback: bool | None = None  # whether the peer is on loopback (once known)
        self._asking_memo: _Asking | None = None

    # -- connection life ---------------------------------------------------------

    @property
    def _tx(self) -> Any:
        """The transport, untyped: Twisted's zope interfaces do not type-check."""
        return self.transport

    def connectionMade(self) -> None:
        # Responses are several small writes (entries, then done): without
        # TCP_NODELAY, Nagle holds the last one until the client's delayed ACK,
        # ~40 ms per operation on Linux.
        if hasattr(self._tx, "setTcpNoDelay"):
            self._tx.setTcpNoDelay(True)
        peer = self._tx.getPeer()
        host = getattr(peer, "host", None)
        self.peer_host = host
        self.peer = f"{host}:{getattr(peer, 'port', '')}" if host else str(peer)
        self.connection_id = next_connection_id()
        self.ctx.observer.connection_opened(self.connection_id, self.peer, self.tls_active)
        refusal = self.ctx.connections.admit(self, self.ctx.settings.connections)
        if refusal is not None:
            self._disconnect(rc.BUSY, refusal, quiet=True)  # the tracker logs refusals
            return
        self._tx.registerProducer(self.flow, True)
        if self.ctx.clock is not None:
            self.watch = ConnectionWatch(
                self.ctx.clock, lambda: self.ctx.settings.connections, self
            )

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        if self.connection_id:
            self.ctx.observer.connection_closed(self.connection_id, self.peer)
        self.closed = True
        self._lost = True
        for op in self.operations.values():
            op.abandoned = True
        self.paged.clear()
        self.backlog.clear()
        self.flow.stopProducing()
        if self.watch is not None:
            self.watch.stop()
        if self._abort_timer is not None and self._abort_timer.active():
            self._abort_timer.cancel()
        self.ctx.connections.release(self)

    def dataReceived(self, data: bytes) -> None:
        if self.closed:
            return
        try:
            pdus = self.framer.feed(data)
        except ProtocolViolation as exc:
            self._disconnect(rc.PROTOCOL_ERROR, str(exc))
            return
        if self.watch is not None:
            if pdus:
                self.watch.activity()
            self.watch.partial(self.framer.buffered_bytes > 0, fresh=bool(pdus))
        self.backlog.extend(pdus)
        self._process_backlog()

    def _process_backlog(self) -> None:
        """Start queued requests while fewer than max_outstanding_operations run;
        beyond that, requests wait here and the socket is not read."""
        if self._handling:
            return  # an operation finished while we were starting another
        self._handling = True
        try:
            limit = self.ctx.settings.connections.max_outstanding_operations
            while self.backlog and not self.closed:
                if limit and len(self.operations) >= limit:
                    break
                self._handle(self.backlog.popleft())
        finally:
            self._handling = False
        self._update_reading()

    def _handle(self, pdu: bytes) -> None:
        if self.ctx.results is not None and self._answer_kept(pdu):
            return
        try:
            message = codec.decode_message(pdu, max_filter_depth=self.ctx.settings.max_filter_depth)
        except RequestRejected as rejected:
            self._answer_rejected(rejected)
            return
        except ProtocolViolation as exc:
            self._disconnect(rc.PROTOCOL_ERROR, str(exc))
            return
        self._dispatch(message)

    def _answer_kept(self, pdu: bytes) -> bool:
        """Answer a repeated search from its kept answer before decoding it, when
        nothing in its way needs the decoded request: no controls, a small answer,
        no back-pressure, the counters readable at once. False: take the long way
        (which may still find the answer, and applies every rule there is)."""
        cache = self.ctx.results
        counters = self.ctx.search_counters
        if cache is None or counters is None or self.flow.paused:
            return False
        if self.shutting_down or self.starting_tls:
            return False
        split = codec.split_plain_search(pdu)
        if split is None:
            return False
        if self._tls_required(self.ctx.settings.require_tls_for_searches):
            return False
        now = counters.current()
        if not isinstance(now, Counters):
            return False
        mid, body = split
        asking = self._asking()
        answer = cache.get(_bytes_key(asking, body), now.directory)
        if answer is None or answer.next_page is not None or len(answer.entries) > REPLAY_CHUNK:
            return False
        request = None
        if reads_requests(self.ctx.observer):  # the access log: it shows base and filter
            try:
                request = codec.decode_message(
                    pdu, max_filter_depth=self.ctx.settings.max_filter_depth
                ).request
            except (ProtocolViolation, RequestRejected):
                return False  # limits changed since it was kept: the long way rejects it
        op = Operation(mid, cached=True, entries=len(answer.entries), result_code=answer.code)
        result = LDAPResult(answer.code, answer.message, answer.matched)
        self._write(
            codec.wrap_search_entries(mid, answer.entries) + codec.encode_search_done(mid, result)
        )
        self._observe(mid, request, "SearchRequest", op)
        return True

    def _update_reading(self) -> None:
        """Read requests only while the client reads replies and there is room."""
        if self.closed or self.transport is None:
            return
        pause = self.flow.paused or bool(self.backlog)
        if pause != self._reading_paused:
            self._reading_paused = pause
            if pause:
                self._tx.pauseProducing()
            else:
                self._tx.resumeProducing()

    def _flow_changed(self) -> None:
        if not self.flow.paused and self.watch is not None:
            self.watch.activity()  # the client read our replies: it is alive
        self._update_reading()

    def _operation_finished(self) -> None:
        if self.watch is not None:
            self.watch.activity()
        if self.shutting_down and not self.operations:
            self._disconnect(rc.UNAVAILABLE, SHUTTING_DOWN)
            return
        self._process_backlog()

    # -- limits and shutdown (ConnectionWatch and ConnectionTracker call these) --------

    def is_busy(self) -> bool:
        return bool(self.operations) and not self.flow.paused

    def idle_expired(self, seconds: float) -> None:
        if self.flow.paused:
            self._disconnect(rc.ADMIN_LIMIT_EXCEEDED, f"replies unread for {seconds:g} s")
        else:
            self._disconnect(rc.ADMIN_LIMIT_EXCEEDED, f"idle for {seconds:g} s")

    def pdu_expired(self, seconds: float) -> None:
        self._disconnect(rc.ADMIN_LIMIT_EXCEEDED, f"request incomplete after {seconds:g} s")

    def begin_shutdown(self) -> None:
        self.shutting_down = True
        if not self.operations:
            self._disconnect(rc.UNAVAILABLE, SHUTTING_DOWN)

    def force_close(self) -> None:
        for op in self.operations.values():
            op.abandoned = True
        self._disconnect(rc.UNAVAILABLE, SHUTTING_DOWN)

    def _disconnect(self, code: int, message: str, quiet: bool = False) -> None:
        if not quiet:
            log.info("disconnecting %s: %s", self.peer, message)
        if self.transport is not None and not self.closed:
            self._tx.write(codec.encode_notice_of_disconnection(code, message))
            self._tx.loseConnection()
            if self.ctx.clock is not None:
                self._abort_timer = self.ctx.clock.callLater(CLOSE_GRACE, self._abort)
        self.closed = True

    def _abort(self) -> None:
        if not self._lost and self.transport is not None:
            log.info("aborting %s: it did not read its last replies", self.peer)
            self._tx.abortConnection()

    # -- plumbing ---------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        if not self.closed and self.transport is not None:
            send_reply(self.transport, data)

    def _respond(
        self,
        message_id: int,
        request: object,
        result: LDAPResult,
        controls: tuple[Control, ...] = (),
    ) -> None:
        encoder = codec.RESPONSE_ENCODERS.get(type(request))
        if encoder is not None:
            self._write(encoder(message_id, result, controls=controls))

    def _answer_rejected(self, rejected: RequestRejected) -> None:
        encoder = codec.RESPONSE_ENCODERS.get(rejected.request_type)
        if encoder is not None:
            result = LDAPResult(rejected.result_code, rejected.message)
            self._write(encoder(rejected.message_id, result))
        op = Operation(rejected.message_id, result_code=rejected.result_code)
        self._observe(rejected.message_id, None, rejected.request_type.__name__, op)

    def _run(
        self,
        message: LDAPMessage,
        handler: Callable[[LDAPMessage, Operation], Coroutine[Any, Any, None]],
    ) -> None:
        """Run one operation; whatever goes wrong, the client gets a clean answer."""
        op = Operation(message.message_id)
        self.operations[message.message_id] = op

        def failed(failure: Failure) -> None:
            if isinstance(failure.value, DomainError):
                result = rc.result_for(failure.value)
                log.warning(
                    "%s failed for %s: %s",
                    type(message.request).__name__,
                    self.peer,
                    failure.getErrorMessage(),
                )
            else:
                log.error(
                    "internal error in %s from %s",
                    type(message.request).__name__,
                    self.peer,
                    exc_info=failure.value,
                )
                result = LDAPResult(rc.OTHER, "internal server error")
            if not op.abandoned:
                op.result_code = result.code
                self._respond(message.message_id, message.request, result)

        def finished() -> None:
            self.operations.pop(message.message_id, None)
            self._observe_message(message, op)
            self._operation_finished()

        drive(handler(message, op), failed, finished)

    def _observe(self, message_id: int, request: object, request_type: str, op: Operation) -> None:
        """Tell the observer (access log, metrics) that an operation ended."""
        self.ctx.observer.operation_done(
            OperationRecord(
                connection_id=self.connection_id,
                client=self.peer,
                tls=self.tls_active,
                message_id=message_id,
                request=request,
                request_type=request_type,
                identity="" if self.identity is None else self.identity.dn,
                result_code=op.result_code,
                entries=op.entries,
                duration_ms=(time.monotonic() - op.started) * 1000,
                refusal=op.refusal,
                cached=op.cached,
            )
        )

    def _observe_message(self, message: LDAPMessage, op: Operation) -> None:
        self._observe(message.message_id, message.request, type(message.request).__name__, op)

    def _refuse(self, message: LDAPMessage, result: LDAPResult) -> None:
        """Answer a request that is not run at all, and log it like any other."""
        self._respond(message.message_id, message.request, result)
        self._observe_message(message, Operation(message.message_id, result_code=result.code))

    def _dispatch(self, message: LDAPMessage) -> None:
        request = message.request
        if isinstance(request, UnbindRequest | AbandonRequest):  # no response: log them here
            self._observe_message(message, Operation(message.message_id))
        if isinstance(request, UnbindRequest):
            self.closed = True
            for op in self.operations.values():
                op.abandoned = True
            if self.transport is not None:
                self._tx.loseConnection()
            return
        if isinstance(request, AbandonRequest):
            target = self.operations.get(request.message_id)
            if target is not None:
                target.abandoned = True
            return
        if self.shutting_down:
            self._refuse(message, LDAPResult(rc.UNAVAILABLE, SHUTTING_DOWN))
            return
        if self.starting_tls:
            self._refuse(message, LDAPResult(rc.OPERATIONS_ERROR, "StartTLS is in progress"))
            return
        unsupported = self._unsupported_critical_control(message)
        if unsupported is not None:
            self._refuse(
                message,
                LDAPResult(
                    rc.UNAVAILABLE_CRITICAL_EXTENSION,
                    f"critical control {unsupported} is not supported for this operation",
                ),
            )
            return
        if isinstance(request, BindRequest):
            if not self._bind_kept(message, request):
                self._run(message, self._bind)
        elif isinstance(request, SearchRequest):
            self._run(message, self._search)
        elif isinstance(request, CompareRequest):
            self._run(message, self._compare)
        elif isinstance(request, ExtendedRequest):
            self._run(message, self._extended)
        else:
            self._refuse(
                message,
                LDAPResult(
                    rc.UNWILLING_TO_PERFORM,
                    "this directory is read-only over LDAP; manage it with the ldapsrv command",
                ),
            )

    def _unsupported_critical_control(self, message: LDAPMessage) -> str | None:
        for control in message.controls:
            if not control.critical:
                continue
            if control.oid == rootdse.MANAGE_DSA_IT:
                continue  # we hold no referrals: treating them normally is what it asks
            if control.oid == rootdse.PAGED_RESULTS and isinstance(message.request, SearchRequest):
                continue
            return control.oid
        return None

    # -- bind ---------------------------------------------------------------------------

    async def _bind(self, message: LDAPMessage, op: Operation) -> None:
        request = message.request
        assert isinstance(request, BindRequest)
        self.identity = None  # RFC 4513 4: a bind, even a failed one, resets the identity
        self.bind_generation += 1
        generation = self.bind_generation
        mid = message.message_id

        def answer(code: int, text: str = "") -> None:
            op.result_code = code
            self._write(codec.encode_bind_response(mid, LDAPResult(code, text)))

        settled = self._settled_without_credentials(request)
        if settled is not None:
            if settled.code == rc.CONFIDENTIALITY_REQUIRED:
                log.info("bind for %r from %s refused: TLS required", request.name, self.peer)
            answer(settled.code, settled.message)
            return
        assert isinstance(request.auth, SimpleAuth)
        password = request.auth.password
        # A DN naming no account is checked anyway ("" names nobody), so that it
        # costs the same and is throttled like any other failure.
        name = self.ctx.dit.parse_entry_name(request.name, Kind.USER) or ""
        binds = self.ctx.binds
        counters = None
        if binds is not None and name and parse_token(password) is not None:
            counters = await read_current(self.ctx.bind_counters)
        kept = None
        if counters is not None:
            assert binds is not None
            kept = binds.get(name, self.peer_host, password, counters)
        try:
            if kept is not None:
                outcome = kept
                op.cached = True
            else:
                outcome = await self.ctx.run_blocking(
                    self.ctx.authenticator.check, name, password, self.peer_host, request.name
                )
                if counters is not None:
                    assert binds is not None
                    binds.put(name, self.peer_host, password, counters, outcome)
        except DomainError as exc:
            log.warning("bind for %r from %s failed: %s", request.name, self.peer, exc)
            if isinstance(exc, StoreBusy):  # e.g. SQLite write-locked past its busy timeout
                answer(rc.BUSY, "the directory database is busy: try again")
            else:
                answer(rc.UNAVAILABLE, "the directory database is unavailable")
            return
        if not outcome.accepted and outcome.delay > 0:
            await self.ctx.sleep(outcome.delay)
        if op.abandoned or generation != self.bind_generation:
            return
        if not outcome.accepted:
            reason = outcome.reason if name else "bind DN does not name an account"
            op.refusal = "throttled" if outcome.via == "throttling" else reason
            self._refuse_bind(request.name, f"{reason} ({outcome.via})")
            answer(rc.INVALID_CREDENTIALS)
            return
        self._bound(outcome)
        answer(rc.SUCCESS)

    def _settled_without_credentials(self, request: BindRequest) -> LDAPResult | None:
        """The answer to a bind that checks no credentials (wrong version, SASL,
        anonymous, a DN without password, no TLS where it is required); None for
        a simple bind with a name and a password to check."""
        auth = request.auth
        if request.version != 3:
            return LDAPResult(rc.PROTOCOL_ERROR, "only LDAP version 3 is supported")
        if isinstance(auth, SaslAuth):
            return LDAPResult(
                rc.AUTH_METHOD_NOT_SUPPORTED, "SASL is not supported: use a simple bind"
            )
        if not request.name and not auth.password:
            return _SUCCESS
        if not auth.password:
            return LDAPResult(
                rc.UNWILLING_TO_PERFORM, "unauthenticated bind (a DN without password)"
            )
        if self._tls_required(self.ctx.settings.require_tls_for_binds):
            return LDAPResult(rc.CONFIDENTIALITY_REQUIRED, "binds need TLS: use StartTLS or LDAPS")
        return None

    def _bound(self, outcome: BindOutcome) -> None:
        """Take the identity an accepted bind established."""
        assert outcome.name is not None
        self.identity = Identity(
            outcome.name, self.ctx.dit.user_dn(outcome.name), outcome.permissions
        )
        self.paged.clear()
        log.info("bind as %s from %s with %s", self.identity.dn, self.peer, outcome.via)

    def _bind_kept(self, message: LDAPMessage, request: BindRequest) -> bool:
        """Accept a warm token bind at once from the bind cache, when the counters
        can be read without waiting; False: ``_bind`` decides (every refusal and
        every rule is there: this only ever accepts what it accepted before)."""
        binds, source = self.ctx.binds, self.ctx.bind_counters
        if binds is None or source is None:
            return False
        if self._settled_without_credentials(request) is not None:
            return False
        auth = request.auth
        assert isinstance(auth, SimpleAuth)
        name = self.ctx.dit.parse_entry_name(request.name, Kind.USER)
        if not name:
            return False
        # Only accepted token binds are ever kept: a password finds nothing.
        now = source.current()
        if not isinstance(now, Counters):
            return False
        outcome = binds.get(name, self.peer_host, auth.password, now)
        if outcome is None:
            return False
        mid = message.message_id
        self.bind_generation += 1  # a bind still running on this connection loses
        self._bound(outcome)
        self._write(codec.encode_bind_response(mid, _SUCCESS))
        self._observe_message(message, Operation(mid, result_code=rc.SUCCESS, cached=True))
        return True

    def _refuse_bind(self, dn: str, reason: str) -> None:
        log.info("bind refused for %r from %s: %s", dn, self.peer, reason)

    # -- search -------------------------------------------------------------------------

    def _viewer(self) -> Viewer:
        return self._asking().viewer

    def _asking(self) -> _Asking:
        """Who searches now; rebuilt only when a bind changed the identity."""
        identity, settings = self.identity, self.ctx.settings
        memo = self._asking_memo
        if memo is not None and memo.identity is identity and memo.settings is settings:
            return memo
        if identity is not None:
            viewer = Viewer(identity.name, True, identity.permissions)
        else:
            viewer = Viewer(None, settings.anonymous_read)
        size_limit, time_limit = settings.search_limits(None if identity is None else identity.name)
        asker = (viewer.account_name, viewer.may_read_directory, viewer.sees_state)
        memo = _Asking(identity, settings, viewer, asker, size_limit, time_limit)
        self._asking_memo = memo
        return memo

    def _tls_required(self, requirement: str) -> bool:
        """Whether this connection must have TLS for an operation under ``requirement``."""
        if self.tls_active or requirement == "never":
            return False
        if requirement == "always":
            return True
        if self._loopback is None:
            self._loopback = _is_loopback(self.peer_host)
        return not self._loopback

    async def _search(self, message: LDAPMessage, op: Operation) -> None:
        request = message.request
        assert isinstance(request, SearchRequest)
        paged_control = next((c for c in message.controls if c.oid == rootdse.PAGED_RESULTS), None)
        answering = _Answering(self, message.message_id, op, paged_control is not None)
        done, no_paging = answering.done, answering.no_paging
        try:
            base = parse_dn(request.base)
        except DNError as exc:
            done(rc.INVALID_DN_SYNTAX, f"invalid base DN: {exc}", controls=no_paging())
            return
        if not base and request.scope == SCOPE_BASE:
            attrs = self._root_dse_attributes()
            op.entries += self._special_entry(message.message_id, request, attrs, frozenset())
            done(rc.SUCCESS, controls=no_paging())
            return
        if normalize(base) == _SUBSCHEMA and request.scope == SCOPE_BASE:
            attrs = rootdse.subschema_attributes(self.ctx.schema)
            op.entries += self._special_entry(
                message.message_id, request, attrs, _USER_SUBSCHEMA_ATTRS, "cn=Subschema"
            )
            done(rc.SUCCESS, controls=no_paging())
            return
        if self._tls_required(self.ctx.settings.require_tls_for_searches):
            done(
                rc.CONFIDENTIALITY_REQUIRED,
                "searches need TLS: use StartTLS or LDAPS",
                controls=no_paging(),
            )
            return
        asking = self._asking()
        if not asking.viewer.may_read_directory:
            done(rc.NO_SUCH_OBJECT, controls=no_paging())
            return
        try:
            plan = self.ctx.dit.plan(base or self.ctx.dit.base, request.scope)
            if not base:
                plan = self.ctx.dit.plan(
                    self.ctx.dit.base, SCOPE_BASE if request.scope == 1 else request.scope
                )
        except NoSuchBase as missing:
            done(rc.NO_SUCH_OBJECT, matched=missing.matched_dn, controls=no_paging())
            return
        time_limits = [t for t in (request.time_limit, asking.time_limit) if t > 0]
        deadline = time.monotonic() + min(time_limits) if time_limits else None
        job = _SearchJob(request, plan, asking, deadline)
        if paged_control is None:
            limits = [s for s in (request.size_limit, asking.size_limit) if s > 0]
            await self._search_whole(message, answering, job, min(limits) if limits else None)
            return
        try:
            page_size, cookie = codec.decode_paged_results_value(paged_control.value or b"")
        except ValueError:
            done(rc.PROTOCOL_ERROR, "malformed paged results control value")
            return
        await self._search_page(answering, job, page_size, cookie)

    async def _search_whole(
        self,
        message: LDAPMessage,
        answering: _Answering,
        job: _SearchJob,
        size_limit: int | None,
    ) -> None:
        """A search without paging: all its entries, then its result."""
        cache = self.ctx.results
        key = _whole_key(job.asking, message.body, job.asked, size_limit)
        # Read before the search reads anything: an answer computed now is
        # stamped with a counter no newer than the data it holds.
        counter = await self._directory_counter() if cache is not None else None
        claimed = False
        if counter is not None:
            assert cache is not None
            answer, claimed = await _answer_or_claim(cache, key, counter, self.ctx.clock, True)
            if answer is not None:
                await self._replay(answering, answer, ())
                return
            answering.capture = cache.capture()
        try:
            prepared = self._prepare(job.request, job.plan, job.viewer)
            cursor = Cursor()
            stop = await self.ctx.engine.stream(
                prepared,
                cursor,
                size_limit,
                answering.emit,
                answering.cancelled,
                job.deadline,
                self.flow.wait,
            )
            await self._finish_search(stop, cursor, job.plan.leaves, job.viewer, answering.done, ())
            _keep(cache, key, counter, answering, stop)
        finally:
            if claimed:
                assert cache is not None and counter is not None
                cache.finished(key, counter)

    async def _search_page(
        self, answering: _Answering, job: _SearchJob, page_size: int, cookie: bytes
    ) -> None:
        """One page of a paged search (RFC 2696), resuming where ``cookie`` says."""
        request, done, no_paging = job.request, answering.done, answering.no_paging
        fingerprint = job.asked()
        if cookie:
            state = self.paged.pop(cookie, None)
            if state is None or state.fingerprint != fingerprint:
                done(
                    rc.UNWILLING_TO_PERFORM,
                    "paged results cookie is unknown, expired, or belongs to another search",
                    controls=no_paging(),
                )
                return
        else:
            state = PagedSearch(fingerprint, None, Cursor())
        if page_size <= 0:
            done(rc.SUCCESS, controls=no_paging())  # size 0: the client abandons the search
            return

        def next_page(position: Position) -> tuple[Control, ...]:
            state.cursor = Cursor(position.source, position.after_id, position.returned)
            new_cookie = os.urandom(12)
            self.paged[new_cookie] = state
            while len(self.paged) > MAX_PAGED_SEARCHES:
                self.paged.popitem(last=False)
            value = codec.encode_paged_results_value(0, new_cookie)
            return (Control(rootdse.PAGED_RESULTS, False, value),)

        cache = self.ctx.results
        start = Position(state.cursor.source, state.cursor.after_id, state.cursor.returned)
        page_key = (job.asking.asker, fingerprint, page_size, request.size_limit, start)
        counter = await self._directory_counter() if cache is not None else None
        claimed = False
        if counter is not None:
            assert cache is not None
            may_keep = state.sent_bytes <= cache.max_answer_bytes
            answer, claimed = await _answer_or_claim(
                cache, page_key, counter, self.ctx.clock, may_keep
            )
            if answer is not None:
                state.sent_bytes += answer.size
                more = answer.next_page
                await self._replay(
                    answering, answer, no_paging() if more is None else next_page(more)
                )
                return
            if may_keep:
                answering.capture = cache.capture()
        try:
            if state.prepared is None:
                state.prepared = self._prepare(request, job.plan, job.viewer)
            max_entries = page_size
            if request.size_limit > 0:
                max_entries = min(page_size, request.size_limit - state.cursor.returned)
            stop = await self.ctx.engine.stream(
                state.prepared,
                state.cursor,
                max(max_entries, 0),
                answering.emit,
                answering.cancelled,
                job.deadline,
                self.flow.wait,
            )
            capture = answering.capture
            if capture is not None:
                state.sent_bytes += capture.size
            if stop is Stop.LIMIT and max_entries == page_size:
                cursor = state.cursor
                more = Position(cursor.source, cursor.after_id, cursor.returned)
                done(rc.SUCCESS, controls=next_page(more))
                _keep(cache, page_key, counter, answering, stop, next_page=more)
                return
            await self._finish_search(
                stop, state.cursor, job.plan.leaves, job.viewer, done, no_paging()
            )
            _keep(cache, page_key, counter, answering, stop)
        finally:
            if claimed:
                assert cache is not None and counter is not None
                cache.finished(page_key, counter)

    async def _directory_counter(self) -> int | None:
        """The directory change counter of the database searches read, now."""
        counters = await read_current(self.ctx.search_counters)
        return None if counters is None else counters.directory

    async def _replay(
        self, answering: _Answering, answer: CachedAnswer, controls: tuple[Control, ...]
    ) -> None:
        """Send a cached answer again, under this request's message ID, with the
        same back-pressure as a search read from the store."""
        op = answering.op
        op.cached = True
        entries = answer.entries
        position = 0
        while position < len(entries):
            if await held_up(self.flow.wait, answering.cancelled):
                return
            chunk = entries[position : position + REPLAY_CHUNK]
            position += len(chunk)
            op.entries += len(chunk)
            self._write(codec.wrap_search_entries(answering.mid, chunk))
        if answering.cancelled():
            return
        answering.done(answer.code, answer.message, answer.matched, controls=controls)

    def _prepare(self, request: SearchRequest, plan: Any, viewer: Viewer) -> PreparedSearch:
        selection = Selection.parse(request.attributes, self.ctx.schema, request.types_only)
        renderer = Renderer(self.ctx.dit, self.ctx.schema, selection, viewer.sees_state)
        return self.ctx.engine.prepare(plan, request.filter, renderer, viewer)

    async def _finish_search(
        self,
        stop: Stop,
        cursor: Cursor,
        leaves: tuple[StoredEntries, ...],
        viewer: Viewer,
        done: Callable[..., None],
        controls: tuple[Control, ...],
    ) -> None:
        if stop is Stop.CANCELLED:
            return
        if stop is Stop.TIME:
            done(rc.TIME_LIMIT_EXCEEDED, "time limit exceeded", controls=controls)
            return
        if stop is Stop.LIMIT:
            done(rc.SIZE_LIMIT_EXCEEDED, "size limit exceeded", controls=controls)
            return
        if cursor.returned == 0 and leaves:
            if not await self.ctx.engine.exists(leaves, viewer):
                done(
                    rc.NO_SUCH_OBJECT,
                    matched=self.ctx.dit.container_dn(leaves[0].kind),
                    controls=controls,
                )
                return
        done(rc.SUCCESS, controls=controls)

    def _root_dse_attributes(self) -> list[tuple[str, list[str]]]:
        starttls = self.ctx.tls_options is not None and not self.tls_active
        return rootdse.root_dse_attributes(self.ctx.dit.base_dn, starttls)

    def _special_entry(
        self,
        mid: int,
        request: SearchRequest,
        attrs: list[tuple[str, list[str]]],
        user_attrs: frozenset[str],
        dn: str = "",
    ) -> int:
        """Send the rootDSE or the subschema entry if the filter matches; 1 if sent."""
        if rootdse.matches(request.filter, attrs, self.ctx.schema):
            selected = rootdse.select_special(
                attrs, request.attributes, self.ctx.schema, request.types_only, user_attrs
            )
            self._write(codec.encode_search_entry(mid, dn, selected))
            return 1
        return 0

    # -- compare ------------------------------------------------------------------------

    async def _compare(self, message: LDAPMessage, op: Operation) -> None:
        request = message.request
        assert isinstance(request, CompareRequest)
        mid = message.message_id

        def answer(code: int, text: str = "", matched: str = "") -> None:
            if not op.abandoned:
                op.result_code = code
                self._write(codec.encode_compare_response(mid, LDAPResult(code, text, matched)))

        if self._tls_required(self.ctx.settings.require_tls_for_searches):
            answer(rc.CONFIDENTIALITY_REQUIRED, "reads need TLS: use StartTLS or LDAPS")
            return
        if self.ctx.schema.lookup(request.attr) is None:
            answer(rc.UNDEFINED_ATTRIBUTE_TYPE, f"unknown attribute {request.attr}")
            return
        try:
            dn = parse_dn(request.dn)
        except DNError as exc:
            answer(rc.INVALID_DN_SYNTAX, f"invalid DN: {exc}")
            return
        viewer = self._viewer()
        if not viewer.may_read_directory:
            answer(rc.NO_SUCH_OBJECT)
            return
        try:
            plan = self.ctx.dit.plan(dn, SCOPE_BASE)
        except NoSuchBase as missing:
            answer(rc.NO_SUCH_OBJECT, matched=missing.matched_dn)
            return
        assertion: Filter = Equality(request.attr, request.value)
        renderer = Renderer(
            self.ctx.dit, self.ctx.schema, Selection.parse(["1.1"], self.ctx.schema)
        )
        prepared = self.ctx.engine.prepare(plan, assertion, renderer, viewer)
        found: list[Entry] = []
        cursor = Cursor()
        await self.ctx.engine.stream(prepared, cursor, 1, found.append, lambda: op.abandoned, None)
        if found:
            answer(rc.COMPARE_TRUE)
        elif plan.leaves and not await self.ctx.engine.exists(plan.leaves, viewer):
            answer(rc.NO_SUCH_OBJECT, matched=self.ctx.dit.container_dn(plan.leaves[0].kind))
        else:
            answer(rc.COMPARE_FALSE)

    # -- extended operations ------------------------------------------------------------

    async def _extended(self, message: LDAPMessage, op: Operation) -> None:
        request = message.request
        assert isinstance(request, ExtendedRequest)
        mid = message.message_id
        if request.name == rootdse.START_TLS:
            self._start_tls(mid, op)
        elif request.name == rootdse.WHO_AM_I:
            value = b"" if self.identity is None else f"dn:{self.identity.dn}".encode()
            op.result_code = rc.SUCCESS
            self._write(codec.encode_extended_response(mid, LDAPResult(rc.SUCCESS), value=value))
        elif request.name == rootdse.PASSWORD_MODIFY:
            await self._password_modify(mid, request, op)
        else:
            op.result_code = rc.PROTOCOL_ERROR
            self._write(
                codec.encode_extended_response(
                    mid,
                    LDAPResult(rc.PROTOCOL_ERROR, f"unsupported extended operation {request.name}"),
                )
            )

    def _start_tls(self, mid: int, op: Operation) -> None:
        def answer(code: int, text: str = "") -> None:
            op.result_code = code
            self._write(
                codec.encode_extended_response(mid, LDAPResult(code, text), name=rootdse.START_TLS)
            )

        if self.tls_active:
            answer(rc.OPERATIONS_ERROR, "TLS is already active on this connection")
            return
        if self.ctx.tls_options is None:
            answer(rc.UNAVAILABLE, "TLS is not configured on this server")
            return
        if len(self.operations) > 1:
            answer(rc.OPERATIONS_ERROR, "other operations are outstanding")
            return
        answer(rc.SUCCESS)
        self._tx.startTLS(self.ctx.tls_options)
        self.tls_active = True

    async def _password_modify(self, mid: int, request: ExtendedRequest, op: Operation) -> None:
        def answer(code: int, text: str = "", value: bytes | None = None) -> None:
            if not op.abandoned:
                op.result_code = code
                self._write(
                    codec.encode_extended_response(mid, LDAPResult(code, text), value=value)
                )

        try:
            identity, old, new = codec.decode_password_modify_value(request.value)
        except ValueError:
            answer(rc.PROTOCOL_ERROR, "malformed password modify request value")
            return
        if self.identity is None:
            answer(
                rc.UNWILLING_TO_PERFORM, "bind first: only a bound account can change its password"
            )
            return
        if identity and not self._names_self(identity):
            await self._reset_password(mid, identity, new, answer)
            return
        if not old:
            answer(
                rc.UNWILLING_TO_PERFORM,
                "the current password is required (ldappasswd -a OLD or -A)",
            )
            return
        generated = None
        if not new:
            generated = generate_password().encode()
            new = generated
        try:
            await self.ctx.run_blocking(
                self.ctx.authenticator.change_password, self.identity.name, old, new
            )
        except WrongPassword as exc:
            log.info("password change refused for %s from %s: %s", self.identity.dn, self.peer, exc)
            answer(rc.INVALID_CREDENTIALS, str(exc))
            return
        except PasswordRejected as exc:
            answer(rc.CONSTRAINT_VIOLATION, str(exc))
            return
        except ServiceAccountHasNoPassword as exc:
            answer(rc.UNWILLING_TO_PERFORM, str(exc))
            return
        log.info("password changed by %s from %s", self.identity.dn, self.peer)
        answer(rc.SUCCESS, value=codec.encode_password_modify_response_value(generated))

    async def _reset_password(
        self, mid: int, identity: str, new: bytes | None, answer: Callable[..., None]
    ) -> None:
        """Password Modify naming another person: an admin reset (reset_password)."""
        assert self.identity is not None
        target = self._target_name(identity)
        if target is None:
            answer(rc.NO_SUCH_OBJECT, "userIdentity does not name a person in this directory")
            return
        generated = None
        if not new:
            generated = generate_password().encode()
            new = generated
        try:
            name = await self.ctx.run_blocking(
                self.ctx.authenticator.reset_password, self.identity.name, target, new
            )
        except NotPermitted as exc:
            log.info("password reset of %r by %s refused: %s", target, self.identity.dn, exc)
            answer(rc.INSUFFICIENT_ACCESS_RIGHTS, str(exc))
            return
        except (ServiceAccountHasNoPassword, PasswordRejected) as exc:
            code = rc.UNWILLING_TO_PERFORM
            answer(
                code if isinstance(exc, ServiceAccountHasNoPassword) else rc.CONSTRAINT_VIOLATION,
                str(exc),
            )
            return
        except NotFound as exc:
            answer(rc.NO_SUCH_OBJECT, str(exc))
            return
        log.info("password of %s reset by %s from %s", name, self.identity.dn, self.peer)
        answer(rc.SUCCESS, value=codec.encode_password_modify_response_value(generated))

    def _target_name(self, identity: str) -> str | None:
        text = identity
        if text.lower().startswith("u:"):
            return text[2:] or None
        if text.lower().startswith("dn:"):
            text = text[3:]
        return self.ctx.dit.parse_entry_name(text, Kind.USER)

    def _names_self(self, identity: str) -> bool:
        assert self.identity is not None
        text = identity
        if text.lower().startswith("dn:"):
            text = text[3:]
        elif text.lower().startswith("u:"):
            return text[2:].lower() == self.identity.name.lower()
        name = self.ctx.dit.parse_entry_name(text, Kind.USER)
        return name is not None and name.lower() == self.identity.name.lower()


async def _answer_or_claim(
    cache: SearchResultCache, key: Hashable, counter: int, clock: Any | None, may_keep: bool
) -> tuple[CachedAnswer | None, bool]:
    """The kept answer, possibly after waiting for whoever is computing it; else
    None, and whether this caller claimed the computing (it must call
    ``cache.finished`` then). A waiter gives up after ``CLAIM_WAIT`` seconds and
    computes the answer itself: the one computing it may be sending to a client
    that does not read, and must not hold everyone else up."""
    answer = cache.get(key, counter)
    if answer is not None or not may_keep:
        return answer, False
    waiting = cache.claim(key, counter)
    if waiting is None:
        return None, True
    if clock is not None:
        waiting.addTimeout(CLAIM_WAIT, clock)
    try:
        await waiting
    except defer.TimeoutError:
        return None, False
    return cache.get(key, counter), False


def _whole_key(
    asking: _Asking, body: bytes, asked: Callable[[], tuple[object, ...]], size_limit: int | None
) -> Hashable:
    """The cache key of a search without paging. Its request as received stands
    for base, scope, filter, attributes, typesOnly and its own size limit (hashing
    bytes is cheaper than hashing a decoded filter, and a repeated search is
    recognised before it is decoded); only requests built without their bytes
    need the decoded form and the effective limit."""
    if body:
        return _bytes_key(asking, body)
    return (asking.asker, asked(), size_limit)


def _bytes_key(asking: _Asking, body: bytes) -> Hashable:
    """The cache key of a search without paging known by its request's bytes (the
    request carries its own size limit; the account's is added)."""
    return (asking.asker, body, asking.size_limit)


def _keep(
    cache: SearchResultCache | None,
    key: Hashable,
    counter: int | None,
    answering: _Answering,
    stop: Stop,
    next_page: Position | None = None,
) -> None:
    """Keep a finished search's answer (or page: ``next_page`` is where the next
    one starts) if it would be the same again while nothing changes: it ran to
    its end or its size limit and the store answered."""
    capture, sent = answering.capture, answering.sent
    if cache is None or counter is None or capture is None or capture.entries is None:
        return
    if stop not in (Stop.DONE, Stop.LIMIT) or not sent or sent[-1][0] not in _REPEATABLE_CODES:
        return
    code, text, matched = sent[-1]
    answer = CachedAnswer(tuple(capture.entries), code, text, matched, next_page, capture.size)
    cache.put(key, counter, capture, answer)


def _is_loopback(host: str | None) -> bool:
    if host is None:
        return False
    return _loopback_hosts(host)


def _read_loopback(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


_loopback_hosts: Memo[str, bool] = Memo(_read_loopback)


class LDAPServerFactory(protocol.ServerFactory):
    noisy = False  # one log line per listener is enough; connections are logged on bind

    def __init__(self, ctx: ServerContext, tls_active: bool = False) -> None:
        self.ctx = ctx
        self.tls_active = tls_active

    def buildProtocol(self, addr: IAddress | None) -> LDAPConnection:
        conn = LDAPConnection(self.ctx, self.tls_active)
        conn.factory = self
        return conn
