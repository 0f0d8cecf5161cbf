"""Settings: TOML file + environment + command-line overrides -> one frozen value.

Every key is declared once in ``_SPEC`` with its type and rule, so an unknown
key or a bad value stops start-up with an error naming the key path and what is
allowed. Any setting can come from the environment as ``LDAPSRV_<SECTION>_<KEY>``
(meant for secrets such as a database URL with a password); command-line flags
win over both.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ldapsrv.directory.dn import DNError, parse_dn
from ldapsrv.ldap.limits import Network, SearchLimit, parse_networks


class ConfigError(Exception):
    """A setting is missing, unknown or invalid; the message names its key path."""


@dataclass(frozen=True, slots=True)
class HostPort:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Config:
    # [server]
    listen: HostPort | None
    ldaps_listen: HostPort | None
    base_dn: str
    data_dir: Path
    control_socket: Path
    control_socket_mode: int
    worker_threads: int
    workers: int
    shutdown_grace: float
    # [tls]
    tls_cert: Path | None
    tls_key: Path | None
    # [database]
    database_url: str
    database_pool_size: int
    database_replica_url: str | None
    # [limits]
    max_pdu_bytes: int
    max_filter_depth: int
    size_limit: int
    time_limit: int
    search_batch_size: int
    max_connections: int
    max_connections_per_address: int
    per_address_exempt: tuple[Network, ...]
    max_outstanding_operations: int
    idle_timeout: float
    pdu_timeout: float
    identity_limits: dict[str, SearchLimit]
    # [accounts]
    uid_range: tuple[int, int]
    gid_range: tuple[int, int]
    default_primary_group: str
    home_template: str
    default_shell: str
    # [security]
    bcrypt_cost: int
    anonymous_read: bool
    require_tls_for_binds: str
    require_tls_for_searches: str
    # [tokens]
    token_bcrypt_cost: int
    tokens_viewable: bool
    token_key_file: Path
    rotation_hook: tuple[str, ...]
    rotation_hook_timeout: int
    rotation_check_interval: int
    # [throttle]
    throttle_enabled: bool
    throttle_free_failures: int
    throttle_base_delay: float
    throttle_max_delay: float
    throttle_window: int
    throttle_address_lockout_failures: int
    throttle_pair_lockout_failures: int
    throttle_lockout: int
    # [api]
    api_enabled: bool
    api_listen: HostPort | None
    api_max_body_bytes: int
    api_rate_limit: int
    api_account_rate_limit: int
    # [logging]
    log_level: str
    log_format: str = "text"
    access_log: bool = True
    # [metrics]
    metrics_enabled: bool = False
    metrics_listen: HostPort | None = None
    # [monitoring]
    expiry_warning_days: int = 14
    expiry_check_interval: int = 86400
    # [cache]
    cache_search_results_mib: int = 32
    cache_token_binds: int = 10_000


def _host_port(key: str, raw: object) -> HostPort | None:
    if not isinstance(raw, str):
        raise ConfigError(f"{key}: expected a string HOST:PORT, got {raw!r}")
    if raw == "":
        return None
    host, sep, port_text = raw.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigError(
            f'{key}: expected HOST:PORT with a port 1-65535 (e.g. "127.0.0.1:3389"), '
            f'or "" to disable, got {raw!r}'
        )
    return HostPort(host, int(port_text))


def _int_in(low: int, high: int) -> Callable[[str, object], int]:
    def check(key: str, raw: object) -> int:
        if isinstance(raw, str) and raw.strip().lstrip("-").isdigit():
            raw = int(raw)
        if isinstance(raw, bool) or not isinstance(raw, int) or not low <= raw <= high:
            raise ConfigError(f"{key}: expected an integer from {low} to {high}, got {raw!r}")
        return raw

    return check


def _seconds(low: float, high: float) -> Callable[[str, object], float]:
    def check(key: str, raw: object) -> float:
        try:
            value = float(raw) if isinstance(raw, int | float | str) and raw != "" else None
        except ValueError:
            value = None
        if isinstance(raw, bool) or value is None or not low <= value <= high:
            raise ConfigError(
                f"{key}: expected a number of seconds from {low:g} to {high:g}, got {raw!r}"
            )
        return value

    return check


def _bool(key: str, raw: object) -> bool:
    if isinstance(raw, str) and raw.lower() in {"true", "false", "1", "0", "yes", "no"}:
        return raw.lower() in {"true", "1", "yes"}
    if not isinstance(raw, bool):
        raise ConfigError(f"{key}: expected true or false, got {raw!r}")
    return raw


def _string(key: str, raw: object) -> str:
    if not isinstance(raw, str):
        raise ConfigError(f"{key}: expected a string, got {raw!r}")
    return raw


def _nonempty(key: str, raw: object) -> str:
    text = _string(key, raw)
    if not text:
        raise ConfigError(f"{key}: must not be empty")
    return text


def _path_or_none(key: str, raw: object) -> Path | None:
    text = _string(key, raw)
    return Path(text) if text else None


def _database_url_or_none(key: str, raw: object) -> str | None:
    text = _string(key, raw).strip()
    if not text:
        return None
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        backend = make_url(text).get_backend_name()
    except ArgumentError:
        backend = ""
    if backend not in ("sqlite", "postgresql", "mysql", "mariadb"):
        raise ConfigError(
            f"{key}: expected a database URL such as "
            '"postgresql+psycopg2://ldapsrv@replica.example/ldapsrv", or "" for none'
        )
    return text


def _range(key: str, raw: object) -> tuple[int, int]:
    text = _string(key, raw)
    low, sep, high = text.partition("-")
    if not sep or not low.strip().isdigit() or not high.strip().isdigit():
        raise ConfigError(f'{key}: expected a range "LOW-HIGH" such as "10000-59999", got {raw!r}')
    lo, hi = int(low), int(high)
    if not 1 <= lo <= hi <= 2**31 - 1:
        raise ConfigError(f"{key}: expected 1 <= LOW <= HIGH <= 2147483647, got {raw!r}")
    return lo, hi


def _base_dn(key: str, raw: object) -> str:
    text = _nonempty(key, raw)
    try:
        parse_dn(text)
    except DNError as exc:
        raise ConfigError(f"{key}: not a valid DN ({exc}): {raw!r}") from exc
    return text


def _mode(key: str, raw: object) -> int:
    text = _string(key, raw)
    try:
        mode = int(text, 8)
    except ValueError:
        mode = -1
    if not 0 <= mode <= 0o777:
        raise ConfigError(f'{key}: expected an octal file mode such as "0600", got {raw!r}')
    return mode


def _command(key: str, raw: object) -> tuple[str, ...]:
    if isinstance(raw, str):
        import shlex

        raw = shlex.split(raw)
    if not isinstance(raw, list) or not all(isinstance(a, str) and a for a in raw):
        raise ConfigError(
            f'{key}: expected a command as a list of strings, e.g. ["/usr/local/bin/push-token"]'
            f", or [] for none, got {raw!r}"
        )
    return tuple(raw)


def _workers(key: str, raw: object) -> int:
    """A number of worker processes, or "auto" for one per CPU."""
    if isinstance(raw, str) and raw.strip().lower() == "auto":
        return (
            len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity")
            else (os.cpu_count() or 1)
        )
    try:
        return _int_in(1, 256)(key, raw)
    except ConfigError:
        raise ConfigError(
            f'{key}: expected a number of processes from 1 to 256 or "auto", got {raw!r}'
        ) from None


def _networks(key: str, raw: object) -> tuple[Network, ...]:
    if isinstance(raw, str):
        raw = [part.strip() for part in raw.split(",") if part.strip()]
    if not isinstance(raw, list):
        raise ConfigError(f'{key}: expected a list of networks such as ["10.0.0.0/8"], got {raw!r}')
    try:
        return parse_networks(key, raw)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


_SEARCH_LIMIT_KEYS = ("size_limit", "time_limit")


def _identity_limits(key: str, raw: object) -> dict[str, SearchLimit]:
    """``{NAME = {size_limit = N, time_limit = S}}``; from the environment as JSON."""
    if isinstance(raw, str):
        import json

        try:
            raw = json.loads(raw) if raw.strip() else {}
        except ValueError as exc:
            raise ConfigError(f"{key}: expected a JSON object in the environment: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{key}: expected a table of account names, e.g. "
            f"[{key}.sync-script] with size_limit and time_limit, got {raw!r}"
        )
    limits: dict[str, SearchLimit] = {}
    for name, values in raw.items():
        where = f"{key}.{name}"
        if not isinstance(values, dict):
            raise ConfigError(f"{where}: expected a table with size_limit and/or time_limit")
        unknown = set(values) - set(_SEARCH_LIMIT_KEYS)
        if unknown:
            raise ConfigError(
                f"{where}.{sorted(unknown)[0]}: unknown setting; allowed: size_limit, time_limit"
            )
        size = _int_in(0, 2**31 - 1)(f"{where}.size_limit", values.get("size_limit", 0))
        seconds = _int_in(0, 86400)(f"{where}.time_limit", values.get("time_limit", 0))
        limits[str(name).lower()] = SearchLimit(size, seconds)
    return limits


TLS_REQUIREMENTS = ("never", "non-loopback", "always")


def _tls_requirement(key: str, raw: object) -> str:
    text = _string(key, raw).lower()
    if text not in TLS_REQUIREMENTS:
        raise ConfigError(f"{key}: expected one of {', '.join(TLS_REQUIREMENTS)}, got {raw!r}")
    return text


def _log_level(key: str, raw: object) -> str:
    text = _string(key, raw).lower()
    allowed = ("debug", "info", "warning", "error")
    if text not in allowed:
        raise ConfigError(f"{key}: expected one of {', '.join(allowed)}, got {raw!r}")
    return text


LOG_FORMATS = ("text", "json", "logfmt")


def _log_format(key: str, raw: object) -> str:
    text = _string(key, raw).lower()
    if text not in LOG_FORMATS:
        raise ConfigError(f"{key}: expected one of {', '.join(LOG_FORMATS)}, got {raw!r}")
    return text


# section -> key -> (validator, default). Defaults of "" mean "derived" where noted.
_SPEC: dict[str, dict[str, tuple[Callable[[str, object], Any], object]]] = {
    "server": {
        "listen": (_host_port, "127.0.0.1:3389"),
        "ldaps_listen": (_host_port, "127.0.0.1:3636"),
        "base_dn": (_base_dn, "dc=example,dc=org"),
        "data_dir": (_nonempty, "./data"),
        "control_socket": (_string, ""),  # "" -> <data_dir>/control.sock
        "control_socket_mode": (_mode, "0600"),
        "worker_threads": (_int_in(1, 256), 8),
        "workers": (_workers, 1),
        "shutdown_grace": (_seconds(0, 3600), 10),
    },
    "tls": {
        "cert": (_path_or_none, ""),  # "" -> development certificate in <data_dir>/tls
        "key": (_path_or_none, ""),
    },
    "database": {
        "url": (_string, ""),  # "" -> sqlite:///<data_dir>/ldapsrv.db
        "pool_size": (_int_in(1, 200), 8),
        "replica_url": (_database_url_or_none, ""),  # "" -> searches on the primary
    },
    "limits": {
        "max_pdu_bytes": (_int_in(1024, 256 * 1024 * 1024), 1024 * 1024),
        "max_filter_depth": (_int_in(2, 500), 50),
        "size_limit": (_int_in(0, 2**31 - 1), 5000),
        "time_limit": (_int_in(0, 86400), 60),
        "search_batch_size": (_int_in(1, 10000), 500),
        "max_connections": (_int_in(0, 1_000_000), 4096),
        "max_connections_per_address": (_int_in(0, 1_000_000), 256),
        "per_address_exempt": (_networks, []),
        "max_outstanding_operations": (_int_in(0, 100_000), 64),
        "idle_timeout": (_seconds(0, 86400 * 7), 300),
        "pdu_timeout": (_seconds(0, 3600), 30),
        "identity_limits": (_identity_limits, {}),
    },
    "accounts": {
        "uid_range": (_range, "10000-59999"),
        "gid_range": (_range, "10000-59999"),
        "default_primary_group": (_nonempty, "users"),
        "home_template": (_nonempty, "/home/{name}"),
        "default_shell": (_nonempty, "/bin/bash"),
    },
    "security": {
        "bcrypt_cost": (_int_in(4, 16), 12),
        "anonymous_read": (_bool, False),
        "require_tls_for_binds": (_tls_requirement, "non-loopback"),
        "require_tls_for_searches": (_tls_requirement, "never"),
    },
    "tokens": {
        "bcrypt_cost": (_int_in(4, 16), 10),
        "viewable": (_bool, True),
        "key_file": (_string, ""),  # "" -> <data_dir>/token.key
        "rotation_hook": (_command, []),
        "rotation_hook_timeout": (_int_in(1, 3600), 30),
        "rotation_check_interval": (_int_in(1, 86400), 60),
    },
    "throttle": {
        "enabled": (_bool, True),
        "free_failures": (_int_in(0, 1000), 5),
        "base_delay": (_seconds(0, 60), 0.5),
        "max_delay": (_seconds(0, 300), 8),
        "window": (_int_in(1, 86400 * 7), 900),
        "address_lockout_failures": (_int_in(1, 1_000_000), 50),
        "pair_lockout_failures": (_int_in(1, 1_000_000), 10),
        "lockout": (_int_in(1, 86400 * 7), 900),
    },
    "api": {
        "enabled": (_bool, False),
        "listen": (_host_port, "127.0.0.1:8443"),
        "max_body_bytes": (_int_in(1024, 16 * 1024 * 1024), 64 * 1024),
        "rate_limit": (_int_in(1, 1_000_000), 300),  # requests a minute per client address
        "account_rate_limit": (_int_in(1, 1_000_000), 120),  # requests a minute per account
    },
    "logging": {
        "level": (_log_level, "info"),
        "format": (_log_format, "text"),
        "access_log": (_bool, True),
    },
    "metrics": {
        "enabled": (_bool, False),
        "listen": (_host_port, "127.0.0.1:9189"),
    },
    "monitoring": {
        "expiry_warning_days": (_int_in(1, 3650), 14),
        "expiry_check_interval": (_int_in(60, 86400 * 7), 86400),
    },
    "cache": {
        "search_results_mib": (_int_in(0, 65536), 32),  # 0 turns the search cache off
        "token_binds": (_int_in(0, 10_000_000), 10_000),  # 0 turns the bind cache off
    },
}


def _merge(file_data: Mapping[str, Any], environ: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    merged: dict[str, dict[str, Any]] = {s: {} for s in _SPEC}
    for section, values in file_data.items():
        if section not in _SPEC:
            raise ConfigError(f"{section}: unknown section; allowed: {', '.join(_SPEC)}")
        if not isinstance(values, dict):
            raise ConfigError(f"{section}: expected a table ([{section}])")
        for key, value in values.items():
            if key not in _SPEC[section]:
                allowed = ", ".join(_SPEC[section])
                raise ConfigError(f"{section}.{key}: unknown setting; allowed: {allowed}")
            merged[section][key] = value
    for section, keys in _SPEC.items():
        for key in keys:
            env_name = f"LDAPSRV_{section.upper()}_{key.upper()}"
            if env_name in environ:
                merged[section][key] = environ[env_name]
    return merged


def load_config(
    path: Path | None = None,
    overrides: Mapping[str, object] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Read, merge and validate. ``overrides`` uses "section.key" names."""
    file_data: dict[str, Any] = {}
    if path is not None:
        try:
            file_data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError(f"config file {path} does not exist") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    merged = _merge(file_data, os.environ if environ is None else environ)
    for dotted, value in (overrides or {}).items():
        section, _, key = dotted.partition(".")
        if section not in _SPEC or key not in _SPEC[section]:
            raise ConfigError(f"{dotted}: unknown setting")
        if value is not None:
            merged[section][key] = value
    v: dict[str, Any] = {}
    for section, keys in _SPEC.items():
        for key, (check, default) in keys.items():
            v[f"{section}.{key}"] = check(f"{section}.{key}", merged[section].get(key, default))

    data_dir = Path(v["server.data_dir"])
    tls_cert, tls_key = v["tls.cert"], v["tls.key"]
    if (tls_cert is None) != (tls_key is None):
        raise ConfigError("tls.cert and tls.key: give both, or neither for a development cert")
    if v["server.listen"] is None and v["server.ldaps_listen"] is None:
        raise ConfigError("server.listen and server.ldaps_listen: at least one must be set")
    if v["metrics.enabled"] and v["metrics.listen"] is None:
        raise ConfigError("metrics.listen: must be HOST:PORT when metrics.enabled is true")
    if v["api.enabled"] and v["api.listen"] is None:
        raise ConfigError('api.listen: must be set (e.g. "127.0.0.1:8443") when api.enabled')
    try:
        v["accounts.home_template"].format(name="x")
    except (KeyError, IndexError, ValueError) as exc:
        raise ConfigError(
            'accounts.home_template: may only use "{name}", e.g. "/home/{name}"'
        ) from exc
    return Config(
        listen=v["server.listen"],
        ldaps_listen=v["server.ldaps_listen"],
        base_dn=v["server.base_dn"],
        data_dir=data_dir,
        control_socket=Path(v["server.control_socket"] or data_dir / "control.sock"),
        control_socket_mode=v["server.control_socket_mode"],
        worker_threads=v["server.worker_threads"],
        workers=v["server.workers"],
        shutdown_grace=v["server.shutdown_grace"],
        tls_cert=tls_cert,
        tls_key=tls_key,
        database_url=v["database.url"] or f"sqlite:///{(data_dir / 'ldapsrv.db').resolve()}",
        database_pool_size=v["database.pool_size"],
        database_replica_url=v["database.replica_url"],
        max_pdu_bytes=v["limits.max_pdu_bytes"],
        max_filter_depth=v["limits.max_filter_depth"],
        size_limit=v["limits.size_limit"],
        time_limit=v["limits.time_limit"],
        search_batch_size=v["limits.search_batch_size"],
        max_connections=v["limits.max_connections"],
        max_connections_per_address=v["limits.max_connections_per_address"],
        per_address_exempt=v["limits.per_address_exempt"],
        max_outstanding_operations=v["limits.max_outstanding_operations"],
        idle_timeout=v["limits.idle_timeout"],
        pdu_timeout=v["limits.pdu_timeout"],
        identity_limits=v["limits.identity_limits"],
        uid_range=v["accounts.uid_range"],
        gid_range=v["accounts.gid_range"],
        default_primary_group=v["accounts.default_primary_group"],
        home_template=v["accounts.home_template"],
        default_shell=v["accounts.default_shell"],
        bcrypt_cost=v["security.bcrypt_cost"],
        anonymous_read=v["security.anonymous_read"],
        require_tls_for_binds=v["security.require_tls_for_binds"],
        require_tls_for_searches=v["security.require_tls_for_searches"],
        token_bcrypt_cost=v["tokens.bcrypt_cost"],
        tokens_viewable=v["tokens.viewable"],
        token_key_file=Path(v["tokens.key_file"] or data_dir / "token.key"),
        rotation_hook=v["tokens.rotation_hook"],
        rotation_hook_timeout=v["tokens.rotation_hook_timeout"],
        rotation_check_interval=v["tokens.rotation_check_interval"],
        throttle_enabled=v["throttle.enabled"],
        throttle_free_failures=v["throttle.free_failures"],
        throttle_base_delay=v["throttle.base_delay"],
        throttle_max_delay=v["throttle.max_delay"],
        throttle_window=v["throttle.window"],
        throttle_address_lockout_failures=v["throttle.address_lockout_failures"],
        throttle_pair_lockout_failures=v["throttle.pair_lockout_failures"],
        throttle_lockout=v["throttle.lockout"],
        api_enabled=v["api.enabled"],
        api_listen=v["api.listen"],
        api_max_body_bytes=v["api.max_body_bytes"],
        api_rate_limit=v["api.rate_limit"],
        api_account_rate_limit=v["api.account_rate_limit"],
        log_level=v["logging.level"],
        log_format=v["logging.format"],
        access_log=v["logging.access_log"],
        metrics_enabled=v["metrics.enabled"],
        metrics_listen=v["metrics.listen"],
        expiry_warning_days=v["monitoring.expiry_warning_days"],
        expiry_check_interval=v["monitoring.expiry_check_interval"],
        cache_search_results_mib=v["cache.search_results_mib"],
        cache_token_binds=v["cache.token_binds"],
    )
