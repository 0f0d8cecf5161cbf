"""LDAP binds with tokens, bytes in and bytes out (no sockets, no database).

A service account ``nas`` and a person ``alice`` hold app-password tokens in an
in-memory token store; the clock is injected so expiry is tested at its instant.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import bcrypt
import pytest
from fakes import service
from ldaptor.protocols import pureldap
from test_protocol import ALICE_DN, USERS, Client, make_context, make_directory
from token_fakes import T0, FakeClock, FakeTokenStore, new_token

from ldapsrv.auth.binding import PasswordAuthenticator
from ldapsrv.auth.tokens import TOKEN_LENGTH, TokenVerifier, issue_token
from ldapsrv.directory.records import AccountKind, TokenIntent
from ldapsrv.ldap.server import ServerContext

NAS_DN = f"cn=nas,{USERS}"


class Setup:
    def __init__(self) -> None:
        self.clock = FakeClock(T0)
        self.directory = make_directory()
        self.directory.services.append(service(100, "nas", groups=("staff",)))
        self.tokens = FakeTokenStore(
            {"nas": AccountKind.SERVICE_ACCOUNT, "alice": AccountKind.USER}, clock=self.clock
        )
        self.verifier = TokenVerifier(4)
        ctx: ServerContext = make_context(self.directory)
        ctx.authenticator = PasswordAuthenticator(
            self.directory, 4, tokens=self.tokens, verifier=self.verifier, clock=self.clock
        )
        self.ctx = ctx
        self.values: dict[str, str] = {}

    def token(self, identifier: str, account: str = "nas", **kw: Any) -> str:
        issued = issue_token(4, None)
        self.tokens.create_token(
            new_token(
                identifier,
                account_name=account,
                lookup_id=issued.lookup_id,
                secret_hash=issued.secret_hash,
                **kw,
            )
        )
        return issued.value

    def client(self) -> Client:
        return Client(self.ctx)


@pytest.fixture
def setup() -> Setup:
    return Setup()


def test_a_service_account_binds_with_its_token_and_whoami_names_it(setup: Setup) -> None:
    value = setup.token("nas-backup")
    assert len(value) == TOKEN_LENGTH <= 64
    client = setup.client()
    assert client.bind(NAS_DN, value.encode()) == 0
    assert client.whoami() == f"dn:{NAS_DN}".encode()
    assert client.bind(f"UID=NAS,{USERS}", value.encode()) == 0


def test_every_token_refusal_is_invalid_credentials_without_a_hint(setup: Setup) -> None:
    good = setup.token("nas-backup")
    api = setup.token("nas-api", intent=TokenIntent.API)
    alices = setup.token("alice-phone", account="alice")
    client = setup.client()
    wrong_secret = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
    unknown = issue_token(4, None).value
    for dn, password in [
        (NAS_DN, wrong_secret),
        (NAS_DN, unknown),
        (NAS_DN, api),
        (NAS_DN, alices),
        (ALICE_DN, good),
        (NAS_DN, "not-a-token-but-a-password"),
    ]:
        response = client.one(pureldap.LDAPBindRequest(dn=dn.encode(), auth=password.encode()))
        assert (response.resultCode, response.errorMessage) == (49, b""), (dn, password)
        assert client.whoami() == b""


def test_a_token_stops_working_at_its_expiry_instant(setup: Setup) -> None:
    expires = T0 + timedelta(hours=1)
    value = setup.token("nas-backup", expires_at=expires)
    client = setup.client()
    setup.clock.now = expires - timedelta(microseconds=1)
    assert client.bind(NAS_DN, value.encode()) == 0
    setup.clock.now = expires
    assert client.bind(NAS_DN, value.encode()) == 49


def test_a_non_expiring_token_keeps_working(setup: Setup) -> None:
    value = setup.token("nas-backup", expiring=False, expires_at=None, lifetime=None)
    setup.clock.advance(timedelta(days=4000))
    assert setup.client().bind(NAS_DN, value.encode()) == 0


def test_deleting_a_token_refuses_it_at_once_even_after_cached_binds(setup: Setup) -> None:
    value = setup.token("nas-backup")
    client = setup.client()
    assert client.bind(NAS_DN, value.encode()) == 0
    assert client.bind(NAS_DN, value.encode()) == 0
    setup.tokens.delete_token("nas-backup")
    assert client.bind(NAS_DN, value.encode()) == 49


def test_a_rotated_token_refuses_the_old_value(setup: Setup) -> None:
    value = setup.token("nas-backup")
    client = setup.client()
    assert client.bind(NAS_DN, value.encode()) == 0
    key = "nas-backup"
    row = setup.tokens.rows[key]
    setup.tokens.rows[key] = replace(row, secret_hash=issue_token(4, None).secret_hash)
    assert client.bind(NAS_DN, value.encode()) == 49


def test_repeated_binds_cost_one_bcrypt_check(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    value = setup.token("nas-backup")
    calls = []
    real = bcrypt.checkpw

    def counting(password: bytes, hashed: bytes) -> bool:
        calls.append(1)
        return real(password, hashed)

    monkeypatch.setattr(bcrypt, "checkpw", counting)
    client = setup.client()
    for _ in range(5):
        assert client.bind(NAS_DN, value.encode()) == 0
    assert len(calls) == 1


def test_a_service_account_cannot_bind_with_a_password_or_change_one(setup: Setup) -> None:
    value = setup.token("nas-backup")
    client = setup.client()
    assert client.bind(NAS_DN, b"some password") == 49
    assert client.bind(NAS_DN, value.encode()) == 0
    response = client.password_modify(oldPasswd=value.encode(), newPasswd=b"new-password-1")
    assert response.resultCode == 53
    assert b"service account" in response.errorMessage


def test_a_person_may_bind_with_an_app_password(setup: Setup) -> None:
    value = setup.token("alice-phone", account="alice")
    client = setup.client()
    assert client.bind(ALICE_DN, value.encode()) == 0
    assert client.whoami() == f"dn:{ALICE_DN}".encode()
    assert client.bind(ALICE_DN, b"alice-pw") == 0


def test_token_use_is_recorded_with_the_client_address(setup: Setup) -> None:
    value = setup.token("nas-backup")
    client = setup.client()
    assert client.bind(NAS_DN, value.encode()) == 0
    row = setup.tokens.get_token("nas-backup")
    assert row.last_used_at == T0
    assert row.last_used_address == client.transport.getPeer().host


def test_a_service_account_entry_is_never_a_posix_account(setup: Setup) -> None:
    client = setup.client()
    assert client.bind(ALICE_DN, b"alice-pw") == 0
    entries, done, _ = client.search(NAS_DN, scope=0)
    assert done.resultCode == 0
    (entry,) = entries
    classes = {
        bytes(v) for name, values in entry.attributes if name == b"objectClass" for v in values
    }
    assert classes == {b"top", b"applicationProcess", b"uidObject"}
    posix, done, _ = client.search(USERS, "(&(uid=nas)(objectClass=posixAccount))")
    assert (posix, done.resultCode) == ([], 0)
    found, _, _ = client.search(
        USERS, "(&(uid=nas)(memberOf=cn=staff,ou=groups,dc=example,dc=org))"
    )
    assert len(found) == 1
