"""Service accounts as an admin and an LDAP client see them: create, bind, limits, delete.

A service account is a machine identity (a NAS, an SSSD host, a sync script). It lives at
``cn=<name>,ou=users,<base>`` beside the people, binds only with an app-password token,
has no password, and is never a ``posixAccount``. Every test runs on SQLite, PostgreSQL
and MariaDB (the ``ldap_server`` fixture), through ``ldapwhoami``/``ldapsearch``/
``ldappasswd`` and python-ldap.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import ldap
import pytest

from e2e.clients import (
    ALICE_PASSWORD,
    SUCCESS,
    TOKEN_PATTERN,
    UNWILLING_TO_PERFORM,
    Credentials,
    ldappasswd,
    ldapsearch,
    python_ldap_whoami,
    whoami,
)
from e2e.harness import LDAPSRV_COMMAND, LdapServer, require_service, run_tool

HEALTH_ACCOUNT = "ldapsrv-health"


@pytest.fixture(scope="module", autouse=True)
def _ldap_utils() -> None:
    require_service("ldap-utils")


@pytest.fixture(scope="module")
def server(ldap_server: LdapServer) -> LdapServer:
    """The module's server with alice (a person with a password) and a developers group."""
    ldap_server.add_user("alice", ALICE_PASSWORD)
    ldap_server.add_group("developers", ["alice"])
    return ldap_server


def uid_dn(server: LdapServer, name: str) -> str:
    return f"uid={name},ou=users,{server.base_dn}"


def token_of(server: LdapServer, created: dict[str, object]) -> Credentials:
    return Credentials(server.user_dn(str(created["name"])), str(created["token"]))


def failed(server: LdapServer, *args: str) -> str:
    """Run an admin command that must fail; its error message (stderr)."""
    result = server.ctl(*args, check=False)
    assert result.returncode != 0, f"ldapsrv {' '.join(args)} succeeded:\n{result.stdout}"
    return result.stderr


# ---------------------------------------------------------------- create + bind


def test_create_prints_username_bind_dn_and_a_token_that_binds(server: LdapServer) -> None:
    result = server.ctl("service-account", "create", "nas-backup")
    text = result.stdout
    assert "nas-backup" in text
    assert server.user_dn("nas-backup") in text
    tokens = TOKEN_PATTERN.findall(text)
    assert len(tokens) == 1, text
    assert "store" in text.lower(), "the output reminds the admin to store the token"

    bind = Credentials(server.user_dn("nas-backup"), tokens[0])
    assert whoami(server, bind) == server.user_dn("nas-backup").lower()


def test_create_json_names_the_bind_dn_and_an_expiry_360_days_ahead(server: LdapServer) -> None:
    created = server.create_service_account("sync-script")
    assert created["name"] == "sync-script"
    assert created["dn"] == server.user_dn("sync-script")
    assert created["intent"] == "app_password"
    assert created["expiring"] is True
    expires = datetime.fromisoformat(str(created["expires"]).replace("Z", "+00:00"))
    expected = datetime.now(UTC) + timedelta(days=360)
    assert abs(expires - expected) < timedelta(minutes=5), created["expires"]


def test_no_expiring_service_account_token_never_expires(server: LdapServer) -> None:
    created = server.create_service_account("qnap", "--no-expiring")
    assert created["expiring"] is False
    assert created["expires"] is None
    assert whoami(server, token_of(server, created)) == server.user_dn("qnap").lower()


def test_service_account_binds_with_the_uid_form_of_its_dn_and_whoami_says_cn(
    server: LdapServer,
) -> None:
    created = server.create_service_account("uid-form")
    bind = Credentials(uid_dn(server, "uid-form"), str(created["token"]))
    assert whoami(server, bind) == server.user_dn("uid-form").lower()


@pytest.mark.parametrize("start_tls", [False, True], ids=["plain", "starttls"])
def test_python_ldap_binds_a_service_account_with_its_token(
    server: LdapServer, start_tls: bool
) -> None:
    created = server.create_service_account(f"pyldap-{int(start_tls)}")
    authz = python_ldap_whoami(server, token_of(server, created), start_tls=start_tls)
    assert authz.lower() == f"dn:{created['dn']}".lower()


def test_ldapsearch_bound_with_a_token_finds_the_service_account_itself(
    server: LdapServer,
) -> None:
    created = server.create_service_account("searcher")
    search = ldapsearch(
        server,
        server.base_dn,
        "(cn=searcher)",
        ["objectClass", "uid", "cn"],
        bind=token_of(server, created),
    )
    assert search.result.returncode == SUCCESS, search.result.describe()
    entry = search.entry(server.user_dn("searcher"))
    assert entry["uid"] == ["searcher"]


# ------------------------------------------------------------------ the entry


