"""Person passwords (bcrypt over SHA-256, no 72-byte truncation) and the bind checks."""

from __future__ import annotations

import bcrypt
import pytest
from fakes import FakeDirectory, user

from ldapsrv.auth import passwords
from ldapsrv.auth.binding import PasswordAuthenticator, WrongPassword
from ldapsrv.auth.passwords import (
    MAX_PASSWORD_BYTES,
    SCHEME,
    PasswordRejected,
    check_password_rules,
    generate_password,
    hash_password,
    needs_rehash,
    verify_password,
)

COST = 4


def test_hash_then_verify() -> None:
    stored = hash_password(b"correct horse", COST)
    assert stored.startswith(SCHEME + "$2b$04$")
    assert verify_password(b"correct horse", stored)
    assert not verify_password(b"correct horsE", stored)


def test_hashes_are_salted() -> None:
    assert hash_password(b"same", COST) != hash_password(b"same", COST)


def test_long_passwords_sharing_a_prefix_beyond_72_bytes_do_not_verify_against_each_other() -> None:
    shared = b"x" * 80
    first, second = shared + b"a" * 20, shared + b"b" * 20
    assert len(first) == len(second) == 100
    stored = hash_password(first, COST)
    assert verify_password(first, stored)
    assert not verify_password(second, stored)


def test_plain_bcrypt_hashes_still_verify_up_to_72_bytes() -> None:
    stored = bcrypt.hashpw(b"imported", bcrypt.gensalt(rounds=COST)).decode()
    assert verify_password(b"imported", stored)
    assert not verify_password(b"imported!", stored)


def test_plain_bcrypt_hashes_refuse_passwords_longer_than_72_bytes() -> None:
    stored = bcrypt.hashpw(b"y" * 72, bcrypt.gensalt(rounds=COST)).decode()
    assert verify_password(b"y" * 72, stored)
    assert not verify_password(b"y" * 73, stored)  # bcrypt alone would accept it


@pytest.mark.parametrize(
    "stored",
    [
        None,
        "",
        "{SSHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=",
        "plaintext",
        SCHEME + "garbage",
        "$2b$04$tooshort",
        "$2b$04$\u00e9" + "a" * 50,
    ],
)
def test_missing_unknown_or_corrupt_hashes_never_verify(stored: str | None) -> None:
    assert verify_password(b"plaintext", stored) is False


def test_empty_and_oversized_passwords_never_verify() -> None:
    stored = hash_password(b"p", COST)
    assert not verify_password(b"", stored)
    big = b"z" * (MAX_PASSWORD_BYTES + 1)
    assert not verify_password(big, stored)


@pytest.mark.parametrize(
    ("password", "fragment"),
    [
        (b"", "must not be empty"),
        (b"a" * (MAX_PASSWORD_BYTES + 1), "longer than"),
        (b"\xff\xfe", "not valid UTF-8"),
    ],
)
def test_password_rules(password: bytes, fragment: str) -> None:
    with pytest.raises(PasswordRejected, match=fragment):
        check_password_rules(password)
    with pytest.raises(PasswordRejected):
        hash_password(password, COST)


