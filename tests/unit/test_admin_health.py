"""health.credentials: the health check's own account, token and where to dial."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from test_admin_service_accounts import NOW, Env

from ldapsrv.admin.commands_health import ldap_endpoint
from ldapsrv.admin.ports import NewUser
from ldapsrv.auth.internal import HEALTH_ACCOUNT, HEALTH_TOKEN, ensure_health_account
from ldapsrv.auth.tokens import looks_like_token
from ldapsrv.auth.vault import TokenVault
from ldapsrv.config import load_config


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> Env:
    made = Env(monkeypatch)
    ensure_health_account(made.store, made.vault, 4, NOW)
    return made


def test_credentials_of_the_internal_account(env: Env) -> None:
    creds = env.call("health.credentials")
    token = env.store.get_token(HEALTH_TOKEN)
    assert token.encrypted_value is not None
    assert creds == {
        "account": HEALTH_ACCOUNT,
        "bind_dn": "cn=ldapsrv-health,ou=users,dc=example,dc=org",
        "token": env.vault.decrypt(token.encrypted_value, token.lookup_id),
        "base_dn": "dc=example,dc=org",
        "ldap_url": "ldap://127.0.0.1:3389",
        "ca_file": None,
    }
    assert looks_like_token(creds["token"])


def test_credentials_do_not_depend_on_viewable_copies(monkeypatch: pytest.MonkeyPatch) -> None:
    env = Env(monkeypatch, viewable=False)
    ensure_health_account(env.store, env.vault, 4, NOW)
    assert looks_like_token(env.call("health.credentials")["token"])


def test_credentials_are_not_audited(env: Env) -> None:
    before = list(env.store.audit)
    env.call("health.credentials")
    assert env.store.audit == before


def test_missing_health_account_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    env = Env(monkeypatch)
    error = env.error("health.credentials")
    assert error.kind == "unavailable"
    assert "ldapsrv-health" in error.message and "restart" in error.message


def test_an_impostor_named_ldapsrv_health_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    env = Env(monkeypatch)
    env.store.create_user(NewUser(name="ldapsrv-health"))
    env.call("token.create", identifier="ldapsrv-health", user="ldapsrv-health")
    error = env.error("health.credentials")
    assert error.kind == "unavailable"


def test_another_servers_key_is_unavailable_and_says_what_to_do(env: Env) -> None:
    env.admin.context = replace(env.admin.context, vault=TokenVault.generate())
    error = env.error("health.credentials")
    assert error.kind == "unavailable" and "decrypted" in error.message


def test_no_vault_wired_is_unavailable(env: Env) -> None:
    env.admin.context = replace(env.admin.context, vault=None)
    assert env.error("health.credentials").kind == "unavailable"


@pytest.mark.parametrize(
    ("overrides", "url", "ca"),
    [
        ({"server.listen": "0.0.0.0:389"}, "ldap://127.0.0.1:389", None),
        ({"server.listen": "[::]:1389"}, "ldap://[::1]:1389", None),
        ({"server.listen": "192.0.2.7:389"}, "ldap://192.0.2.7:389", None),
        ({"server.listen": "[2001:db8::1]:389"}, "ldap://[2001:db8::1]:389", None),
        ({"server.listen": "ldap.example.org:389"}, "ldap://ldap.example.org:389", None),
        (
            {"server.listen": "", "server.ldaps_listen": "0.0.0.0:636"},
            "ldaps://127.0.0.1:636",
            "/srv/ldapsrv/tls/ca.pem",
        ),
        (
            {
                "server.listen": "",
                "server.ldaps_listen": "127.0.0.1:636",
                "tls.cert": "/etc/ssl/ldap.pem",
                "tls.key": "/etc/ssl/ldap.key",
            },
            "ldaps://127.0.0.1:636",
            "/etc/ssl/ldap.pem",
        ),
    ],
)
def test_endpoint_follows_the_listeners(
    overrides: dict[str, str], url: str, ca: str | None
) -> None:
    config = load_config(None, {"server.data_dir": "/srv/ldapsrv", **overrides}, environ={})
    assert ldap_endpoint(config) == (url, ca)
    if ca is not None:
        assert Path(ca).is_absolute()


def test_a_relative_data_dir_gives_an_absolute_ca_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config = load_config(None, {"server.listen": "", "server.data_dir": "./data"}, environ={})
    assert ldap_endpoint(config)[1] == str(tmp_path / "data" / "tls" / "ca.pem")