def test_service_account_entry_is_an_application_process_and_never_a_posix_account(
    server: LdapServer,
) -> None:
    created = server.create_service_account("entry-check")
    bind = token_of(server, created)
    search = ldapsearch(server, str(created["dn"]), scope="base", bind=bind, attributes=["*", "+"])
    assert search.result.returncode == SUCCESS, search.result.describe()
    entry = search.entry(str(created["dn"]))
    classes = {value.lower() for value in entry["objectclass"]}
    assert {"applicationprocess", "uidobject"} <= classes
    assert "posixaccount" not in classes
    assert not {"uidnumber", "gidnumber", "homedirectory", "loginshell"} & set(entry)
    assert "userpassword" not in entry

    posix = ldapsearch(
        server, server.base_dn, "(&(objectClass=posixAccount)(uid=entry-check))", bind=bind
    )
    assert posix.result.returncode == SUCCESS, posix.result.describe()
    assert posix.dns == []


# ------------------------------------------------------------------ limitations


@pytest.mark.parametrize(
    "password",
    ["a-Password-that-is-no-token-1", "ldsrv_not-a-real-token"],
    ids=["password", "token-lookalike"],
)
def test_service_account_refuses_a_password_bind(server: LdapServer, password: str) -> None:
    server.create_service_account(f"nopass-{len(password)}")
    bind = Credentials(server.user_dn(f"nopass-{len(password)}"), password)
    assert whoami(server, bind) is None


def test_set_password_for_a_service_account_is_refused_with_a_clear_message(
    server: LdapServer,
) -> None:
    created = server.create_service_account("no-set-password")
    result = server.ctl(
        "user", "set-password", "no-set-password", "--password-stdin",
        stdin="a-New-Password-1\n", check=False,
    )  # fmt: skip
    assert result.returncode != 0, result.stdout
    assert "service account" in result.stderr.lower(), result.stderr
    # and nothing changed: the token still binds, the password does not
    assert whoami(server, token_of(server, created)) is not None
    assert whoami(server, Credentials(str(created["dn"]), "a-New-Password-1")) is None


def test_ldappasswd_for_a_service_account_is_refused_with_unwilling_to_perform(
    server: LdapServer,
) -> None:
    created = server.create_service_account("no-passwd")
    bind = token_of(server, created)
    result = ldappasswd(server, bind, old=bind.password, new="a-New-Password-2")
    # ldappasswd exits 1 and prints the result code and the server's message.
    assert result.returncode != SUCCESS, result.describe()
    output = result.stdout + result.stderr
    assert f"({UNWILLING_TO_PERFORM})" in output, result.describe()
    assert "no-passwd is a service account" in output, result.describe()
    assert whoami(server, bind) is not None, "the token still binds after the refusal"


def test_python_ldap_password_modify_for_a_service_account_is_refused(
    server: LdapServer,
) -> None:
    created = server.create_service_account("no-passwd-py")
    conn = ldap.initialize(server.ldap_url)
    try:
        conn.set_option(ldap.OPT_NETWORK_TIMEOUT, 10)
        conn.set_option(ldap.OPT_TIMEOUT, 10)
        conn.simple_bind_s(str(created["dn"]), str(created["token"]))
        with pytest.raises(ldap.UNWILLING_TO_PERFORM) as refused:
            conn.passwd_s(None, str(created["token"]), "a-New-Password-3")
        assert "service account" in str(refused.value).lower()
    finally:
        conn.unbind_s()


# ------------------------------------------------------------ name validation


def test_a_151_character_name_is_refused_and_150_accepted(server: LdapServer) -> None:
    message = failed(server, "service-account", "create", "s" * 151)
    assert "150" in message, message
    created = server.create_service_account("s" * 150)
    assert whoami(server, token_of(server, created)) == server.user_dn("s" * 150).lower()


@pytest.mark.parametrize("name", ["bad name", "nas,ou=x", "näs", "-leading-dash", "trailing."])
def test_names_with_bad_characters_are_refused_with_the_rule(server: LdapServer, name: str) -> None:
    message = failed(server, "service-account", "create", name)
    assert "name" in message.lower(), message
    listed = server.ctl_json("service-account", "list")["service_accounts"]
    assert name not in {account["name"] for account in listed}


@pytest.mark.parametrize("name", ["alice", "ALICE", "Alice"])
def test_a_name_taken_by_a_person_in_any_case_is_refused(server: LdapServer, name: str) -> None:
    message = failed(server, "service-account", "create", name)
    assert "alice" in message.lower() and "exist" in message.lower(), message
    # alice is untouched: still a person who binds with her password
    assert whoami(server, Credentials(server.user_dn("alice"), ALICE_PASSWORD)) is not None


def test_a_name_taken_by_another_service_account_in_any_case_is_refused(
    server: LdapServer,
) -> None:
    server.create_service_account("dup-check")
    message = failed(server, "service-account", "create", "DUP-Check")
    assert "exist" in message.lower(), message


# ------------------------------------------------------------------ --create-group