def test_a_password_at_the_size_limit_is_accepted() -> None:
    password = "é".encode() * (MAX_PASSWORD_BYTES // 2)
    assert verify_password(password, hash_password(password, COST))


def test_needs_rehash() -> None:
    stored = hash_password(b"p", COST)
    assert not needs_rehash(stored, COST)
    assert needs_rehash(stored, COST + 1)
    assert needs_rehash(bcrypt.hashpw(b"p", bcrypt.gensalt(rounds=COST)).decode(), COST)
    assert needs_rehash(SCHEME + "junk", COST)


def test_generated_passwords_are_alphanumeric_and_distinct() -> None:
    generated = {generate_password() for _ in range(50)}
    assert len(generated) == 50
    assert all(len(g) == 20 and g.isascii() and g.isalnum() for g in generated)
    assert len(generate_password(32)) == 32


def test_constant_time_equals() -> None:
    assert passwords.constant_time_equals(b"a", b"a")
    assert not passwords.constant_time_equals(b"a", b"b")


# -- PasswordAuthenticator -------------------------------------------------------------


@pytest.fixture
def directory() -> FakeDirectory:
    return FakeDirectory(
        users=[user(1, "alice"), user(2, "bob"), user(3, "carol")],
        password_hashes={
            "alice": hash_password(b"alice-pw", COST),
            "bob": hash_password(b"bob-pw", COST),
        },
        disabled={"bob"},
    )


def test_bind_accepts_the_right_password_in_any_name_case(directory: FakeDirectory) -> None:
    outcome = PasswordAuthenticator(directory, COST).check("ALICE", b"alice-pw")
    assert outcome.accepted
    assert outcome.name == "alice"


@pytest.mark.parametrize(
    ("name", "password", "reason"),
    [
        ("alice", b"wrong", "wrong password"),
        ("alice", b"", "wrong password"),
        ("nobody", b"alice-pw", "no such account"),
        ("bob", b"bob-pw", "account is disabled"),
        ("carol", b"anything", "account has no password"),
    ],
)
def test_bind_refusals_carry_a_reason_for_the_log(
    directory: FakeDirectory, name: str, password: bytes, reason: str
) -> None:
    outcome = PasswordAuthenticator(directory, COST).check(name, password)
    assert not outcome.accepted
    assert outcome.name is None
    assert outcome.reason == reason


def test_a_successful_bind_upgrades_a_hash_of_another_cost(directory: FakeDirectory) -> None:
    PasswordAuthenticator(directory, COST + 1).check("alice", b"alice-pw")
    stored = directory.password_hashes["alice"]
    assert stored.startswith(SCHEME + "$2b$05$")
    assert verify_password(b"alice-pw", stored)


def test_a_successful_bind_upgrades_a_plain_bcrypt_hash(directory: FakeDirectory) -> None:
    directory.password_hashes["alice"] = bcrypt.hashpw(b"old", bcrypt.gensalt(COST)).decode()
    assert PasswordAuthenticator(directory, COST).check("alice", b"old").accepted
    assert directory.password_hashes["alice"].startswith(SCHEME)


def test_a_bind_at_the_current_cost_writes_nothing(directory: FakeDirectory) -> None:
    PasswordAuthenticator(directory, COST).check("alice", b"alice-pw")
    assert ("set_password_hash", "alice") not in directory.calls


def test_an_unknown_account_costs_as_much_as_a_wrong_password(
    directory: FakeDirectory, monkeypatch: pytest.MonkeyPatch
) -> None:
    costs: list[bytes] = []
    real = bcrypt.checkpw

    def recording(password: bytes, hashed: bytes) -> bool:
        costs.append(hashed[:7])
        return real(password, hashed)

    monkeypatch.setattr(bcrypt, "checkpw", recording)
    PasswordAuthenticator(directory, 6).check("nobody", b"pw")
    assert costs == [b"$2b$06$"]


def test_change_password(directory: FakeDirectory) -> None:
    auth = PasswordAuthenticator(directory, COST)
    auth.change_password("Alice", b"alice-pw", b"new-pw")
    assert auth.check("alice", b"new-pw").accepted
    assert not auth.check("alice", b"alice-pw").accepted


@pytest.mark.parametrize(("name", "old"), [("alice", b"wrong"), ("nobody", b"x"), ("carol", b"x")])
def test_change_password_with_a_wrong_old_password(
    directory: FakeDirectory, name: str, old: bytes
) -> None:
    with pytest.raises(WrongPassword):
        PasswordAuthenticator(directory, COST).change_password(name, old, b"new-pw")


def test_change_password_checks_the_rules_of_the_new_one(directory: FakeDirectory) -> None:
    with pytest.raises(PasswordRejected, match="UTF-8"):
        PasswordAuthenticator(directory, COST).change_password("alice", b"alice-pw", b"\xff")
    assert verify_password(b"alice-pw", directory.password_hashes["alice"])


def test_a_disabled_account_cannot_change_its_password(directory: FakeDirectory) -> None:
    with pytest.raises(PasswordRejected, match="disabled"):
        PasswordAuthenticator(directory, COST).change_password("bob", b"bob-pw", b"new")
