"""SSSD (NSS + PAM) against the server: what a Linux host sees through ldapsrv.

Root only: the tests start a real ``sssd``, rewrite its state under /var/lib/sss and
add a PAM service file. Every combination of transport (LDAPS, StartTLS on ldap://)
and group schema (rfc2307 ``memberUid``, rfc2307bis ``member`` DNs) is covered, since
SSSD asks the server different questions in each.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from e2e.clients import ALICE_PASSWORD, BOB_PASSWORD, Credentials, ldapsearch, populate
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

READER = "sssdreader"
READER_PASSWORD = "sssd-Reader-Password-1"


@dataclass(frozen=True)
class Posix:
    """What the directory says about alice, as numbers SSSD must reproduce."""

    uid_number: int
    gid_number: int
    developers_gid: int


@dataclass
class Host:
    """A host whose NSS and PAM go through SSSD to the server."""

    server: LdapServer
    sssd: Sssd
    variant: Variant
    pam_service: str
    posix: Posix

    def log_sections(self) -> list[tuple[str, str]]:
        return [(f"sssd log ({self.variant.id})", self.sssd.log_tail(200))]


@pytest.fixture(scope="module")
def sssd_ready() -> Iterator[str]:
    """Root, SSSD installed, nothing else running it, nsswitch and PAM prepared."""
    with prepared_host() as service:
        yield service


@pytest.fixture(scope="module")
def server(sssd_ready: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LdapServer]:
    workdir = tmp_path_factory.mktemp("ldapsrv-sssd")
    with fresh_database("sqlite", workdir) as url:
        server = start_server(workdir, url)
        try:
            populate(server)
            server.add_user(READER, READER_PASSWORD)
            # What the README tells admins: SSSD's bind account must see everyone.
            server.add_full_directory_reader(READER)
            yield server
        finally:
            server.stop()


@pytest.fixture(scope="module")
def posix(server: LdapServer) -> Posix:
    bind = Credentials(server.user_dn(READER), READER_PASSWORD)
    user = ldapsearch(
        server,
        server.user_dn("alice"),
        scope="base",
        bind=bind,
        attributes=["uidNumber", "gidNumber"],
    )
    group = ldapsearch(
        server, server.group_dn("developers"), scope="base", bind=bind, attributes=["gidNumber"]
    )
    alice = user.entry(server.user_dn("alice"))
    developers = group.entry(server.group_dn("developers"))
    return Posix(
        uid_number=int(alice["uidnumber"][0]),
        gid_number=int(alice["gidnumber"][0]),
        developers_gid=int(developers["gidnumber"][0]),
    )


@pytest.fixture(scope="module", params=VARIANTS, ids=lambda v: v.id)
def host(
    request: pytest.FixtureRequest,
    sssd_ready: str,
    server: LdapServer,
    posix: Posix,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Host]:
    variant: Variant = request.param
    target = Target(
        ldap_url=server.ldap_url,
        ldaps_url=server.ldaps_url,
        base_dn=server.base_dn,
        ca_path=server.ca_path,
        bind_dn=server.user_dn(READER),
        bind_password=READER_PASSWORD,
    )
    sssd = Sssd(tmp_path_factory.mktemp(f"sssd-{variant.id}"), render_sssd_conf(variant, target))
    sssd.start()
    try:
        first = wait_for_lookup("getent", "-s", "sss", "passwd", "alice")
        if first.returncode != 0:
            pytest.fail(
                f"SSSD ({variant.id}) never resolved alice:\n{first.describe()}\n"
                f"--- sssd log ---\n{sssd.log_tail(200)}\n"
                f"--- ldapsrv log ---\n{tail(server.log_text(), 100)}",
                pytrace=False,
            )
        yield Host(server, sssd, variant, sssd_ready, posix)
    finally:
        sssd.stop()


def test_getent_passwd_returns_alice_with_her_posix_attributes(host: Host) -> None:
    result = nss("getent", "-s", "sss", "passwd", "alice")
    assert result.returncode == 0, result.describe()
    name, _, uid, gid, _gecos, home, shell = result.stdout.strip().split(":")
    assert (name, int(uid), int(gid), home, shell) == (
        "alice",
        host.posix.uid_number,
        host.posix.gid_number,
        "/home/alice",
        "/bin/bash",
    )


def test_getent_passwd_by_uid_number_returns_alice(host: Host) -> None:
    result = nss("getent", "-s", "sss", "passwd", str(host.posix.uid_number))
    assert result.returncode == 0, result.describe()
    assert result.stdout.split(":")[0] == "alice"


def test_getent_passwd_does_not_invent_unknown_users(host: Host) -> None:
    result = nss("getent", "-s", "sss", "passwd", "nosuchuser")
    assert result.returncode == 2, result.describe()  # getent: key not found
    assert result.stdout == ""


def test_getent_group_lists_developers_and_their_members(host: Host) -> None:
    result = nss("getent", "-s", "sss", "group", "developers")
    assert result.returncode == 0, result.describe()
    name, _, gid, members = result.stdout.strip().split(":")
    assert (name, int(gid)) == ("developers", host.posix.developers_gid)
    assert set(members.split(",")) == {"alice", "bob"}


def test_initgroups_lists_primary_and_supplementary_groups(host: Host) -> None:
    result = nss("getent", "-s", "sss", "initgroups", "alice")
    assert result.returncode == 0, result.describe()
    name, *gids = result.stdout.split()
    assert name == "alice"
    assert {host.posix.gid_number, host.posix.developers_gid} <= {int(g) for g in gids}


def test_id_shows_primary_group_and_groups_by_name(host: Host) -> None:
    result = nss("id", "alice")
    assert result.returncode == 0, result.describe()
    text = result.stdout.strip()
    assert re.search(rf"\buid={host.posix.uid_number}\(alice\)", text), text
    assert re.search(rf"\bgid={host.posix.gid_number}\(users\)", text), text
    groups = dict(
        (int(gid), name) for gid, name in re.findall(r"(\d+)\(([^)]+)\)", text.split("groups=")[1])
    )
    assert groups.get(host.posix.gid_number) == "users", text
    assert groups.get(host.posix.developers_gid) == "developers", text


def test_pam_login_accepts_the_right_password(host: Host) -> None:
    result = pam_authenticate(host.pam_service, "alice", ALICE_PASSWORD)
    assert result.returncode == 0, result.describe()
    assert "successfully authenticated" in result.stdout + result.stderr


def test_pam_login_refuses_a_wrong_password(host: Host) -> None:
    result = pam_authenticate(host.pam_service, "alice", BOB_PASSWORD)
    assert result.returncode != 0, result.describe()
    assert "Authentication failure" in result.stdout + result.stderr, result.describe()
    # ...and the refusal was about the password: the right one still works afterwards.
    again = pam_authenticate(host.pam_service, "bob", BOB_PASSWORD)
    assert again.returncode == 0, again.describe()