def test_create_group_makes_a_group_named_after_the_account_with_it_as_member(
    server: LdapServer,
) -> None:
    created = server.create_service_account("nas-grouped", "--create-group")
    assert created["group"] == "nas-grouped"
    group = server.ctl_json("group", "show", "nas-grouped")
    assert group["members"] == ["nas-grouped"]

    search = ldapsearch(
        server, server.group_dn("nas-grouped"), scope="base", bind=token_of(server, created),
        attributes=["member"],
    )  # fmt: skip
    assert search.result.returncode == SUCCESS, search.result.describe()
    members = [m.lower() for m in search.entry(server.group_dn("nas-grouped"))["member"]]
    assert members == [server.user_dn("nas-grouped").lower()]


def test_create_group_creates_nothing_when_the_group_name_is_taken(server: LdapServer) -> None:
    server.add_group("taken-name")
    message = failed(server, "service-account", "create", "taken-name", "--create-group")
    assert "taken-name" in message and "exist" in message.lower(), message
    assert server.ctl("service-account", "show", "taken-name", check=False).returncode != 0
    tokens = server.ctl_json("token", "list")["tokens"]
    assert "taken-name" not in {token["account"] for token in tokens}
    assert server.ctl_json("group", "show", "taken-name")["members"] == []
    # the name is still free for an account without a group
    server.create_service_account("taken-name")


# ------------------------------------------------------------ list / show / delete


def test_list_shows_service_accounts_and_the_internal_health_account(server: LdapServer) -> None:
    server.create_service_account("listed")
    accounts = {
        a["name"]: a for a in server.ctl_json("service-account", "list")["service_accounts"]
    }
    assert accounts["listed"]["kind"] == "service_account"
    assert accounts["listed"]["dn"] == server.user_dn("listed")
    assert accounts[HEALTH_ACCOUNT]["kind"] == "internal_service_account"
    assert "alice" not in accounts


def test_show_lists_the_tokens_without_their_values(server: LdapServer) -> None:
    created = server.create_service_account("shown")
    shown = server.ctl_json("service-account", "show", "shown")
    assert [t["identifier"] for t in shown["tokens"]] == [created["token_identifier"]]
    text = json.dumps(shown) + server.ctl("service-account", "show", "shown").stdout
    assert str(created["token"]) not in text
    assert not TOKEN_PATTERN.search(text)


def test_delete_revokes_every_token_and_removes_the_memberships(server: LdapServer) -> None:
    created = server.create_service_account("doomed", "--create-group")
    second = server.create_token("doomed-extra", "doomed")
    server.ctl("group", "add-member", "developers", "doomed")
    first_bind = token_of(server, created)
    second_bind = Credentials(str(created["dn"]), str(second["value"]))
    assert whoami(server, first_bind) is not None
    assert whoami(server, second_bind) is not None

    deleted = server.ctl_json("service-account", "delete", "doomed")
    assert deleted["tokens_revoked"] == 2

    assert whoami(server, first_bind) is None
    assert whoami(server, second_bind) is None
    identifiers = {t["identifier"] for t in server.ctl_json("token", "list")["tokens"]}
    assert not {"doomed", "doomed-extra"} & identifiers
    # As implemented: the group made by --create-group stays, without its member.
    assert server.ctl_json("group", "show", "doomed")["members"] == []
    assert "doomed" not in server.ctl_json("group", "show", "developers")["members"]
    assert server.ctl("service-account", "show", "doomed", check=False).returncode != 0


def test_a_deleted_name_can_be_created_again_and_the_old_token_stays_dead(
    server: LdapServer,
) -> None:
    old = server.create_service_account("reborn")
    server.ctl("service-account", "delete", "reborn")
    new = server.create_service_account("reborn")
    assert whoami(server, token_of(server, old)) is None
    assert whoami(server, token_of(server, new)) == server.user_dn("reborn").lower()


# -------------------------------------------------------------- internal accounts


def test_the_internal_health_account_cannot_be_deleted_or_given_tokens(
    server: LdapServer,
) -> None:
    message = failed(server, "service-account", "delete", HEALTH_ACCOUNT)
    assert "internal" in message.lower(), message
    message = failed(server, "token", "create", "--identifier", "steal", "--user", HEALTH_ACCOUNT)
    assert "internal" in message.lower(), message
    message = failed(server, "service-account", "create", HEALTH_ACCOUNT)
    assert "exist" in message.lower() or "internal" in message.lower(), message


def test_ldapsrv_health_exits_zero_against_a_running_server(server: LdapServer) -> None:
    result = server.ctl("health", check=False)
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    assert "healthy" in result.stdout
    as_json = server.ctl("health", "--json", check=False)
    assert as_json.returncode == 0, f"{as_json.stdout}\n{as_json.stderr}"
    document = json.loads(as_json.stdout)
    steps = {step["step"]: step["ok"] for step in document["steps"]}
    assert steps and all(steps.values()), document
    assert {"bind", "whoami"} <= set(steps)
    assert not TOKEN_PATTERN.search(result.stdout + result.stderr + as_json.stdout)


def test_ldapsrv_health_exits_one_without_a_server(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-control.sock"
    result = run_tool([*LDAPSRV_COMMAND, "health", "--socket", str(missing)], timeout=60)
    assert result.returncode == 1, result.describe()
    assert "healthy" not in result.stdout.replace("unhealthy", ""), result.describe()
