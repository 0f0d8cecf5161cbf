"""The one place that wires every layer together: ``make_service(config, reactor)``.

Start-up work that may fail (schema check, TLS material, ports) happens here
and raises ``StartupError`` with a message an admin can act on.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from enum import Enum
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine
from twisted.application import internet, service
from twisted.internet import ssl
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.protocols.tls import TLSMemoryBIOFactory

from ldapsrv.admin.commands import build_registry
from ldapsrv.admin.context import AdminContext
from ldapsrv.admin.server import ControlSocketService
from ldapsrv.api.auth import ApiAuthenticator
from ldapsrv.api.limits import RateLimiter
from ldapsrv.api.resource import ManagementApi, make_site
from ldapsrv.auth.binding import PasswordAuthenticator, utcnow
from ldapsrv.auth.internal import ensure_health_account
from ldapsrv.auth.rotation import RotationHook, Rotator
from ldapsrv.auth.throttle import BindThrottle, ThrottlePolicy
from ldapsrv.auth.tokens import TokenVerifier
from ldapsrv.auth.vault import TokenVault, VaultError
from ldapsrv.blocking import Blocking
from ldapsrv.caching.binds import BindCache
from ldapsrv.caching.counters import counter_source
from ldapsrv.caching.search_results import SearchResultCache
from ldapsrv.config import Config
from ldapsrv.directory.dit import Dit
from ldapsrv.directory.schema import load_schema
from ldapsrv.errors import SchemaOutdated, StoreUnavailable
from ldapsrv.ldap.limits import ConnectionLimits, IdentityLimits
from ldapsrv.ldap.search import SearchEngine
from ldapsrv.ldap.server import LDAPServerFactory, ServerContext, ServerSettings
from ldapsrv.observability.accesslog import AccessLog
from ldapsrv.observability.expiry import ExpiryService, check_expiries
from ldapsrv.observability.monitor import (
    ConnectionCount,
    ServerMonitor,
    WorkerSource,
    database_checker,
)
from ldapsrv.observability.records import Observer, Observers
from ldapsrv.reloading import ReloadableTLS
from ldapsrv.scheduling import RotationService
from ldapsrv.store.directory import SqlDirectory
from ldapsrv.store.engine import backend_name, make_engine
from ldapsrv.store.keyed import one_name_lookup
from ldapsrv.store.schema_version import check_schema
from ldapsrv.tls import (
    CertificateError,
    ensure_dev_certificate,
    load_server_context,
    served_certificate_path,
)

if TYPE_CHECKING:
    from ldapsrv.observability.metrics import Metrics

log = logging.getLogger("ldapsrv.service")


class StartupError(Exception):
    """The server cannot start; the message says why and what to do."""


def tls_options(config: Config) -> ssl.CertificateOptions:
    try:
        if config.tls_cert is not None and config.tls_key is not None:
            return load_server_context(config.tls_cert, config.tls_key)
        dev = ensure_dev_certificate(config.data_dir)
    except CertificateError as exc:
        raise StartupError(str(exc)) from exc
    log.warning(
        "no tls.cert configured: using the development certificate %s "
        "(clients must trust the CA %s)",
        dev.cert_path,
        dev.ca_path,
    )
    return load_server_context(dev.cert_path, dev.key_path)


def throttle_policy(config: Config) -> ThrottlePolicy:
    return ThrottlePolicy(
        free_failures=config.throttle_free_failures,
        base_delay=config.throttle_base_delay,
        max_delay=config.throttle_max_delay,
        window=timedelta(seconds=config.throttle_window),
        address_lockout_failures=config.throttle_address_lockout_failures,
        pair_lockout_failures=config.throttle_pair_lockout_failures,
        lockout=timedelta(seconds=config.throttle_lockout),
    )


def open_directory(config: Config, engine: Engine) -> SqlDirectory:
    """The store as the configuration shapes it (id ranges, defaults for new people)."""
    return SqlDirectory(
        engine,
        uid_range=config.uid_range,
        gid_range=config.gid_range,
        default_primary_group=config.default_primary_group,
        home_template=config.home_template,
        default_shell=config.default_shell,
    )


def _search_reader(config: Config, primary: SqlDirectory) -> SqlDirectory:
    """Where searches read: the read replica when one is configured, else the primary.
    Binds, token checks, throttling, rotation, the control socket and every write stay
    on the primary (``directory``), so a lagging replica never lets a revoked token in."""
    if config.database_replica_url is None:
        return primary
    engine = make_engine(config.database_replica_url, pool_size=config.database_pool_size)
    try:
        check_schema(engine)
    except SchemaOutdated as exc:
        raise StartupError(f"read replica: {exc}") from exc
    except StoreUnavailable as exc:
        raise StartupError(f"cannot reach the read replica: {exc}") from exc
    return open_directory(config, engine)


def _metrics(config: Config) -> Metrics | None:
    """The collectors when ``metrics.enabled``, else None. prometheus_client is
    imported only then (see ``observability/multiproc.py`` for why that matters)."""
    if not config.metrics_enabled:
        return None
    from ldapsrv.observability.metrics import Metrics

    return Metrics()


class Role(Enum):
    """What one process does: everything, the singletons and its workers, or LDAP only."""

    SINGLE = "single"  # [server] workers = 1: one process serves everything
    SUPERVISOR = "supervisor"  # binds the ports, runs control socket + rotation, starts workers
    WORKER = "worker"  # serves LDAP on ports inherited from the supervisor


def server_settings(config: Config) -> ServerSettings:
    """The LDAP connection settings; rebuilt from the file on SIGHUP."""
    return ServerSettings(
        max_pdu_bytes=config.max_pdu_bytes,
        max_filter_depth=config.max_filter_depth,
        size_limit=config.size_limit,
        time_limit=config.time_limit,
        anonymous_read=config.anonymous_read,
        require_tls_for_binds=config.require_tls_for_binds,
        require_tls_for_searches=config.require_tls_for_searches,
        connections=ConnectionLimits(
            max_connections=config.max_connections,
            max_connections_per_address=config.max_connections_per_address,
            per_address_exempt=config.per_address_exempt,
            max_outstanding_operations=config.max_outstanding_operations,
            idle_timeout=config.idle_timeout,
            pdu_timeout=config.pdu_timeout,
        ),
        identity_limits=IdentityLimits.of(config.identity_limits),
    )


class DrainService(service.Service):
    """Stopping it lets open connections finish their operations (SIGTERM)."""

    def __init__(self, reactor: Any, ctx: ServerContext, grace: Callable[[], float]) -> None:
        self.reactor = reactor
        self.ctx = ctx
        self.grace = grace

    def stopService(self) -> Deferred[None]:
        super().stopService()  # type: ignore[no-untyped-call]
        return self.ctx.connections.shutdown(self.reactor, self.grace())


class AdoptedPort(service.Service):
    """A listening socket inherited from the supervisor (a worker's LDAP port)."""

    def __init__(self, reactor: Any, fd: int, factory: Any) -> None:
        self.reactor = reactor
        self.fd = fd
        self.factory = factory
        self.port: Any = None

    def startService(self) -> None:
        sock = socket.socket(fileno=self.fd)
        try:
            self.port = self.reactor.adoptStreamPort(sock.fileno(), sock.family, self.factory)
        finally:
            sock.close()  # the port holds its own duplicate
        super().startService()  # type: ignore[no-untyped-call]

    def stopService(self) -> Deferred[None] | None:
        super().stopService()  # type: ignore[no-untyped-call]
        port, self.port = self.port, None
        return port.stopListening() if port is not None else None


@dataclass(slots=True)
class Built:
    service: Any  # a twisted MultiService (Twisted's service API is untyped)
    directory: SqlDirectory
    blocking: Blocking
    tls: ReloadableTLS
    ctx: ServerContext | None  # None in the supervisor, which serves no LDAP
    connections: ConnectionCount  # this process's (a worker reports it to its supervisor)

    def reload(self, config: Config) -> None:
        """Apply the reloadable settings of ``config`` (see ldapsrv.reloading)."""
        try:
            self.tls.replace(tls_options(config))
        except StartupError as exc:
            log.error("SIGHUP: keeping the current TLS certificate: %s", exc)
        else:
            log.info("SIGHUP: TLS certificate (re)loaded for new connections")
        if self.ctx is not None:
            self.ctx.settings = server_settings(config)
        log.info("SIGHUP: limits, access switches and log level reloaded")


def make_service(
    config: Config,
    reactor: Any,
    role: Role = Role.SINGLE,
    inherited: Mapping[str, int] | None = None,
    workers: WorkerSource | None = None,
) -> Built:
    """Everything one process runs. ``inherited`` (workers): listener name
    ("ldap", "ldaps") -> file descriptor of the supervisor's listening socket.
    ``workers`` (supervisor): what ``ldapsrv status`` reports about them."""
    config.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(config.database_url, pool_size=config.database_pool_size)
    try:
        check_schema(engine)
    except SchemaOutdated as exc:
        raise StartupError(str(exc)) from exc
    except StoreUnavailable as exc:
        raise StartupError(f"cannot reach the database: {exc}") from exc
    directory = open_directory(config, engine)
    blocking = Blocking(reactor, config.worker_threads)
    throttle = (
        BindThrottle(directory, throttle_policy(config), utcnow)
        if config.throttle_enabled
        else None
    )
    options = ReloadableTLS(tls_options(config))
    verifier = TokenVerifier(config.token_bcrypt_cost)
    metrics = _metrics(config)
    if metrics is not None:
        metrics.watch_engine(engine)
    connections = ConnectionCount()
    top: Any = service.MultiService()  # type: ignore[no-untyped-call]
    ctx = None
    if role is not Role.SUPERVISOR:
        observers: list[Observer] = [connections]
        if config.access_log:
            observers.append(AccessLog())
        if metrics is not None:
            observers.append(metrics)
        ctx = _ldap_context(
            config,
            reactor,
            directory,
            _search_reader(config, directory),
            blocking,
            throttle,
            options,
            verifier,
            Observers(*observers),
        )
        _listeners(config, reactor, ctx, options, inherited).setServiceParent(top)
    if role is not Role.WORKER:
        singles = _Singles(engine, metrics, connections, verifier, options, role, workers)
        _singletons(config, reactor, directory, blocking, throttle, singles).setServiceParent(top)
    return Built(top, directory, blocking, options, ctx, connections)


@dataclass(frozen=True, slots=True)
class _Singles:
    """What the singletons share with the LDAP side of the process: the engine,
    the collectors (None when metrics are off), this process's connection count,
    the token verifier (its cache) and the reloadable TLS options; for status,
    the role and (supervisor) the workers."""

    engine: Any  # sqlalchemy.Engine
    metrics: Metrics | None
    connections: ConnectionCount
    verifier: TokenVerifier
    tls: ReloadableTLS
    role: Role
    workers: WorkerSource | None


def _ldap_context(
    config: Config,
    reactor: Any,
    directory: SqlDirectory,
    search_reader: SqlDirectory,
    blocking: Blocking,
    throttle: BindThrottle | None,
    options: ReloadableTLS,
    verifier: TokenVerifier,
    observer: Observer,
) -> ServerContext:
    schema = load_schema()
    dit = Dit(config.base_dn)
    bind_counters = counter_source(directory.engine, blocking.run)
    search_counters = (
        bind_counters
        if search_reader is directory
        else counter_source(search_reader.engine, blocking.run)
    )
    results = None
    if config.cache_search_results_mib > 0:
        results = SearchResultCache(config.cache_search_results_mib * 2**20)
    binds = BindCache(config.cache_token_binds) if config.cache_token_binds > 0 else None
    reactor.addSystemEventTrigger("after", "shutdown", bind_counters.close)
    reactor.addSystemEventTrigger("after", "shutdown", search_counters.close)
    return ServerContext(
        settings=server_settings(config),
        dit=dit,
        schema=schema,
        engine=SearchEngine(
            dit,
            schema,
            search_reader,
            blocking,
            config.search_batch_size,
            quick=one_name_lookup if backend_name(search_reader.engine) == "sqlite" else None,
        ),
        authenticator=PasswordAuthenticator(
            directory,
            config.bcrypt_cost,
            tokens=directory,
            verifier=verifier,
            clock=utcnow,
            permissions=directory,
            audit=directory,
            throttle=throttle,
        ),
        tls_options=options,
        run_blocking=blocking.run,
        sleep=lambda seconds: deferLater(reactor, seconds),
        observer=observer,
        clock=reactor,
        results=results,
        search_counters=search_counters,
        binds=binds,
        bind_counters=bind_counters,
    )


def _listeners(
    config: Config,
    reactor: Any,
    ctx: ServerContext,
    options: ReloadableTLS,
    inherited: Mapping[str, int] | None,
) -> Any:
    """The LDAP and LDAPS ports (bound here, or adopted from the supervisor), and
    the drain that lets their connections finish at shutdown."""
    group: Any = service.MultiService()  # type: ignore[no-untyped-call]
    plain_factory = LDAPServerFactory(ctx)
    secure_factory = LDAPServerFactory(ctx, tls_active=True)
    if inherited is not None:
        adopted: list[Any] = []
        if "ldap" in inherited:
            adopted.append(AdoptedPort(reactor, inherited["ldap"], plain_factory))
        if "ldaps" in inherited:
            wrapped = TLSMemoryBIOFactory(options, False, secure_factory)  # type: ignore[arg-type]
            adopted.append(AdoptedPort(reactor, inherited["ldaps"], wrapped))
        for port in adopted:
            port.setServiceParent(group)
    else:
        if config.listen is not None:
            plain: Any = internet.TCPServer(  # type: ignore[no-untyped-call]
                config.listen.port, plain_factory, interface=config.listen.host
            )
            plain.setServiceParent(group)
        if config.ldaps_listen is not None:
            secure: Any = internet.SSLServer(  # type: ignore[no-untyped-call]
                config.ldaps_listen.port,
                secure_factory,
                options,
                interface=config.ldaps_listen.host,
            )
            secure.setServiceParent(group)
    drain: Any = DrainService(reactor, ctx, lambda: config.shutdown_grace)
    drain.setServiceParent(group)
    return group


def _singletons(
    config: Config,
    reactor: Any,
    directory: SqlDirectory,
    blocking: Blocking,
    throttle: BindThrottle | None,
    singles: _Singles,
) -> Any:
    """What exactly one process per server runs: token rotation, expiry warnings,
    the metrics endpoint, the control socket."""
    metrics = singles.metrics
    try:
        vault = TokenVault.load_or_create(config.token_key_file)
    except VaultError as exc:
        raise StartupError(str(exc)) from exc
    try:
        ensure_health_account(directory, vault, config.token_bcrypt_cost, utcnow())
    except StoreUnavailable as exc:
        raise StartupError(f"cannot reach the database: {exc}") from exc
    hook = (
        RotationHook(config.rotation_hook, config.rotation_hook_timeout)
        if config.rotation_hook
        else None
    )
    # Without viewable copies a rotated value is shown once (to the admin or the hook).
    rotator = Rotator(
        directory,
        config.token_bcrypt_cost,
        vault if config.tokens_viewable else None,
        utcnow,
        hook,
        on_rotated=metrics.token_rotated if metrics is not None else lambda trigger: None,
    )
    group: Any = service.MultiService()  # type: ignore[no-untyped-call]
    rotation: Any = RotationService(
        reactor, blocking, rotator, directory, config.rotation_check_interval, utcnow
    )
    rotation.setServiceParent(group)
    cert_path = served_certificate_path(config.tls_cert, config.data_dir)
    expiry_checked = metrics.expiry_checked if metrics is not None else lambda report: None
    expiry: Any = ExpiryService(
        reactor,
        blocking,
        lambda: check_expiries(
            cert_path, directory, utcnow(), timedelta(days=config.expiry_warning_days)
        ),
        config.expiry_check_interval,
        on_report=expiry_checked,
    )
    expiry.setServiceParent(group)
    metrics_url = None
    if metrics is not None and config.metrics_listen is not None:
        from ldapsrv.observability.metrics import metrics_service

        endpoint: Any = metrics_service(config.metrics_listen, metrics)
        endpoint.setServiceParent(group)
        metrics_url = f"http://{config.metrics_listen}/metrics"
    admin = AdminContext(
        directory=directory,
        blocking=blocking,
        config=config,
        tokens=directory,
        service_accounts=directory,
        rotator=rotator,
        vault=vault,  # always: the health token keeps an encrypted copy
        clock=utcnow,
        tokens_changed=rotation.tokens_changed,
        permissions=directory,
        audit_log=directory,
        throttle=throttle,
        started_at=utcnow(),
        monitor=ServerMonitor(
            singles.connections,
            database_checker(singles.engine),
            metrics_url=metrics_url,
            expiry_checked=expiry_checked,
            role=singles.role.value,
            workers=singles.workers,
        ),
    )
    control: Any = ControlSocketService(
        reactor, config.control_socket, config.control_socket_mode, admin
    )
    control.setServiceParent(group)
    if config.api_enabled:
        _management_api(config, reactor, admin, directory, throttle, singles).setServiceParent(
            group
        )
    return group


def _management_api(
    config: Config,
    reactor: Any,
    admin: AdminContext,
    directory: SqlDirectory,
    throttle: BindThrottle | None,
    singles: _Singles,
) -> Any:
    """The HTTPS management API: the control socket's registry for api tokens."""
    assert config.api_listen is not None, "load_config requires api.listen when enabled"
    api = ManagementApi(
        build_registry(),
        admin,
        ApiAuthenticator(directory, directory, singles.verifier, utcnow, throttle),
        address_limit=RateLimiter(config.api_rate_limit, reactor.seconds),
        account_limit=RateLimiter(config.api_account_rate_limit, reactor.seconds),
        sleep=lambda seconds: deferLater(reactor, seconds),
    )
    https: Any = internet.SSLServer(  # type: ignore[no-untyped-call]
        config.api_listen.port,
        make_site(api, config.api_max_body_bytes),
        singles.tls,
        interface=config.api_listen.host,
    )
    log.info("management API on https://%s/api/v1/", config.api_listen)
    return https
