"""Tokens end to end: app passwords bind over LDAP, everything else is refused with 49.

The module's server (on SQLite, PostgreSQL and MariaDB) has a rotation hook that records
what it is given and checks for expired tokens every two seconds. Expiry is real time
here (``--expires 4s``); the exact instant with an injected clock is proved by the unit
tests. A server checking only once an hour must still rotate a token right after its
expiry, by the timer it sets for the next expiry (the last test).
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import ldap
import pytest

from e2e.clients import (
    ALICE_PASSWORD,
    BOB_PASSWORD,
    TOKEN_PATTERN,
    Credentials,
    python_ldap_whoami,
    whoami,
)
from e2e.harness import (
    BACKENDS,
    LdapServer,
    RotationHookRecorder,
    require_service,
    serving,
)

CHECK_INTERVAL = 2
#: Longer than a test runs: a rotation at expiry must come from the expiry timer.
LONG_CHECK_INTERVAL = 3600
MAX_TOKEN_LENGTH = 64
#: How long after its expiry instant an expired token may still bind: not at all, but
#: the test's own clock reading and the bind round trip take a moment.
EXPIRY_SLACK = 1.0
HOOK_TIMEOUT = 15.0


@pytest.fixture(scope="module", autouse=True)
def _ldap_utils() -> None:
    require_service("ldap-utils")


def hook_dir(workdir: Path) -> Path:
    return workdir / "hook"


@pytest.fixture(scope="module", params=BACKENDS)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LdapServer]:
    """alice and bob (people with passwords), and a recording rotation hook."""
    backend = str(request.param)
    workdir = tmp_path_factory.mktemp(f"tokens-{backend}")
    recorder = RotationHookRecorder(hook_dir(workdir))
    settings = {
        "tokens": {
            "rotation_hook": recorder.command,
            "rotation_check_interval": CHECK_INTERVAL,
        }
    }
    with serving(backend, workdir, settings=settings) as server:
        server.add_user("alice", ALICE_PASSWORD)
        server.add_user("bob", BOB_PASSWORD)
        yield server


@pytest.fixture
def recorder(server: LdapServer) -> RotationHookRecorder:
    """What the module server's rotation hook was given."""
    return RotationHookRecorder(hook_dir(server.workdir))


def value_of(created: dict[str, Any]) -> str:
    """The token value in a ``--json`` answer: ``token`` for service-account create,
    ``value`` for token create/view/rotate."""
    return str(created.get("value") or created["token"])


def service_account(server: LdapServer, name: str, *options: str) -> Credentials:
    created = server.create_service_account(name, *options)
    return Credentials(server.user_dn(name), value_of(created))


