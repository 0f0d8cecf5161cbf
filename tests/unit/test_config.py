"""Settings: TOML file + environment + overrides, validated, with the key path in errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from ldapsrv.config import Config, ConfigError, HostPort, load_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ldapsrv.toml"
    path.write_text(text, encoding="utf-8")
    return path


def load(text: str = "", tmp_path: Path | None = None, **kw: object) -> Config:
    path = None
    if tmp_path is not None:
        path = write(tmp_path, text)
    kw.setdefault("environ", {})
    return load_config(path, **kw)  # type: ignore[arg-type]


def error_of(tmp_path: Path, text: str, **kw: object) -> str:
    with pytest.raises(ConfigError) as info:
        load(text, tmp_path, **kw)
    return str(info.value)


def test_defaults_without_a_file() -> None:
    config = load_config(None, environ={})
    assert config.listen == HostPort("127.0.0.1", 3389)
    assert config.ldaps_listen == HostPort("127.0.0.1", 3636)
    assert config.base_dn == "dc=example,dc=org"
    assert config.max_pdu_bytes == 1024 * 1024
    assert config.max_filter_depth == 50
    assert config.control_socket_mode == 0o600
    assert config.uid_range == (10000, 59999)
    assert config.anonymous_read is False
    assert config.tls_cert is None and config.tls_key is None


def test_observability_defaults_and_values(tmp_path: Path) -> None:
    default = load_config(None, environ={})
    assert (default.log_format, default.access_log) == ("text", True)
    assert default.metrics_enabled is False
    assert default.metrics_listen == HostPort("127.0.0.1", 9189)
    assert (default.expiry_warning_days, default.expiry_check_interval) == (14, 86400)
    text = (
        "[logging]\nformat = 'JSON'\naccess_log = false\n"
        "[metrics]\nenabled = true\nlisten = '[::1]:9100'\n"
        "[monitoring]\nexpiry_warning_days = 30\n"
    )
    config = load(text, tmp_path, environ={"LDAPSRV_MONITORING_EXPIRY_CHECK_INTERVAL": "3600"})
    assert (config.log_format, config.access_log) == ("json", False)
    assert config.metrics_enabled and config.metrics_listen == HostPort("::1", 9100)
    assert (config.expiry_warning_days, config.expiry_check_interval) == (30, 3600)


def test_derived_paths_follow_the_data_dir(tmp_path: Path) -> None:
    config = load(f'[server]\ndata_dir = "{tmp_path}/d"\n', tmp_path)
    assert config.data_dir == tmp_path / "d"
    assert config.control_socket == tmp_path / "d" / "control.sock"
    assert config.database_url == f"sqlite:///{(tmp_path / 'd' / 'ldapsrv.db').resolve()}"


def test_file_values_are_read_and_converted(tmp_path: Path) -> None:
    config = load(
        """
