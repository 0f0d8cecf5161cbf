"""ldap-utils wrappers and the directory content the e2e tests share."""

from __future__ import annotations

import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from e2e.harness import (
    LdapsearchOutput,
    LdapServer,
    ToolResult,
    ldap_client_env,
    parse_ldapsearch,
    run_tool,
)

# Result codes ldap-utils exit with (RFC 4511).
SUCCESS = 0
SIZE_LIMIT_EXCEEDED = 4
COMPARE_FALSE = 5
COMPARE_TRUE = 6
NO_SUCH_OBJECT = 32
INVALID_CREDENTIALS = 49
INSUFFICIENT_ACCESS = 50
UNWILLING_TO_PERFORM = 53

PAGED_RESULTS_OID = "1.2.840.113556.1.4.319"
STARTTLS_OID = "1.3.6.1.4.1.1466.20037"
WHOAMI_OID = "1.3.6.1.4.1.4203.1.11.3"
PASSWORD_MODIFY_OID = "1.3.6.1.4.1.4203.1.11.1"

#: A token as the server prints it: the ``ldsrv_`` prefix, then base64url characters.
TOKEN_PATTERN = re.compile(r"ldsrv_[A-Za-z0-9_-]+")

ALICE_PASSWORD = "alice-Secret-1"
BOB_PASSWORD = "bob-Secret-2"


@dataclass(frozen=True)
class Credentials:
    dn: str
    password: str


def populate(server: LdapServer) -> None:
    """alice and bob (with passwords) in developers, carol (no password) in ops."""
    server.add_user(
        "alice",
        ALICE_PASSWORD,
        mail="alice@example.org",
        display_name="Alice Liddell",
        given_name="Alice",
        surname="Liddell",
    )
    server.add_user("bob", BOB_PASSWORD, mail="bob@example.org")
    server.add_user("carol")
    server.add_group("developers", ["alice", "bob"], description="Software developers")
    server.add_group("ops", ["carol"])


def add_users_concurrently(server: LdapServer, names: Sequence[str], workers: int = 6) -> None:
    """Create users through the CLI, several at once (which also races the allocator)."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for future in [pool.submit(server.add_user, name) for name in names]:
            future.result()


def alice(server: LdapServer) -> Credentials:
    return Credentials(server.user_dn("alice"), ALICE_PASSWORD)


def _connection_args(
    server: LdapServer,
    *,
    bind: Credentials | None,
    url: str | None,
    start_tls: bool,
) -> list[str]:
    args = ["-x", "-H", url or server.ldap_url, "-o", "nettimeout=10"]
    if start_tls:
        args.append("-ZZ")
    if bind is not None:
        args += ["-D", bind.dn, "-w", bind.password]
    return args


@dataclass(frozen=True)
class Search:
    result: ToolResult
    output: LdapsearchOutput

    @property
    def dns(self) -> list[str]:
        return [entry.dn for entry in self.output.entries]

    def entry(self, dn: str) -> dict[str, list[str]]:
        for entry in self.output.entries:
            if entry.dn.lower() == dn.lower():
                return entry.attributes
        raise AssertionError(f"{dn} not among {self.dns}\n{self.result.describe()}")


def ldapsearch(
    server: LdapServer,
    base: str,
    filter_: str = "(objectClass=*)",
    attributes: Sequence[str] = (),
    *,
    bind: Credentials | None = None,
    scope: str = "sub",
    url: str | None = None,
    start_tls: bool = False,
    options: Sequence[str] = (),
    ca_path: Path | None = None,
) -> Search:
    argv = [
        "ldapsearch",
        *_connection_args(server, bind=bind, url=url, start_tls=start_tls),
        "-o", "ldif-wrap=no",
        "-l", "30",
        "-b", base,
        "-s", scope,
        *options,
        filter_,
        *attributes,
    ]  # fmt: skip
    result = run_tool(argv, env=ldap_client_env(ca_path or server.ca_path))
    return Search(result, parse_ldapsearch(result.stdout))


def ldapwhoami(
    server: LdapServer,
    *,
    bind: Credentials | None = None,
    url: str | None = None,
    start_tls: bool = False,
    ca_path: Path | None = None,
) -> ToolResult:
    argv = ["ldapwhoami", *_connection_args(server, bind=bind, url=url, start_tls=start_tls)]
    return run_tool(argv, env=ldap_client_env(ca_path or server.ca_path))


def ldappasswd(
    server: LdapServer,
    bind: Credentials,
    *,
    old: str | None,
    new: str | None,
    start_tls: bool = True,
) -> ToolResult:
    argv = ["ldappasswd", *_connection_args(server, bind=bind, url=None, start_tls=start_tls)]
    if old is not None:
        argv += ["-a", old]
    if new is not None:
        argv += ["-s", new]
    return run_tool(argv, env=ldap_client_env(server.ca_path))


def ldapcompare(server: LdapServer, bind: Credentials, dn: str, assertion: str) -> ToolResult:
    argv = ["ldapcompare", *_connection_args(server, bind=bind, url=None, start_tls=False)]
    argv += [dn, assertion]
    return run_tool(argv, env=ldap_client_env(server.ca_path))


def whoami(
    server: LdapServer, bind: Credentials, *, url: str | None = None, start_tls: bool = False
) -> str | None:
    """The DN ``ldapwhoami`` reports after binding with ``bind`` (lower-cased), or None
    when the bind is refused with invalidCredentials; anything else fails the test."""
    result = ldapwhoami(server, bind=bind, url=url, start_tls=start_tls)
    if result.returncode == INVALID_CREDENTIALS:
        return None
    assert result.returncode == SUCCESS, result.describe()
    return result.stdout.strip().removeprefix("dn:").lower()


def python_ldap_whoami(server: LdapServer, bind: Credentials, *, start_tls: bool = False) -> str:
    """Bind with python-ldap (libldap through its C binding) and ask WhoAmI.

    Returns the authzId (``dn:...``); a refused bind raises ``ldap.INVALID_CREDENTIALS``.
    """
    import ldap

    conn = ldap.initialize(server.ldap_url)
    try:
        conn.protocol_version = ldap.VERSION3
        conn.set_option(ldap.OPT_REFERRALS, 0)
        conn.set_option(ldap.OPT_NETWORK_TIMEOUT, 10)
        conn.set_option(ldap.OPT_TIMEOUT, 10)
        conn.set_option(ldap.OPT_X_TLS_CACERTFILE, str(server.ca_path))
        conn.set_option(ldap.OPT_X_TLS_REQUIRE_CERT, ldap.OPT_X_TLS_DEMAND)
        conn.set_option(ldap.OPT_X_TLS_NEWCTX, 0)
        if start_tls:
            conn.start_tls_s()
        conn.simple_bind_s(bind.dn, bind.password)
        return str(conn.whoami_s())
    finally:
        conn.unbind_s()