def instant(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def other_token_value(value: str) -> str:
    """The same lookup id with a different secret (last character changed)."""
    return value[:-1] + ("A" if value[-1] != "A" else "B")


# ----------------------------------------------------------------- app passwords


def test_a_person_binds_with_an_app_password_as_well_as_with_her_password(
    server: LdapServer,
) -> None:
    created = server.create_token("alice-mail", "alice", "--description", "mail client")
    assert created["account"] == "alice"
    assert created["intent"] == "app_password"
    token = Credentials(server.user_dn("alice"), value_of(created))
    assert whoami(server, token) == server.user_dn("alice").lower()
    assert python_ldap_whoami(server, token).lower() == f"dn:{server.user_dn('alice')}".lower()
    password = Credentials(server.user_dn("alice"), ALICE_PASSWORD)
    assert whoami(server, password) == server.user_dn("alice").lower()


def test_a_service_account_binds_with_a_second_token_over_starttls(server: LdapServer) -> None:
    service_account(server, "nas-second")
    created = server.create_token("nas-second-b", "nas-second")
    bind = Credentials(server.user_dn("nas-second"), value_of(created))
    assert whoami(server, bind, start_tls=True) == server.user_dn("nas-second").lower()
    assert whoami(server, bind, url=server.ldaps_url) == server.user_dn("nas-second").lower()


# ---------------------------------------------------------------------- refusals


def _wrong_secret(server: LdapServer, name: str = "refuse-secret") -> Credentials:
    good = service_account(server, name)
    return Credentials(good.dn, other_token_value(good.password))


def _unknown_token(server: LdapServer) -> Credentials:
    good = service_account(server, "refuse-unknown")
    # Well formed, never issued: same length and alphabet as a real one.
    fake = "ldsrv_" + secrets.token_urlsafe(9)[:12] + "_" + secrets.token_urlsafe(32)[:43]
    assert len(fake) == len(good.password)
    return Credentials(good.dn, fake)


def _deleted_token(server: LdapServer) -> Credentials:
    service_account(server, "refuse-deleted")
    created = server.create_token("refuse-deleted-b", "refuse-deleted")
    bind = Credentials(server.user_dn("refuse-deleted"), value_of(created))
    assert whoami(server, bind) is not None, "bound before its deletion"
    server.ctl("token", "delete", "refuse-deleted-b")
    return bind


def _api_intent(server: LdapServer) -> Credentials:
    service_account(server, "refuse-api")
    created = server.create_token("refuse-api-b", "refuse-api", "--intent", "api")
    assert created["intent"] == "api"
    return Credentials(server.user_dn("refuse-api"), value_of(created))


def _other_service_account(server: LdapServer) -> Credentials:
    mine = service_account(server, "refuse-mine")
    service_account(server, "refuse-theirs")
    return Credentials(server.user_dn("refuse-theirs"), mine.password)


def _other_person(server: LdapServer) -> Credentials:
    created = server.create_token("refuse-alice", "alice")
    return Credentials(server.user_dn("bob"), value_of(created))


def _service_token_for_a_person(server: LdapServer) -> Credentials:
    mine = service_account(server, "refuse-for-person")
    return Credentials(server.user_dn("alice"), mine.password)


def _unknown_account(server: LdapServer) -> Credentials:
    mine = service_account(server, "refuse-ghost-owner")
    return Credentials(server.user_dn("ghost"), mine.password)


REFUSALS: dict[str, Callable[[LdapServer], Credentials]] = {
    "wrong-secret": _wrong_secret,
    "unknown-token": _unknown_token,
    "deleted-token": _deleted_token,
    "api-intent": _api_intent,
    "other-service-accounts-token": _other_service_account,
    "other-persons-token": _other_person,
    "service-token-on-a-person": _service_token_for_a_person,
    "unknown-account": _unknown_account,
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_a_token_bind_that_must_fail_answers_invalid_credentials(
    server: LdapServer, case: str
) -> None:
    bind = REFUSALS[case](server)
    assert whoami(server, bind) is None
    with pytest.raises(ldap.INVALID_CREDENTIALS):
        python_ldap_whoami(server, bind)


def test_the_log_names_the_refusal_but_never_the_secret(server: LdapServer) -> None:
    bind = _wrong_secret(server, "logged-refusal")
    assert whoami(server, bind) is None
    log = server.log_text()
    refusals = [line for line in log.splitlines() if "logged-refusal" in line and "refused" in line]
    assert refusals, log[-2000:]
    assert "secret" in refusals[-1], refusals[-1]
    assert bind.password not in log
    assert bind.password[-43:] not in log


# ------------------------------------------------------------- list, view, rotate


def test_token_list_filters_by_account_and_never_shows_a_value(server: LdapServer) -> None:
    first = server.create_service_account("lister")
    server.create_token("lister-2", "lister", "--no-expiring")
    listed = server.ctl_json("token", "list", "--user", "lister")["tokens"]
    assert sorted(t["identifier"] for t in listed) == ["lister", "lister-2"]
    assert {t["account"] for t in listed} == {"lister"}
    text = json.dumps(server.ctl_json("token", "list")) + server.ctl("token", "list").stdout
    assert value_of(first) not in text
    assert not TOKEN_PATTERN.search(text)


def test_token_view_prints_the_value_that_create_printed(server: LdapServer) -> None:
    created = server.create_token("viewed", "bob")
    viewed = server.ctl_json("token", "view", "viewed")
    assert viewed["value"] == value_of(created)
    # Without --json the output is the bare value, for $(ldapsrv token view ID).
    assert server.ctl("token", "view", "viewed").stdout.strip() == value_of(created)


def test_rotate_refuses_the_old_value_at_once_and_the_new_one_binds(
    server: LdapServer, recorder: RotationHookRecorder
) -> None:
    old = service_account(server, "rotated")
    rotated = server.ctl_json("token", "rotate", "rotated")
    new = Credentials(old.dn, value_of(rotated))
    assert new.password != old.password
    assert whoami(server, old) is None
    assert whoami(server, new) == old.dn.lower()
    assert server.ctl_json("token", "view", "rotated")["value"] == new.password
    # The expiry settings stay: still expiring, with the same lifetime.
    assert rotated["expiring"] is True
    # A rotation asked for by an admin reaches the device through the hook too.
    delivered = recorder.wait_for("rotated", 1, HOOK_TIMEOUT)
    assert delivered[-1].value == new.password


def test_rotating_a_person_app_password_leaves_her_password_working(server: LdapServer) -> None:
    created = server.create_token("bob-rotated", "bob")
    server.ctl_json("token", "rotate", "bob-rotated")
    assert whoami(server, Credentials(server.user_dn("bob"), value_of(created))) is None
    assert whoami(server, Credentials(server.user_dn("bob"), BOB_PASSWORD)) is not None


def test_every_token_printed_is_at_most_64_characters_of_base64url(server: LdapServer) -> None:
    values = [
        value_of(server.create_service_account("length-check")),
        value_of(server.create_service_account("length-check-ne", "--no-expiring")),
        value_of(server.create_token("length-api", "length-check", "--intent", "api")),
        value_of(server.create_token("length-person", "alice", "--expires", "30d")),
        value_of(server.ctl_json("token", "rotate", "length-check")),
        value_of(server.ctl_json("token", "view", "length-check")),
    ]
    for value in values:
        assert len(value) <= MAX_TOKEN_LENGTH, value
        assert TOKEN_PATTERN.fullmatch(value), value
    assert len(set(values)) == len(values) - 1  # view repeats the rotated value


# ---------------------------------------------------------------- admin errors


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--identifier", "dup", "--user", "alice"), "exist"),
        (("--identifier", "nobody-tok", "--user", "nobody"), "nobody"),
        (("--identifier", "past", "--user", "alice", "--expires", "2001-01-01"), "past"),
        (("--identifier", "garbled", "--user", "alice", "--expires", "soon"), "soon"),
    ],
    ids=["duplicate-identifier", "unknown-account", "expiry-in-the-past", "unreadable-expiry"],
)
def test_token_create_refuses_bad_input_with_a_clear_message(
    server: LdapServer, args: tuple[str, ...], says: str
) -> None:
    if args[1] == "dup":
        server.create_token("dup", "alice")
    result = server.ctl("token", "create", *args, check=False)
    assert result.returncode != 0, result.stdout
    assert says in result.stderr.lower(), result.stderr


