"""The one place that wires every layer together: ``make_service(config, reactor)``.

Start-up work that may fail (schema check, TLS material, ports) happens here
and raises ``StartupError`` with a message an admin can act on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine
from twisted.application import internet, service
from twisted.internet import ssl
from twisted.internet.task import deferLater

from ldapsrv.admin.context import AdminContext
from ldapsrv.admin.server import ControlSocketService
from ldapsrv.auth.binding import PasswordAuthenticator, utcnow
from ldapsrv.auth.internal import ensure_health_account
from ldapsrv.auth.rotation import RotationHook, Rotator
from ldapsrv.auth.throttle import BindThrottle, ThrottlePolicy
from ldapsrv.auth.tokens import TokenVerifier
from ldapsrv.auth.vault import TokenVault, VaultError
from ldapsrv.blocking import Blocking
from ldapsrv.config import Config
from ldapsrv.directory.dit import Dit
from ldapsrv.directory.schema import load_schema
from ldapsrv.errors import SchemaOutdated, StoreUnavailable
from ldapsrv.ldap.search import SearchEngine
from ldapsrv.ldap.server import LDAPServerFactory, ServerContext, ServerSettings
from ldapsrv.scheduling import RotationService
from ldapsrv.store.directory import SqlDirectory
from ldapsrv.store.engine import make_engine
from ldapsrv.store.schema_version import check_schema
from ldapsrv.tls import CertificateError, ensure_dev_certificate, load_server_context

log = logging.getLogger("ldapsrv.service")


class StartupError(Exception):
    """The server cannot start; the message says why and what to do."""


@dataclass(slots=True)
class Built:
    service: Any  # a twisted MultiService (Twisted's service API is untyped)
    directory: SqlDirectory
    blocking: Blocking


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


def _directory(config: Config, engine: Engine) -> SqlDirectory:
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
    return _directory(config, engine)


def make_service(config: Config, reactor: Any) -> Built:
    config.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(config.database_url, pool_size=config.database_pool_size)
    try:
        check_schema(engine)
    except SchemaOutdated as exc:
        raise StartupError(str(exc)) from exc
    except StoreUnavailable as exc:
        raise StartupError(f"cannot reach the database: {exc}") from exc
    directory = _directory(config, engine)
    blocking = Blocking(reactor, config.worker_threads)
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
    )
    throttle = (
        BindThrottle(directory, throttle_policy(config), utcnow)
        if config.throttle_enabled
        else None
    )
    schema = load_schema()
    dit = Dit(config.base_dn)
    search_reader = _search_reader(config, directory)
    options = tls_options(config)
    ctx = ServerContext(
        settings=ServerSettings(
            max_pdu_bytes=config.max_pdu_bytes,
            max_filter_depth=config.max_filter_depth,
            size_limit=config.size_limit,
            time_limit=config.time_limit,
            anonymous_read=config.anonymous_read,
            require_tls_for_binds=config.require_tls_for_binds,
            require_tls_for_searches=config.require_tls_for_searches,
        ),
        dit=dit,
        schema=schema,
        engine=SearchEngine(dit, schema, search_reader, blocking, config.search_batch_size),
        authenticator=PasswordAuthenticator(
            directory,
            config.bcrypt_cost,
            tokens=directory,
            verifier=TokenVerifier(config.token_bcrypt_cost),
            clock=utcnow,
            permissions=directory,
            audit=directory,
            throttle=throttle,
        ),
        tls_options=options,
        run_blocking=blocking.run,
        sleep=lambda seconds: deferLater(reactor, seconds),
    )
    top: Any = service.MultiService()  # type: ignore[no-untyped-call]
    if config.listen is not None:
        plain: Any = internet.TCPServer(  # type: ignore[no-untyped-call]
            config.listen.port, LDAPServerFactory(ctx), interface=config.listen.host
        )
        plain.setServiceParent(top)
    if config.ldaps_listen is not None:
        secure: Any = internet.SSLServer(  # type: ignore[no-untyped-call]
            config.ldaps_listen.port,
            LDAPServerFactory(ctx, tls_active=True),
            options,
            interface=config.ldaps_listen.host,
        )
        secure.setServiceParent(top)
    rotation: Any = RotationService(
        reactor, blocking, rotator, directory, config.rotation_check_interval, utcnow
    )
    rotation.setServiceParent(top)
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
    )
    control: Any = ControlSocketService(
        reactor, config.control_socket, config.control_socket_mode, admin
    )
    control.setServiceParent(top)
    return Built(top, directory, blocking)
