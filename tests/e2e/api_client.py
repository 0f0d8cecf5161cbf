"""A real HTTPS client for the management API (httpx, verifying the server's CA)."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any

import httpx

from e2e.harness import LdapServer

#: Settings that turn the management API on, with limits the tests never reach.
API_SETTINGS: dict[str, object] = {
    "enabled": True,
    "rate_limit": 100_000,
    "account_rate_limit": 100_000,
}

#: Every management permission but the self-service one: what an API admin holds.
ADMIN_PERMISSIONS = (
    "manage_accounts",
    "manage_groups",
    "manage_tokens",
    "manage_permissions",
    "read_audit",
)


def api_client(server: LdapServer, *, timeout: float = 30.0) -> httpx.Client:
    """An HTTPS client for ``server.api_url`` trusting only the server's dev CA."""
    context = ssl.create_default_context(cafile=str(server.ca_path))
    return httpx.Client(base_url=server.api_url, verify=context, timeout=timeout)


@dataclass
class Api:
    """Calls as one account with one api token (HTTP Basic unless ``bearer``)."""

    client: httpx.Client
    account: str
    token: str
    bearer: bool = False

    def post(self, command: str, body: Any = None, **kwargs: Any) -> httpx.Response:
        if self.bearer:
            headers = {"Authorization": f"Bearer {self.token}"}
            return self.client.post(f"/{command}", json=body, headers=headers, **kwargs)
        return self.client.post(f"/{command}", json=body, auth=(self.account, self.token), **kwargs)

    def ok(self, command: str, **arguments: Any) -> Any:
        """The result of a call that must succeed."""
        response = self.post(command, arguments)
        assert response.status_code == 200, f"{command}: {response.status_code} {response.text}"
        assert response.headers["content-type"] == "application/json"
        assert response.headers["cache-control"] == "no-store"
        return response.json()

    def refused(self, command: str, status: int, code: str, **arguments: Any) -> str:
        """The message of a call that must fail with ``status`` and ``code``."""
        response = self.post(command, arguments)
        return error_of(response, status, code)


def error_of(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, f"{response.status_code} {response.text}"
    assert response.headers["content-type"] == "application/json"
    if status == 401:  # every refused authentication carries the challenge
        assert response.headers["www-authenticate"].startswith('Basic realm="ldapsrv"')
    if status == 429:
        assert int(response.headers["retry-after"]) >= 1
    error = response.json()["error"]
    assert error["code"] == code, error
    assert isinstance(error["message"], str) and error["message"]
    return str(error["message"])


def api_token(server: LdapServer, account: str, identifier: str, *options: str) -> str:
    """A new ``api`` token of ``account`` made on the control socket; its value."""
    created = server.create_token(identifier, account, "--intent", "api", *options)
    assert created["intent"] == "api"
    return str(created["value"])
