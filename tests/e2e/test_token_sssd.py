"""SSSD binding with a service account and its token, as the README tells admins to set up.

``ldap_default_bind_dn`` is the service account's DN and ``ldap_default_authtok`` its
token: SSSD must then resolve and authenticate people, and must never resolve the service
account itself (it is no posixAccount, so no host lets it log in). Root only; a real
``sssd`` is started per transport/schema variant.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from e2e.clients import ALICE_PASSWORD, BOB_PASSWORD, Credentials, populate, whoami
from e2e.harness import LdapServer, fresh_database, start_server, tail
from e2e.sssd_driver import (
    VARIANTS,
    Sssd,
    Target,
    Variant,
    nss,
    pam_authenticate,
    prepared_host,
    render_sssd_conf,
    wait_for_lookup,
)

pytestmark = pytest.mark.sssd

SERVICE_ACCOUNT = "sssd-host"
#: One variant per transport, each with a different group schema.
TOKEN_VARIANTS = [v for v in VARIANTS if v.id in ("ldaps-rfc2307bis", "starttls-rfc2307")]
#: How long a host with a refused bind is given to resolve alice anyway (it must not).
REFUSED_LOOKUP_WAIT = 8.0


@dataclass
class Host:
    server: LdapServer
    sssd: Sssd
    variant: Variant
    pam_service: str
    uid_number: int

    def log_sections(self) -> list[tuple[str, str]]:
        return [(f"sssd log ({self.variant.id})", self.sssd.log_tail(200))]


@pytest.fixture(scope="module")
def pam() -> Iterator[str]:
    with prepared_host() as service:
        yield service


@pytest.fixture(scope="module")
def server(pam: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LdapServer]:
    workdir = tmp_path_factory.mktemp("ldapsrv-token-sssd")
    with fresh_database("sqlite", workdir) as url:
        server = start_server(workdir, url)
        try:
            populate(server)
            yield server
        finally:
            server.stop()


@pytest.fixture(scope="module")
def token(server: LdapServer) -> Credentials:
    created = server.create_service_account(SERVICE_ACCOUNT)
    # What the README tells admins: SSSD's bind account must see everyone.
    server.add_full_directory_reader(SERVICE_ACCOUNT)
    return Credentials(str(created["dn"]), str(created["token"]))


def target(server: LdapServer, bind: Credentials) -> Target:
    return Target(
        ldap_url=server.ldap_url,
        ldaps_url=server.ldaps_url,
        base_dn=server.base_dn,
        ca_path=server.ca_path,
        bind_dn=bind.dn,
        bind_password=bind.password,
    )


@pytest.fixture(scope="module", params=TOKEN_VARIANTS, ids=lambda v: v.id)
def host(
    request: pytest.FixtureRequest,
    pam: str,
    server: LdapServer,
    token: Credentials,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Host]:
    variant: Variant = request.param
    config = render_sssd_conf(variant, target(server, token))
    assert f"ldap_default_bind_dn = {token.dn}" in config
    sssd = Sssd(tmp_path_factory.mktemp(f"sssd-token-{variant.id}"), config)
    sssd.start()
    try:
        first = wait_for_lookup("getent", "-s", "sss", "passwd", "alice")
        if first.returncode != 0:
            pytest.fail(
                f"SSSD ({variant.id}) bound as {token.dn} never resolved alice:\n"
                f"{first.describe()}\n--- sssd log ---\n{sssd.log_tail(200)}\n"
                f"--- ldapsrv log ---\n{tail(server.log_text(), 100)}",
                pytrace=False,
            )
        uid_number = int(first.stdout.split(":")[2])
        yield Host(server, sssd, variant, pam, uid_number)
    finally:
        sssd.stop()


def test_sssd_with_a_deleted_token_resolves_nobody(
    pam: str, server: LdapServer, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The negative control, run before any host below: their lookups work because
    of the token's bind, not despite it."""
    created = server.create_service_account("sssd-revoked")
    # Granted like the working account, so only the deleted token can explain a miss.
    server.add_full_directory_reader("sssd-revoked")
    revoked = Credentials(str(created["dn"]), str(created["token"]))
    server.ctl("token", "delete", str(created["token_identifier"]))
    assert whoami(server, revoked) is None
    variant = TOKEN_VARIANTS[0]
    sssd = Sssd(
        tmp_path_factory.mktemp("sssd-revoked"),
        render_sssd_conf(variant, target(server, revoked)),
    )
    sssd.start()
    try:
        result = wait_for_lookup(
            "getent", "-s", "sss", "passwd", "alice", timeout=REFUSED_LOOKUP_WAIT
        )
        assert result.returncode != 0, result.describe()
    finally:
        sssd.stop()


def test_getent_passwd_resolves_a_person_through_the_service_account_bind(host: Host) -> None:
    alice = host.server.ctl_json("user", "show", "alice")
    result = nss("getent", "-s", "sss", "passwd", "alice")
    assert result.returncode == 0, result.describe()
    name, _, uid, gid, *_ = result.stdout.strip().split(":")
    assert (name, int(uid), int(gid)) == ("alice", alice["uid_number"], alice["gid_number"])


def test_id_lists_the_persons_groups_through_the_service_account_bind(host: Host) -> None:
    result = nss("id", "alice")
    assert result.returncode == 0, result.describe()
    assert re.search(rf"\buid={host.uid_number}\(alice\)", result.stdout), result.stdout
    assert "(developers)" in result.stdout, result.stdout


def test_pam_login_of_a_person_works_through_the_service_account_bind(host: Host) -> None:
    ok = pam_authenticate(host.pam_service, "alice", ALICE_PASSWORD)
    assert ok.returncode == 0, ok.describe()
    wrong = pam_authenticate(host.pam_service, "alice", BOB_PASSWORD)
    assert wrong.returncode != 0, wrong.describe()


def test_the_service_account_is_no_user_for_getent_or_id(host: Host) -> None:
    getent = nss("getent", "-s", "sss", "passwd", SERVICE_ACCOUNT)
    assert getent.returncode == 2, getent.describe()  # key not found
    assert getent.stdout == ""
    ident = nss("id", SERVICE_ACCOUNT)
    assert ident.returncode != 0, ident.describe()
    assert "no such user" in ident.stderr.lower(), ident.describe()


def test_the_service_account_cannot_log_in_with_its_token(host: Host, token: Credentials) -> None:
    result = pam_authenticate(host.pam_service, SERVICE_ACCOUNT, token.password)
    assert result.returncode != 0, result.describe()
