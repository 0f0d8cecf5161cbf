"""The management API end to end: a real server, a real HTTPS client (httpx) verifying
the development CA, on every database backend.

Every command the API offers is called; every refusal the issue names is provoked:
missing and wrong credentials, app passwords, expired, rotated and deleted tokens,
people's passwords (401 + WWW-Authenticate), missing permissions (403), internal
accounts (403), and the HTTP-level refusals (400, 404, 405, 413, 429).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from e2e.api_client import ADMIN_PERMISSIONS, API_SETTINGS, Api, api_client, api_token, error_of
from e2e.harness import BACKENDS, LdapServer, serving

ADMINS = "api-admins"
ALICE_PASSWORD = "alice-Password-1"


@pytest.fixture(scope="module", params=BACKENDS)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LdapServer]:
    """The API on; ``ci-admin`` holds every management permission through the group
    ``api-admins``; ``alice`` is a person with a password."""
    backend = str(request.param)
    workdir = tmp_path_factory.mktemp(f"api-{backend}")
    with serving(backend, workdir, settings={"api": API_SETTINGS}) as started:
        started.create_service_account("ci-admin")
        started.add_group(ADMINS, ["ci-admin"])
        for permission in ADMIN_PERMISSIONS:
            started.grant(permission, group=ADMINS)
        started.add_user("alice", ALICE_PASSWORD)
        yield started


@pytest.fixture(scope="module")
def client(server: LdapServer) -> Iterator[httpx.Client]:
    with api_client(server) as http:
        yield http


@pytest.fixture(scope="module")
def admin(server: LdapServer, client: httpx.Client) -> Api:
    return Api(client, "ci-admin", api_token(server, "ci-admin", "ci-admin-api"))


@pytest.fixture
def account(server: LdapServer, client: httpx.Client) -> Callable[..., Api]:
    """``account(name, *permissions)``: a new service account holding exactly those
    permissions (directly), with an api token."""

    def make(name: str, *permissions: str) -> Api:
        server.create_service_account(name)
        for permission in permissions:
            server.grant(permission, user=name)
        return Api(client, name, api_token(server, name, f"{name}-api"))

    return make


def audit_events(server: LdapServer, action: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = server.ctl_json("audit", "--since", "1h")["events"]
    return [e for e in events if e["action"] == action]


# -------------------------------------------------------------- every command


def test_openapi_description_lists_every_api_command_and_no_socket_only_one(
    client: httpx.Client,
) -> None:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    spec = response.json()
    assert spec["openapi"].startswith("3.")
    paths = set(spec["paths"])
    assert "/api/v1/user.add" in paths and "/api/v1/token.rotate" in paths
    assert "/api/v1/health.credentials" not in paths
    user_add = spec["paths"]["/api/v1/user.add"]["post"]
    schema = user_add["requestBody"]["content"]["application/json"]["schema"]
    assert schema["required"] == ["name"]
    assert schema["properties"]["uid_number"] == {
        "type": "integer",
        "minimum": 1,
        "maximum": 2**31 - 1,
    }
    assert schema["properties"]["password"]["writeOnly"] is True
    assert "manage_accounts" in user_add["description"]


def test_ping_and_status(admin: Api, server: LdapServer) -> None:
    assert admin.ok("server.ping")["pong"] is True
    status = admin.ok("server.status")
    assert status["base_dn"] == server.base_dn
    assert f"https://127.0.0.1:{server.api_port}/api/v1" in status["listeners"]
    assert "password" not in status["database"] or "***" in status["database"]


def test_people_commands(admin: Api) -> None:
    added = admin.ok("user.add", name="bob", mail="bob@example.org", uid_number=20001)
    assert added["name"] == "bob" and added["uid_number"] == 20001
    assert "bob" in [u["name"] for u in admin.ok("user.list")["users"]]
    assert admin.ok("user.show", name="bob")["mail"] == "bob@example.org"
    assert admin.ok("user.set_password", name="bob", password="bob-Password-1") == {
        "name": "bob",
        "password_set": True,
    }
    assert admin.ok("user.disable", name="bob")["disabled"] is True
    assert admin.ok("user.enable", name="bob")["disabled"] is False
    assert admin.ok("user.delete", name="bob") == {"name": "bob", "deleted": True}
    admin.refused("user.show", 404, "not_found", name="bob")


def test_group_commands(admin: Api) -> None:
    assert admin.ok("group.add", name="devs", description="developers")["name"] == "devs"
    assert "devs" in [g["name"] for g in admin.ok("group.list")["groups"]]
    assert "alice" in admin.ok("group.add_member", group="devs", user="alice")["members"]
    assert admin.ok("group.show", name="devs")["description"] == "developers"
    assert "alice" not in admin.ok("group.remove_member", group="devs", user="alice")["members"]
    assert admin.ok("group.delete", name="devs") == {"name": "devs", "deleted": True}
    admin.refused("group.add", 409, "already_exists", name=ADMINS)


def test_service_account_commands(admin: Api) -> None:
    created = admin.ok("service_account.create", name="sync-bot", create_group=True)
    assert created["token"].startswith("ldsrv_") and created["group"] == "sync-bot"
    listed = admin.ok("service_account.list")["service_accounts"]
    assert {"sync-bot", "ldapsrv-health"} <= {a["name"] for a in listed}
    shown = admin.ok("service_account.show", name="sync-bot")
    assert [t["identifier"] for t in shown["tokens"]] == ["sync-bot"]
    assert "value" not in shown["tokens"][0]
    deleted = admin.ok("service_account.delete", name="sync-bot")
    assert deleted == {"name": "sync-bot", "deleted": True, "tokens_revoked": 1}


def test_token_commands(admin: Api, server: LdapServer, client: httpx.Client) -> None:
    server.create_service_account("deployer")
    created = admin.ok("token.create", identifier="deployer-ci", user="deployer", intent="api")
    assert created["intent"] == "api" and created["value"].startswith("ldsrv_")
    deployer = Api(client, "deployer", created["value"])
    assert deployer.ok("server.ping")["pong"] is True
    listed = admin.ok("token.list", user="deployer")["tokens"]
    assert {t["identifier"] for t in listed} == {"deployer", "deployer-ci"}
    assert all("value" not in t for t in listed)
    assert admin.ok("token.show", identifier="deployer-ci")["account"] == "deployer"
    assert admin.ok("token.view", identifier="deployer-ci")["value"] == created["value"]
    rotated = admin.ok("token.rotate", identifier="deployer-ci")
    assert rotated["value"] != created["value"]
    deployer.refused("server.ping", 401, "unauthorized")  # the old value is dead
    assert Api(client, "deployer", rotated["value"]).ok("server.ping")["pong"] is True
    assert admin.ok("token.delete", identifier="deployer-ci")["deleted"] is True
    Api(client, "deployer", rotated["value"]).refused("server.ping", 401, "unauthorized")


def test_permission_commands(admin: Api, server: LdapServer) -> None:
    server.create_service_account("auditor")
    granted = admin.ok("permission.grant", permission="read_audit", user="auditor")
    assert granted["permission"] == "read_audit" and granted["user"] == "auditor"
    listed = admin.ok("permission.list", user="auditor")
    assert listed["effective"]["management"] == ["read_audit"]
    assert admin.ok("permission.revoke", permission="read_audit", user="auditor")["revoked"]
    assert admin.ok("permission.list", user="auditor")["effective"]["management"] == []
    message = admin.refused(
        "permission.grant", 400, "invalid", permission="manage_tokens", user="auditor", scope=ADMINS
    )
    assert "scope" in message


def test_audit_list_shows_api_calls_with_their_token_identifier(admin: Api) -> None:
    admin.ok("group.add", name="audited")
    events = admin.ok("audit.list", since="1h")["events"]
    change = [e for e in events if e["action"] == "group.add" and e["target"] == "group audited"]
    assert change and change[-1]["actor"] == "api account=ci-admin token=ci-admin-api"
    assert change[-1]["channel"] == "api"
    calls = [e for e in events if e["action"] == "api.call"]
    assert calls and all(e["details"]["token"] for e in calls)
    assert admin.token not in str(events)  # the secret is never in the trail


# ------------------------------------------------------------ authentication


def test_no_credentials_get_401_with_a_basic_challenge(client: httpx.Client) -> None:
    response = client.post("/server.ping")
    error_of(response, 401, "unauthorized")
    assert response.headers["www-authenticate"].startswith('Basic realm="ldapsrv"')


def test_bearer_token_alone_authenticates(admin: Api) -> None:
    bearer = Api(admin.client, "", admin.token, bearer=True)
    assert bearer.ok("server.ping")["pong"] is True


@pytest.mark.parametrize(
    "header",
    [
        "Basic !!!not-base64",
        "Basic bm8tY29sb24=",  # "no-colon"
        "Digest username=ci-admin",
        "Bearer",
    ],
)
def test_malformed_authorization_headers_get_401(client: httpx.Client, header: str) -> None:
    response = client.post("/server.ping", headers={"Authorization": header})
    error_of(response, 401, "unauthorized")
    assert "www-authenticate" in response.headers


def test_a_token_under_another_accounts_name_is_refused(admin: Api) -> None:
    response = Api(admin.client, "alice", admin.token).post("server.ping")
    error_of(response, 401, "unauthorized")


def test_app_password_tokens_are_refused(server: LdapServer, client: httpx.Client) -> None:
    created = server.create_service_account("nas-app")  # its first token is an app password
    response = Api(client, "nas-app", created["token"]).post("server.ping")
    error_of(response, 401, "unauthorized")
    assert response.headers["www-authenticate"].startswith("Basic")
    assert Api(client, "", created["token"], bearer=True).post("server.ping").status_code == 401


def test_a_persons_password_is_refused(client: httpx.Client) -> None:
    response = Api(client, "alice", ALICE_PASSWORD).post("server.ping")
    error_of(response, 401, "unauthorized")
    assert "www-authenticate" in response.headers


def test_a_persons_own_api_token_works_until_she_is_disabled(
    server: LdapServer, client: httpx.Client
) -> None:
    alice = Api(client, "alice", api_token(server, "alice", "alice-api"))
    assert alice.ok("server.ping")["pong"] is True
    alice.refused("user.list", 403, "permission_denied")
    server.ctl("user", "disable", "alice")
    try:
        alice.refused("server.ping", 401, "unauthorized")
    finally:
        server.ctl("user", "enable", "alice")


def test_an_expired_token_is_refused(server: LdapServer, client: httpx.Client) -> None:
    server.create_service_account("short-lived")
    caller = Api(client, "short-lived", api_token(server, "short-lived", "sl", "--expires", "2s"))
    assert caller.ok("server.ping")["pong"] is True
    time.sleep(2.5)
    caller.refused("server.ping", 401, "unauthorized")


def test_a_deleted_token_is_refused_at_once(
    server: LdapServer, account: Callable[..., Api]
) -> None:
    caller = account("to-revoke")
    assert caller.ok("server.ping")["pong"] is True
    server.ctl("token", "delete", "to-revoke-api")
    caller.refused("server.ping", 401, "unauthorized")


# ------------------------------------------------------------- authorization


def test_each_command_needs_its_own_management_permission(
    account: Callable[..., Api],
) -> None:
    groups_only = account("groups-only", "manage_groups")
    assert groups_only.ok("group.list")["groups"] is not None
    message = groups_only.refused("user.list", 403, "permission_denied")
    assert "manage_accounts" in message
    groups_only.refused("token.list", 403, "permission_denied")
    groups_only.refused("permission.list", 403, "permission_denied")
    groups_only.refused("audit.list", 403, "permission_denied")
    groups_only.refused("server.status", 403, "permission_denied")
    groups_only.refused("service_account.create", 403, "permission_denied", name="sneaky")
    reader = account("reader-only", "read_audit")
    assert "events" in reader.ok("audit.list", limit=5)
    reader.refused("group.add", 403, "permission_denied", name="nope")


def test_permission_through_a_group_counts(server: LdapServer, account: Callable[..., Api]) -> None:
    member = account("group-member")
    member.refused("group.list", 403, "permission_denied")
    server.ctl("group", "add-member", ADMINS, "group-member")
    assert "groups" in member.ok("group.list")


def test_refusals_are_audited_with_the_token_identifier(
    server: LdapServer, account: Callable[..., Api]
) -> None:
    caller = account("refused-caller")
    caller.refused("user.delete", 403, "permission_denied", name="alice")
    calls = [
        e
        for e in audit_events(server, "api.call")
        if e["actor"] == "api account=refused-caller token=refused-caller-api"
    ]
    assert calls[-1]["target"] == "command user.delete"
    assert calls[-1]["details"]["outcome"] == "permission_denied"
    assert calls[-1]["details"]["status"] == "403"


def test_rotate_own_tokens_lets_an_account_rotate_only_its_own(
    server: LdapServer, account: Callable[..., Api], client: httpx.Client
) -> None:
    owner = account("self-rotator", "rotate_own_tokens")
    rotated = owner.ok("token.rotate", identifier="self-rotator-api")
    fresh = Api(client, "self-rotator", rotated["value"])
    assert fresh.ok("server.ping")["pong"] is True
    owner.refused("server.ping", 401, "unauthorized")  # the value it rotated away
    fresh.refused("token.rotate", 403, "permission_denied", identifier="ci-admin-api")
    fresh.refused("token.rotate", 403, "permission_denied", identifier="no-such-token")
    fresh.refused("token.list", 403, "permission_denied")
    events = audit_events(server, "token.rotate")
    assert events[-1]["actor"] == "api account=self-rotator token=self-rotator-api"


def test_nobody_views_or_creates_a_token_of_an_internal_account(admin: Api) -> None:
    admin.refused("token.view", 403, "forbidden", identifier="ldapsrv-health")
    admin.refused("token.rotate", 403, "forbidden", identifier="ldapsrv-health")
    admin.refused("token.delete", 403, "forbidden", identifier="ldapsrv-health")
    admin.refused(
        "token.create", 403, "forbidden", identifier="steal", user="ldapsrv-health", intent="api"
    )
    admin.refused("service_account.delete", 403, "forbidden", name="ldapsrv-health")
    response = admin.post("health.credentials")
    error_of(response, 404, "unknown_endpoint")


# -------------------------------------------------------------- HTTP refusals


def test_unknown_endpoint_is_404_json(client: httpx.Client) -> None:
    error_of(client.post("/no.such_command"), 404, "unknown_endpoint")
    error_of(client.get("/"), 404, "unknown_endpoint")


def test_wrong_method_is_405_with_allow(admin: Api, client: httpx.Client) -> None:
    response = client.get("/user.list", auth=(admin.account, admin.token))
    error_of(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "POST"
    response = client.post("/openapi.json")
    error_of(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "GET, HEAD"


def test_invalid_json_and_invalid_arguments_are_400_with_the_registry_message(
    admin: Api, client: httpx.Client
) -> None:
    auth = (admin.account, admin.token)
    response = client.post("/user.add", content=b"{not json", auth=auth)
    error_of(response, 400, "bad_request")
    response = client.post("/user.add", content=b"[1, 2]", auth=auth)
    error_of(response, 400, "bad_request")
    assert admin.refused("user.add", 400, "invalid") == "argument 'name' is required"
    message = admin.refused("user.add", 400, "invalid", name="x", uid_number="12")
    assert message == "argument 'uid_number': expected an integer, got a string"
    message = admin.refused("user.show", 400, "invalid", name="x", colour="red")
    assert message.startswith("unknown argument 'colour' for user.show")
    message = admin.refused("user.add", 400, "invalid", name="nul\x00byte")
    assert "NUL" in message


def test_a_body_over_the_limit_is_413(admin: Api, client: httpx.Client) -> None:
    auth = (admin.account, admin.token)
    response = client.post("/user.add", content=b" " * (64 * 1024 + 1), auth=auth)
    error_of(response, 413, "body_too_large")

    def chunks() -> Iterator[bytes]:
        for _ in range(80):
            yield b" " * 1024

    response = client.post("/user.add", content=chunks(), auth=auth)  # chunked encoding
    error_of(response, 413, "body_too_large")
    assert admin.ok("server.ping")["pong"] is True  # the connection pool still works


def test_plain_http_is_not_served(server: LdapServer) -> None:
    with pytest.raises(httpx.HTTPError):
        httpx.post(f"http://127.0.0.1:{server.api_port}/api/v1/server.ping", timeout=5)


# ----------------------------------------------------------------- limits


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LdapServer]:
    """SQLite; 5 requests a minute per account; an address is locked out after 3
    failed authentications (no delays, so the test stays quick)."""
    settings: dict[str, dict[str, object]] = {
        "api": {"enabled": True, "rate_limit": 1000, "account_rate_limit": 5},
        "throttle": {
            "free_failures": 10,
            "address_lockout_failures": 3,
            "pair_lockout_failures": 3,
            "lockout": 60,
        },
    }
    with serving("sqlite", tmp_path_factory.mktemp("api-limits"), settings=settings) as started:
        yield started


def test_an_account_over_its_rate_limit_gets_429_with_retry_after(limited: LdapServer) -> None:
    limited.create_service_account("busy")
    with api_client(limited) as http:
        caller = Api(http, "busy", api_token(limited, "busy", "busy-api"))
        statuses = [caller.post("server.ping").status_code for _ in range(6)]
        assert statuses == [200] * 5 + [429]
        response = caller.post("server.ping")
        error_of(response, 429, "rate_limited")
        assert 1 <= int(response.headers["retry-after"]) <= 60


def test_repeated_failed_authentication_locks_the_address_out_with_429(
    limited: LdapServer,
) -> None:
    limited.create_service_account("victim")
    good = api_token(limited, "victim", "victim-api")
    with api_client(limited) as http:
        wrong = Api(http, "victim", good[:-1] + ("A" if good[-1] != "A" else "B"))
        for _ in range(3):
            error_of(wrong.post("server.ping"), 401, "unauthorized")
        response = wrong.post("server.ping")
        error_of(response, 429, "throttled")
        assert 1 <= int(response.headers["retry-after"]) <= 60
        # Locked out: even the right token is not checked from this address.
        error_of(Api(http, "victim", good).post("server.ping"), 429, "throttled")


def test_the_readme_ci_pipeline_mints_uses_and_revokes_a_short_lived_token(
    server: LdapServer, account: Callable[..., Api], client: httpx.Client
) -> None:
    minter = account("ci-minter", "manage_tokens")
    account("ci-sync", "manage_accounts", "manage_groups")
    server.add_group("staff")
    minted = minter.ok(
        "token.create", identifier="sync-1234", user="ci-sync", intent="api", expires="15m"
    )
    assert minted["intent"] == "api" and minted["expiring"] is True
    sync = Api(client, "ci-sync", minted["value"])
    sync.ok("user.add", name="dave")
    assert "dave" in sync.ok("group.add_member", group="staff", user="dave")["members"]
    sync.refused("token.create", 403, "permission_denied", identifier="x", user="ci-sync")
    assert minter.ok("token.delete", identifier="sync-1234")["deleted"] is True
    sync.refused("server.ping", 401, "unauthorized")