def test_a_deleted_token_is_gone_from_list_view_and_rotate(server: LdapServer) -> None:
    server.create_token("gone", "alice")
    server.ctl("token", "delete", "gone")
    for args in (("token", "view", "gone"), ("token", "rotate", "gone")):
        result = server.ctl(*args, check=False)
        assert result.returncode != 0, result.stdout
        assert "gone" in result.stderr, result.stderr
    identifiers = {t["identifier"] for t in server.ctl_json("token", "list")["tokens"]}
    assert "gone" not in identifiers


# ---------------------------------------------------------------------- expiry


def test_an_expiring_token_fails_at_its_expiry_and_the_hook_gets_a_new_value_that_binds(
    server: LdapServer, recorder: RotationHookRecorder
) -> None:
    created = server.create_service_account("expiring", "--expires", "4s")
    never = service_account(server, "never-expiring", "--no-expiring")
    old = Credentials(str(created["dn"]), value_of(created))
    expires_at = instant(str(created["expires"]))
    try:
        assert time.time() < expires_at - 0.5, "creating the account took too long to test"
        assert whoami(server, old) is not None, "bound before its expiry"
        assert recorder.deliveries("expiring") == []

        time.sleep(max(0.0, expires_at - time.time()) + 0.05)
        assert whoami(server, old) is None
        refused_after = time.time() - expires_at
        assert refused_after <= EXPIRY_SLACK, f"still usable {refused_after:.2f} s after expiry"

        delivered = recorder.wait_for("expiring", 1, HOOK_TIMEOUT)[0]
        assert delivered.value != old.password
        assert TOKEN_PATTERN.fullmatch(delivered.value)
        assert (delivered.env_identifier, delivered.env_account) == ("expiring", "expiring")
        assert delivered.argv == [], "the value must not be on the hook's command line"
        assert delivered.parent == server.process.pid
        new = Credentials(old.dn, delivered.value)
        assert whoami(server, new) == old.dn.lower()

        shown = server.ctl_json("token", "show", "expiring")
        assert shown["expiring"] is True
        assert instant(str(shown["expires"])) > expires_at
        assert whoami(server, never) is not None
        assert recorder.deliveries("never-expiring") == []
    finally:
        server.ctl("service-account", "delete", "expiring")  # no more rotations


# ------------------------------------------------------------ viewable = false


def test_with_viewable_copies_off_view_is_refused_and_create_says_shown_once(
    ldap_server_factory: Callable[..., LdapServer],
) -> None:
    server = ldap_server_factory(settings={"tokens": {"viewable": False}})
    created = server.create_service_account("unviewable")
    assert "not be shown again" in str(created["notice"])
    result = server.ctl("token", "view", "unviewable", check=False)
    assert result.returncode != 0, result.stdout
    assert "viewable" in result.stderr and value_of(created) not in result.stderr
    # The token itself works, and rotating is how an admin gets a value again.
    bind = Credentials(server.user_dn("unviewable"), value_of(created))
    assert whoami(server, bind) is not None
    rotated = server.ctl_json("token", "rotate", "unviewable")
    assert whoami(server, Credentials(bind.dn, value_of(rotated))) is not None
    assert server.ctl_json("token", "show", "unviewable")["viewable"] is False


def test_the_token_key_file_is_created_owner_only(server: LdapServer) -> None:
    key = server.data_dir / "token.key"
    assert key.exists()
    assert key.stat().st_mode & 0o777 == 0o600
    assert Path(key).read_bytes()


def test_a_token_created_after_the_last_check_is_rotated_right_after_its_expiry(
    ldap_server_factory: Callable[..., LdapServer], tmp_path: Path
) -> None:
    recorder = RotationHookRecorder(tmp_path / "hook")
    settings = {
        "tokens": {
            "rotation_hook": recorder.command,
            "rotation_check_interval": LONG_CHECK_INTERVAL,
        }
    }
    server = ldap_server_factory(settings=settings)
    created = server.create_service_account("timer", "--expires", "3s")
    expires_at = instant(str(created["expires"]))
    delivered = recorder.wait_for("timer", 1, 8.0)[0]
    assert time.time() - expires_at < 5.0
    bind = Credentials(str(created["dn"]), delivered.value)
    assert whoami(server, bind) is not None
