"""The server as OpenLDAP's command-line clients (ldap-utils, libldap) see it."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from e2e.clients import (
    ALICE_PASSWORD,
    BOB_PASSWORD,
    COMPARE_FALSE,
    COMPARE_TRUE,
    INVALID_CREDENTIALS,
    PAGED_RESULTS_OID,
    PASSWORD_MODIFY_OID,
    SIZE_LIMIT_EXCEEDED,
    STARTTLS_OID,
    SUCCESS,
    WHOAMI_OID,
    Credentials,
    add_users_concurrently,
    alice,
    ldapcompare,
    ldappasswd,
    ldapsearch,
    ldapwhoami,
    populate,
)
from e2e.harness import LdapServer, require_service

BULK_USERS = 250
BULK_PREFIX = "bulk"

OPERATIONAL = ("entryuuid", "entrydn", "createtimestamp", "modifytimestamp")


@pytest.fixture(scope="module", autouse=True)
def _ldap_utils() -> None:
    require_service("ldap-utils")


@pytest.fixture(scope="module")
def server(ldap_server: LdapServer) -> LdapServer:
    """The module's server with alice, bob, carol, developers and ops; alice (whom
    most tests bind as) reads the whole directory through a direct grant."""
    populate(ldap_server)
    ldap_server.grant("search_full_directory", user="alice")
    return ldap_server


@pytest.fixture(scope="module")
def bulk_users(server: LdapServer) -> list[str]:
    names = [f"{BULK_PREFIX}{i:04d}" for i in range(BULK_USERS)]
    add_users_concurrently(server, names)
    return names


def new_user(server: LdapServer, name: str, password: str) -> Credentials:
    server.add_user(name, password)
    return Credentials(server.user_dn(name), password)


# ------------------------------------------------------------------------ rootDSE


def test_root_dse_names_the_base_and_advertises_paging_starttls_and_extended_ops(
    server: LdapServer,
) -> None:
    search = ldapsearch(
        server,
        "",
        "(objectClass=*)",
        ["namingContexts", "supportedControl", "supportedExtension", "supportedLDAPVersion"],
        scope="base",
    )
    assert search.result.returncode == SUCCESS, search.result.describe()
    assert search.dns == [""], search.result.describe()
    root = search.entry("")
    assert root["namingcontexts"] == [server.base_dn]
    assert PAGED_RESULTS_OID in root["supportedcontrol"]
    assert {STARTTLS_OID, WHOAMI_OID, PASSWORD_MODIFY_OID} <= set(root["supportedextension"])
    assert "3" in root["supportedldapversion"]


@pytest.mark.parametrize("filter_", ["(objectClass=*)", "(objectclass=*)", "(OBJECTCLASS=*)"])
def test_root_dse_is_readable_anonymously_with_any_objectclass_filter_spelling(
    server: LdapServer, filter_: str
) -> None:
    search = ldapsearch(server, "", filter_, ["namingContexts", "supportedControl"], scope="base")
    assert search.result.returncode == SUCCESS, search.result.describe()
    assert search.entry("")["namingcontexts"] == [server.base_dn]


def test_anonymous_clients_cannot_search_the_directory(server: LdapServer) -> None:
    search = ldapsearch(server, server.base_dn, "(objectClass=*)")
    assert search.output.entries == [], search.result.describe()
    search = ldapsearch(server, server.base_dn, "(uid=alice)")
    assert search.output.entries == [], search.result.describe()


def test_anonymous_read_setting_lets_anonymous_clients_search(
    ldap_server_factory: Callable[..., LdapServer],
) -> None:
    open_server = ldap_server_factory(settings={"security": {"anonymous_read": True}})
    open_server.add_user("dora")
    search = ldapsearch(open_server, open_server.base_dn, "(uid=dora)", ["uid"])
    assert search.result.returncode == SUCCESS, search.result.describe()
    assert search.dns == [open_server.user_dn("dora")]


# ------------------------------------------------------------------ entries


def test_user_entry_carries_person_and_posix_attributes_but_no_password(
    server: LdapServer,
) -> None:
    search = ldapsearch(server, server.base_dn, "(uid=alice)", bind=alice(server))
    assert search.result.returncode == SUCCESS, search.result.describe()
    assert search.dns == [server.user_dn("alice")]
    entry = search.entry(server.user_dn("alice"))
    assert {"inetorgperson", "posixaccount"} <= {v.lower() for v in entry["objectclass"]}
    assert entry["uid"] == ["alice"]
    assert entry["cn"] == ["alice"]
    assert entry["homedirectory"] == ["/home/alice"]
    assert entry["loginshell"] == ["/bin/bash"]
    assert entry["mail"] == ["alice@example.org"]
    assert entry["displayname"] == ["Alice Liddell"]
    assert entry["givenname"] == ["Alice"]
    assert entry["sn"] == ["Liddell"]
    assert int(entry["uidnumber"][0]) > 0
    assert int(entry["gidnumber"][0]) > 0
    assert server.group_dn("developers").lower() in {v.lower() for v in entry["memberof"]}
    assert "userpassword" not in entry
    assert not any(key.startswith("entry") for key in entry)  # operational only on "+"


def test_password_hashes_are_not_returned_even_when_asked_for(server: LdapServer) -> None:
    search = ldapsearch(
        server, server.base_dn, "(uid=alice)", ["userPassword", "*", "+"], bind=alice(server)
    )
    assert search.result.returncode == SUCCESS, search.result.describe()
    entry = search.entry(server.user_dn("alice"))
    assert "userpassword" not in entry
    assert "{crypt}" not in search.result.stdout.lower()
    assert "$2b$" not in search.result.stdout


def test_group_entry_lists_members_as_dns_and_as_uids(server: LdapServer) -> None:
    dn = server.group_dn("developers")
    search = ldapsearch(server, dn, scope="base", bind=alice(server))
    assert search.result.returncode == SUCCESS, search.result.describe()
    entry = search.entry(dn)
    assert {"posixgroup", "groupofnames"} <= {v.lower() for v in entry["objectclass"]}
    assert entry["cn"] == ["developers"]
    assert entry["description"] == ["Software developers"]
    assert int(entry["gidnumber"][0]) > 0
    assert {v.lower() for v in entry["member"]} == {
        server.user_dn("alice").lower(),
        server.user_dn("bob").lower(),
    }
    assert sorted(entry["memberuid"]) == ["alice", "bob"]


def test_user_without_explicit_group_has_users_as_primary_group(server: LdapServer) -> None:
    creds = alice(server)
    user = ldapsearch(server, server.user_dn("carol"), scope="base", bind=creds)
    group = ldapsearch(server, server.group_dn("users"), scope="base", bind=creds)
    assert group.result.returncode == SUCCESS, group.result.describe()
    users = group.entry(server.group_dn("users"))
    assert user.entry(server.user_dn("carol"))["gidnumber"] == users["gidnumber"]
    assert "carol" in users["memberuid"]


def test_scopes_one_and_sub_and_base_select_the_right_entries(server: LdapServer) -> None:
    creds = alice(server)
    one = ldapsearch(server, server.base_dn, scope="one", bind=creds, attributes=["1.1"])
    assert one.result.returncode == SUCCESS, one.result.describe()
    assert {dn.lower() for dn in one.dns} == {
        f"ou=users,{server.base_dn}",
        f"ou=groups,{server.base_dn}",
    }
    groups = ldapsearch(
        server, f"ou=groups,{server.base_dn}", scope="one", bind=creds, attributes=["cn"]
    )
    names = {entry.get("cn")[0] for entry in groups.output.entries}
    assert {"developers", "ops", "users"} <= names
    assert not any(dn.lower().endswith(f"ou=users,{server.base_dn}") for dn in groups.dns)


# -------------------------------------------------------- filters SSSD sends


def test_sssd_user_by_name_filter_finds_exactly_alice(server: LdapServer) -> None:
    search = ldapsearch(
        server,
        server.base_dn,
        "(&(uid=alice)(objectClass=posixAccount)(uid=*)(&(uidNumber=*)(!(uidNumber=0))))",
        ["uid", "uidNumber", "gidNumber", "homeDirectory", "loginShell", "gecos", "cn"],
        bind=alice(server),
    )
    assert search.result.returncode == SUCCESS, search.result.describe()
    assert search.dns == [server.user_dn("alice")]


def test_sssd_user_by_uid_number_filter_finds_exactly_alice(server: LdapServer) -> None:
    creds = alice(server)
    uid_number = ldapsearch(
        server, server.user_dn("alice"), scope="base", bind=creds, attributes=["uidNumber"]
    ).entry(server.user_dn("alice"))["uidnumber"][0]
    search = ldapsearch(
        server,
        server.base_dn,
        f"(&(uidNumber={uid_number})(objectClass=posixAccount)(uid=*)"
        "(&(uidNumber=*)(!(uidNumber=0))))",
        ["uid"],
        bind=creds,
    )
    assert search.result.returncode == SUCCESS, search.result.describe()
    assert search.dns == [server.user_dn("alice")]


def test_sssd_rfc2307bis_membership_filter_finds_groups_by_member_dn(server: LdapServer) -> None:
    search = ldapsearch(
        server,
        server.base_dn,
        f"(&(member={server.user_dn('alice')})(objectClass=posixGroup)(cn=*))",
        ["cn", "gidNumber"],
        bind=alice(server),
        options=["-E", "pr=1000/noprompt"],
    )
    assert search.result.returncode == SUCCESS, search.result.describe()
    names = {entry.get("cn")[0] for entry in search.output.entries}
    assert "developers" in names
    assert "ops" not in names


def test_sssd_rfc2307_membership_filter_matches_lowercase_attribute_names(
    server: LdapServer,
) -> None:
    search = ldapsearch(
        server,
        server.base_dn,
        "(&(memberuid=bob)(objectClass=posixGroup)(cn=*)(&(gidNumber=*)(!(gidNumber=0))))",
        ["cn", "memberuid", "memberUid", "MEMBERUID"],
        bind=alice(server),
    )
    assert search.result.returncode == SUCCESS, search.result.describe()
    names = {entry.get("cn")[0] for entry in search.output.entries}
    assert "developers" in names and "ops" not in names
    entry = search.entry(server.group_dn("developers"))
    # A repeated attribute request yields the attribute once, with each value once.
    assert sorted(entry["memberuid"]) == ["alice", "bob"]


def test_sudo_role_paged_search_succeeds_with_no_entries(server: LdapServer) -> None:
    search = ldapsearch(
        server,
        server.base_dn,
        "(&(objectClass=sudoRole)(|(!(sudoHost=*))(sudoHost=ALL)(sudoHost=vm)))",
        ["objectClass", "cn", "sudoCommand", "sudoHost", "sudoUser"],
        bind=alice(server),
        options=["-E", "pr=1000/noprompt"],
    )
    assert search.result.returncode == SUCCESS, search.result.describe()
    assert search.output.entries == []
    assert [r.code for r in search.output.results] == [SUCCESS]


# ---------------------------------------------------------------- paging


@pytest.mark.parametrize("page_size", [100, 33])
def test_paged_search_returns_every_user_once_in_full_pages(
    server: LdapServer, bulk_users: list[str], page_size: int
) -> None:
    search = ldapsearch(
        server,
        f"ou=users,{server.base_dn}",
        f"(uid={BULK_PREFIX}*)",
        ["uid"],
        bind=alice(server),
        options=["-E", f"pr={page_size}/noprompt"],
    )
    assert search.result.returncode == SUCCESS, search.result.describe()
    uids = [entry.get("uid")[0] for entry in search.output.entries]
    assert sorted(uids) == sorted(bulk_users)  # all of them, none twice
    pages = search.output.pages
    expected_pages = -(-len(bulk_users) // page_size)
    assert [len(page) for page in pages] == [page_size] * (expected_pages - 1) + [
        len(bulk_users) - page_size * (expected_pages - 1)
    ]
    results = search.output.results
    assert all(r.code == SUCCESS for r in results)
    assert all(any(c.startswith(PAGED_RESULTS_OID) for c in r.controls) for r in results)
    assert all(r.paged_cookie for r in results[:-1]), "every page but the last has a cookie"
    assert results[-1].paged_cookie == "", "the last page ends the paging with an empty cookie"


def test_size_limit_returns_that_many_entries_and_size_limit_exceeded(
    server: LdapServer, bulk_users: list[str]
) -> None:
    search = ldapsearch(
        server,
        f"ou=users,{server.base_dn}",
        f"(uid={BULK_PREFIX}*)",
        ["uid"],
        bind=alice(server),
        options=["-z", "2"],
    )
    assert search.result.returncode == SIZE_LIMIT_EXCEEDED, search.result.describe()
    assert len(search.output.entries) == 2


# ------------------------------------------------------ attribute selection


def test_types_only_returns_attribute_names_without_values(server: LdapServer) -> None:
    search = ldapsearch(
        server,
        server.user_dn("alice"),
        scope="base",
        bind=alice(server),
        attributes=["uid", "mail"],
        options=["-A"],
    )
    assert search.result.returncode == SUCCESS, search.result.describe()
    entry = search.entry(server.user_dn("alice"))
    assert set(entry) == {"uid", "mail"}
    assert all(values == [""] for values in entry.values()), entry
    assert "alice@example.org" not in search.result.stdout


def test_attribute_1_1_returns_only_distinguished_names(server: LdapServer) -> None:
    search = ldapsearch(
        server, server.base_dn, "(objectClass=posixAccount)", ["1.1"], bind=alice(server)
    )
    assert search.result.returncode == SUCCESS, search.result.describe()
    assert server.user_dn("alice").lower() in {dn.lower() for dn in search.dns}
    assert all(entry.attributes == {} for entry in search.output.entries)


def test_plus_returns_operational_attributes_and_star_returns_user_attributes(
    server: LdapServer,
) -> None:
    dn = server.user_dn("alice")
    creds = alice(server)
    plus = ldapsearch(server, dn, scope="base", bind=creds, attributes=["+"]).entry(dn)
    assert set(OPERATIONAL) <= set(plus), plus
    assert "uid" not in plus and "mail" not in plus
    assert plus["entrydn"][0].lower() == dn.lower()
    assert re.fullmatch(r"\d{14}(\.\d+)?Z", plus["createtimestamp"][0])
    assert re.fullmatch(
        r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
        plus["entryuuid"][0].lower(),
    )

    star = ldapsearch(server, dn, scope="base", bind=creds, attributes=["*"]).entry(dn)
    assert {"uid", "mail", "uidnumber"} <= set(star)
    assert not set(OPERATIONAL) & set(star)

    both = ldapsearch(server, dn, scope="base", bind=creds, attributes=["*", "+"]).entry(dn)
    assert {"uid", "mail", *OPERATIONAL} <= set(both)


# ------------------------------------------------------------------ TLS


def test_starttls_search_with_the_development_ca(server: LdapServer) -> None:
    search = ldapsearch(
        server, server.base_dn, "(uid=alice)", ["uid"], bind=alice(server), start_tls=True
    )
    assert search.result.returncode == SUCCESS, search.result.describe()
    assert search.dns == [server.user_dn("alice")]


def test_starttls_refuses_a_server_certificate_from_an_untrusted_ca(
    server: LdapServer, tmp_path: Path
) -> None:
    from ldapsrv.tls import ensure_dev_certificate

    other_ca = ensure_dev_certificate(tmp_path).ca_path
    result = ldapwhoami(server, bind=alice(server), start_tls=True, ca_path=other_ca)
    assert result.returncode != SUCCESS, result.describe()
    ok = ldapwhoami(server, bind=alice(server), start_tls=True)
    assert ok.returncode == SUCCESS, ok.describe()


def test_ldaps_search_with_the_development_ca(server: LdapServer) -> None:
    search = ldapsearch(
        server, server.base_dn, "(uid=alice)", ["uid"], bind=alice(server), url=server.ldaps_url
    )
    assert search.result.returncode == SUCCESS, search.result.describe()
    assert search.dns == [server.user_dn("alice")]


# ------------------------------------------------------------- ldapwhoami


def test_whoami_anonymous(server: LdapServer) -> None:
    result = ldapwhoami(server)
    assert result.returncode == SUCCESS, result.describe()
    assert result.stdout.strip() == "anonymous"


@pytest.mark.parametrize("transport", ["plain", "starttls", "ldaps"])
def test_whoami_after_bind_names_the_user(server: LdapServer, transport: str) -> None:
    result = ldapwhoami(
        server,
        bind=alice(server),
        url=server.ldaps_url if transport == "ldaps" else None,
        start_tls=transport == "starttls",
    )
    assert result.returncode == SUCCESS, result.describe()
    assert result.stdout.strip().lower() == f"dn:{server.user_dn('alice')}".lower()


def test_bind_with_uid_rdn_and_any_case_is_the_same_user(server: LdapServer) -> None:
    dn = f"UID=Alice,OU=Users,{server.base_dn.upper()}"
    result = ldapwhoami(server, bind=Credentials(dn, ALICE_PASSWORD))
    assert result.returncode == SUCCESS, result.describe()
    assert result.stdout.strip().lower() == f"dn:{server.user_dn('alice')}".lower()


@pytest.mark.parametrize(
    "who", ["wrong-password", "unknown-user", "user-without-password", "empty-base"]
)
def test_failed_binds_exit_with_invalid_credentials(server: LdapServer, who: str) -> None:
    bind = {
        "wrong-password": Credentials(server.user_dn("alice"), BOB_PASSWORD),
        "unknown-user": Credentials(server.user_dn("nobody"), ALICE_PASSWORD),
        "user-without-password": Credentials(server.user_dn("carol"), "anything"),
        "empty-base": Credentials(f"cn=alice,{server.base_dn}", ALICE_PASSWORD),
    }[who]
    result = ldapwhoami(server, bind=bind)
    assert result.returncode == INVALID_CREDENTIALS, result.describe()


# ------------------------------------------------------------- ldappasswd


def test_ldappasswd_self_change_replaces_the_old_password(server: LdapServer) -> None:
    user = new_user(server, "erin", "erin-Old-Password")
    changed = ldappasswd(server, user, old=user.password, new="erin-New-Password")
    assert changed.returncode == SUCCESS, changed.describe()

    new = ldapwhoami(server, bind=Credentials(user.dn, "erin-New-Password"))
    assert new.returncode == SUCCESS, new.describe()
    old = ldapwhoami(server, bind=user)
    assert old.returncode == INVALID_CREDENTIALS, old.describe()


def test_ldappasswd_with_a_wrong_old_password_changes_nothing(server: LdapServer) -> None:
    user = new_user(server, "frank", "frank-Password-1")
    refused = ldappasswd(server, user, old="not-the-password", new="frank-Password-2")
    assert refused.returncode != SUCCESS, refused.describe()
    assert ldapwhoami(server, bind=user).returncode == SUCCESS
    stolen = ldapwhoami(server, bind=Credentials(user.dn, "frank-Password-2"))
    assert stolen.returncode == INVALID_CREDENTIALS, stolen.describe()


def test_ldappasswd_without_new_password_prints_a_generated_one_that_binds(
    server: LdapServer,
) -> None:
    user = new_user(server, "grace", "grace-Old-Password")
    changed = ldappasswd(server, user, old=user.password, new=None)
    assert changed.returncode == SUCCESS, changed.describe()
    match = re.search(r"^New password: (\S+)$", changed.stdout, re.MULTILINE)
    assert match, changed.describe()
    generated = match.group(1)
    assert len(generated) >= 12

    assert ldapwhoami(server, bind=Credentials(user.dn, generated)).returncode == SUCCESS
    old = ldapwhoami(server, bind=user)
    assert old.returncode == INVALID_CREDENTIALS, old.describe()


# ------------------------------------------------------------- ldapcompare


def test_ldapcompare_answers_true_and_false(server: LdapServer) -> None:
    dn = server.user_dn("alice")
    same = ldapcompare(server, alice(server), dn, "uid:alice")
    assert same.returncode == COMPARE_TRUE, same.describe()
    assert same.stdout.strip() == "TRUE"
    other = ldapcompare(server, alice(server), dn, "uid:bob")
    assert other.returncode == COMPARE_FALSE, other.describe()
    assert other.stdout.strip() == "FALSE"
    mail = ldapcompare(server, alice(server), dn, "mail:ALICE@example.org")
    assert mail.returncode == COMPARE_TRUE, mail.describe()  # mail matches case-insensitively