[server]
listen = "[::1]:10389"
ldaps_listen = ""
base_dn = "dc=corp,dc=test"
control_socket_mode = "0660"
[limits]
size_limit = 0
[accounts]
uid_range = "2000-2999"
[security]
anonymous_read = true
[logging]
level = "DEBUG"
""",
        tmp_path,
    )
    assert config.listen == HostPort("::1", 10389)
    assert str(config.listen) == "[::1]:10389"
    assert config.ldaps_listen is None
    assert config.base_dn == "dc=corp,dc=test"
    assert config.control_socket_mode == 0o660
    assert config.size_limit == 0
    assert config.uid_range == (2000, 2999)
    assert config.anonymous_read is True
    assert config.log_level == "debug"


def test_environment_overrides_the_file_and_flags_override_both(tmp_path: Path) -> None:
    text = '[database]\nurl = "sqlite:///file.db"\n[limits]\nsize_limit = 10\n'
    env = {"LDAPSRV_DATABASE_URL": "postgresql://u:secret@db/x", "LDAPSRV_LIMITS_SIZE_LIMIT": "20"}
    config = load(text, tmp_path, environ=env)
    assert config.database_url == "postgresql://u:secret@db/x"
    assert config.size_limit == 20
    config = load(text, tmp_path, environ=env, overrides={"limits.size_limit": 30})
    assert config.size_limit == 30


def test_an_override_of_none_leaves_the_setting_alone(tmp_path: Path) -> None:
    config = load("[limits]\nsize_limit = 10\n", tmp_path, overrides={"limits.size_limit": None})
    assert config.size_limit == 10


def test_environment_booleans_accept_common_spellings() -> None:
    assert load_config(environ={"LDAPSRV_SECURITY_ANONYMOUS_READ": "yes"}).anonymous_read
    assert not load_config(environ={"LDAPSRV_SECURITY_ANONYMOUS_READ": "0"}).anonymous_read


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[serv]\n", "serv: unknown section"),
        ("server = 1\n", "server: expected a table"),
        ("[server]\nlisen = 'x:1'\n", "server.lisen: unknown setting; allowed: listen"),
        ("[server]\nlisten = 'localhost'\n", "server.listen: expected HOST:PORT"),
        ("[server]\nlisten = '127.0.0.1:0'\n", "server.listen"),
        ("[server]\nlisten = '127.0.0.1:65536'\n", "server.listen"),
        ("[server]\nlisten = 3389\n", "server.listen: expected a string"),
        ("[server]\nbase_dn = ''\n", "server.base_dn: must not be empty"),
        ("[server]\nbase_dn = 'dc=example,,dc=org'\n", "server.base_dn: not a valid DN"),
        ("[server]\ncontrol_socket_mode = '0999'\n", "server.control_socket_mode"),
        ("[server]\nworker_threads = 0\n", "server.worker_threads: expected an integer from 1"),
        ("[server]\nworker_threads = true\n", "server.worker_threads"),
        ("[limits]\nmax_pdu_bytes = 100\n", "limits.max_pdu_bytes"),
        ("[limits]\nsize_limit = 1.5\n", "limits.size_limit"),
        ("[accounts]\nuid_range = '10-5'\n", "accounts.uid_range"),
        ("[accounts]\ngid_range = '100'\n", "accounts.gid_range: expected a range"),
        ("[accounts]\nhome_template = '/home/{user}'\n", "accounts.home_template"),
        ("[accounts]\nhome_template = '/home/{0}'\n", "accounts.home_template"),
        ("[accounts]\nhome_template = '/home/{name'\n", "accounts.home_template"),
        ("[security]\nbcrypt_cost = 3\n", "security.bcrypt_cost"),
        ("[security]\nanonymous_read = 'maybe'\n", "security.anonymous_read"),
        ("[logging]\nlevel = 'verbose'\n", "logging.level: expected one of debug"),
        ("[tls]\ncert = '/etc/c.pem'\n", "tls.cert and tls.key"),
        ("[server]\nlisten = ''\nldaps_listen = ''\n", "at least one must be set"),
        ("[logging]\nformat = 'xml'\n", "logging.format: expected one of text, json, logfmt"),
        ("[logging]\naccess_log = 'sometimes'\n", "logging.access_log"),
        ("[metrics]\nenabled = true\nlisten = ''\n", "metrics.listen: must be HOST:PORT"),
        ("[metrics]\nlisten = '9189'\n", "metrics.listen: expected HOST:PORT"),
        ("[monitoring]\nexpiry_warning_days = 0\n", "monitoring.expiry_warning_days"),
        ("[monitoring]\nexpiry_check_interval = 10\n", "monitoring.expiry_check_interval"),
    ],
)
def test_a_bad_setting_names_its_key(tmp_path: Path, text: str, fragment: str) -> None:
    assert fragment in error_of(tmp_path, text)


def test_a_bad_environment_value_names_the_key(tmp_path: Path) -> None:
    message = error_of(tmp_path, "", environ={"LDAPSRV_LIMITS_TIME_LIMIT": "soon"})
    assert message.startswith("limits.time_limit:")


def test_an_unknown_override_is_refused(tmp_path: Path) -> None:
    assert "limits.nope: unknown setting" in error_of(tmp_path, "", overrides={"limits.nope": 1})


def test_a_missing_or_broken_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "absent.toml", environ={})
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[server\n"), environ={})


def test_config_is_frozen() -> None:
    config = load_config(environ={})
    with pytest.raises(AttributeError):
        config.base_dn = "dc=other"  # type: ignore[misc]


def test_the_management_api_is_off_by_default_and_configurable(tmp_path: Path) -> None:
    config = load_config(None, environ={})
    assert config.api_enabled is False
    assert config.api_listen == HostPort("127.0.0.1", 8443)
    assert (config.api_max_body_bytes, config.api_rate_limit) == (65536, 300)
    assert config.api_account_rate_limit == 120
    text = '[api]\nenabled = true\nlisten = "[::1]:9443"\nmax_body_bytes = 4096\n'
    config = load(text, tmp_path, environ={"LDAPSRV_API_ACCOUNT_RATE_LIMIT": "7"})
    assert config.api_enabled is True and config.api_listen == HostPort("::1", 9443)
    assert (config.api_max_body_bytes, config.api_account_rate_limit) == (4096, 7)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('[api]\nenabled = true\nlisten = ""\n', "api.listen: must be set"),
        ("[api]\nmax_body_bytes = 10\n", "api.max_body_bytes: expected an integer from 1024"),
        ("[api]\nrate_limit = 0\n", "api.rate_limit: expected an integer from 1"),
    ],
)
def test_bad_api_settings_name_their_key(tmp_path: Path, text: str, fragment: str) -> None:
    assert fragment in error_of(tmp_path, text)


def test_a_read_replica_url_is_optional_and_validated(tmp_path: Path) -> None:
    assert load_config(None, environ={}).database_replica_url is None
    url = "postgresql+psycopg2://ldapsrv@replica.example/ldapsrv"
    assert load(f'[database]\nreplica_url = "{url}"\n', tmp_path).database_replica_url == url
    replica = load(environ={"LDAPSRV_DATABASE_REPLICA_URL": url}).database_replica_url
    assert replica == url
    message = error_of(tmp_path, '[database]\nreplica_url = "http://example.org/"\n')
    assert message.startswith("database.replica_url:")
