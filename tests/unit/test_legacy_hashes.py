"""Legacy password hashes: vectors written by real tools (slappasswd 2.5, openssl
passwd, glibc crypt, 389-ds), verified and refused as they should be."""

from __future__ import annotations

import base64
import hashlib

import pytest
from fakes import FakeDirectory, user

from ldapsrv.auth.binding import PasswordAuthenticator
from ldapsrv.auth.legacy_hashes import describe_unusable, scheme_of, verify_legacy
from ldapsrv.auth.passwords import (
    SCHEME,
    hash_password,
    is_legacy_hash,
    needs_rehash,
    verify_password,
)
from ldapsrv.auth.unix_crypt import md5_crypt, sha_crypt
from ldapsrv.directory.records import AuditEvent

PASSWORD = b"correct horse"

# Each made for PASSWORD by the tool named beside it.
VECTORS = {
    "SSHA": "{SSHA}qh6gZ8IO1fj3yWgCHw5RcgiCGytZFS5o",  # slappasswd -h {SSHA}
    "SHA": "{SHA}L55TUjtiq8FBorTWAZ0jy6g129A=",  # slappasswd -h {SHA}
    "SMD5": "{SMD5}PlZhO7sAoTfENolBZWv6+XWWFh4=",  # slappasswd -h {SMD5}
    "MD5": "{MD5}PLTnMmMfR+brlh80VUt83g==",  # slappasswd -h {MD5}
    # slappasswd -o module-load=pw-sha2 -h ...
    "SSHA256": "{SSHA256}UqvvokA4WBTC31sc4acnWCohYubsKP0zS6fVLwzHIgCBvzYGzfxYjg==",
    "SSHA512": "{SSHA512}/qiME8P3Sm1IF+Nkw3tPSR0J0tGw89P/nSe1LseqOyZTnNe8qoVev7AvWNTjG5YWZ6w2"
    "f03lEmS0zuUfVmHOcAfHRu0hMlHS",
    "SHA512": "{SHA512}VraY3v7bWkNbY0r+MyC7rz/c2SC2xQOkRvx7endrKY1HnRumqLYXgI6wv1ec6aldZoNHvK"
    "txSQhayTyyeZUZew==",
    # openssl passwd -1 / -5 / -6
    "CRYPT-1": "{CRYPT}$1$oSmAFctl$0Q9Eqfny/g.54FxILTyVG/",
    "CRYPT-5": "{CRYPT}$5$kMqfzaGd35XtXGpx$3OTZdgFvPkzATCJi97IfYJlTzoYQ6Bj2P3yfyVhEon8",
    "CRYPT-6": "{CRYPT}$6$t6fEEqV6Zhi0bgmo$KDQ0id9Uk7bdEAkRXKQVsgGMUWO8geJaGdPPFmJyBmcslM7r2Ul"
    "PUJpbDnvSJlXvOiZuNgjdee.gkztogttlA1",
    # glibc crypt(3) with explicit rounds
    "CRYPT-5-rounds": "{CRYPT}$5$rounds=10000$saltstringsaltst$ffO6RHJbzihHqETll0c/MLDJrGhQw9f"
    "AaO1LcVIStWB",
    "CRYPT-6-rounds": "{crypt}$6$rounds=1000$x$EAPSjhFqPlx9TpztLdCdYhg/73lTq3uiBQstWvjpM4xsN1s4z"
    "OSEnQODN7weryBRYTrO7uOlVNKK6v93iPd9c0",
    "CRYPT-2b": "{CRYPT}$2b$04$QH5psXbOAdZt8aa9f/Mz/uZUzBnUKEDg7odS3HRd2nWQ2Ml9nX.Xy",  # bcrypt
    # slappasswd -o module-load=argon2 -h {ARGON2}
    "ARGON2": "{ARGON2}$argon2i$v=19$m=4096,t=3,p=1$zR3uJ2sllK10/In/8s3/vg$aWBhzAUr5YdRWwxroEeH/x"
    "3qLtfUR6rON2K2I0vhbeY",
}

# A 389-ds {PBKDF2_SHA256} hash of "Password123" (10000 rounds, 64-byte salt).
DS_PBKDF2 = (
    "{PBKDF2_SHA256}AAAnEGTxXtnR/oox922/jZyjH6fmiIdW4AwIYZE2LfCVL/SUz5GbAHfjRj4NbN2u8ul0/j/dUzJ4gQS"
    "awGALGHZV74nOAtPttoZDTsh7BeGCLD/Ps7vRugwDdz9uPARXzF3bD/8qCpumvRGb4pehzfQsk+FnGgTwi0rUeVaN8a7"
    "Kbv8ZpRfU2sd+208F/YL42BWAh/2tv0I4vY7ZsrCZcrUJtgKWy5Nr+t78zmPkrZsX/kgfnGdXhr50kN10cmkLQ0/cZOXo"
    "9CAkpeZyFu+wQ5vQdUaES2Vd5kBjJYPCkr4b2ocr4ETQi3IGO2GGCoCetmMIETsudRVSxUNBbva+Vgxin5Apu4wIP/0Z"
    "yuGK6TuWLqLnNpmK3RkRx0xjqJ4nN2Ok0ul0XYBJcYIBt4UoaVM2uSa/Etw28Uy+zAsUv2AOiRo5"
)


def _ab64(raw: bytes) -> str:
    return base64.b64encode(raw).decode().rstrip("=").replace("+", ".")


def _pbkdf2(scheme: str, digest: str, rounds: int = 1000) -> str:
    salt = b"0123456789abcdef"
    derived = hashlib.pbkdf2_hmac(digest, PASSWORD, salt, rounds)
    return f"{{{scheme}}}{rounds}${_ab64(salt)}${_ab64(derived)}"


@pytest.mark.parametrize("label", sorted(VECTORS))
def test_a_real_tools_hash_verifies_the_right_password_only(label: str) -> None:
    stored = VECTORS[label]
    assert scheme_of(stored) is not None
    assert verify_legacy(PASSWORD, stored)
    assert verify_password(PASSWORD, stored)
    assert not verify_legacy(b"correct horsE", stored)
    assert not verify_legacy(b"correct horse ", stored)


def test_389ds_binary_pbkdf2_sha256_verifies() -> None:
    assert scheme_of(DS_PBKDF2) == "PBKDF2_SHA256"
    assert verify_legacy(b"Password123", DS_PBKDF2)
    assert not verify_legacy(b"Password124", DS_PBKDF2)


@pytest.mark.parametrize(
    ("scheme", "digest"),
    [("PBKDF2", "sha1"), ("PBKDF2-SHA1", "sha1"), ("PBKDF2-SHA256", "sha256"),
     ("PBKDF2-SHA512", "sha512")],
)  # fmt: skip
def test_openldap_and_passlib_pbkdf2_format_verifies(scheme: str, digest: str) -> None:
    stored = _pbkdf2(scheme, digest)
    assert scheme_of(stored) == scheme
    assert verify_legacy(PASSWORD, stored)
    assert not verify_legacy(b"nope", stored)


def test_crypt_implementations_reproduce_their_inputs() -> None:
    assert md5_crypt(PASSWORD, "oSmAFctl") == VECTORS["CRYPT-1"].removeprefix("{CRYPT}")
    assert sha_crypt(PASSWORD, "t6fEEqV6Zhi0bgmo", "6") == VECTORS["CRYPT-6"][7:]
    # rounds below the minimum are raised to 1000, as glibc does
    assert sha_crypt(PASSWORD, "rounds=10$x", "6").startswith("$6$rounds=1000$x$")


@pytest.mark.parametrize(
    ("stored", "reason"),
    [
        ("{CRYPT}Nmh2Zsq07ljHcydIagkFju8E", "traditional DES crypt"),  # slappasswd's default
        ("{CLEARTEXT}secret", "unknown password scheme {CLEARTEXT}"),
        ("{KERBEROS}alice@EXAMPLE.ORG", "unknown password scheme {KERBEROS}"),
        ("{SSHA}not base64!", "malformed {SSHA} hash"),
        ("{SSHA}AAAA", "malformed {SSHA} hash"),
        ("{ARGON2}garbage", "malformed {ARGON2} hash"),
        ("{PBKDF2-SHA256}x$y$z", "malformed {PBKDF2-SHA256} hash"),
        ("plain text", "not a {SCHEME} hash"),
    ],
)
def test_unusable_hashes_are_unknown_and_never_match(stored: str, reason: str) -> None:
    assert scheme_of(stored) is None
    assert reason in describe_unusable(stored)
    assert not verify_legacy(PASSWORD, stored)
    assert not verify_password(PASSWORD, stored)


def test_a_bcrypt_password_over_72_bytes_does_not_match_on_its_prefix() -> None:
    stored = VECTORS["CRYPT-2b"]
    assert not verify_legacy(PASSWORD + b"x" * 80, stored)


def test_legacy_hashes_need_a_rehash_and_ours_do_not() -> None:
    ours = hash_password(PASSWORD, 4)
    assert not is_legacy_hash(ours)
    assert not needs_rehash(ours, 4)
    for stored in VECTORS.values():
        assert is_legacy_hash(stored)
        assert needs_rehash(stored, 4)


class _AuditSink:
    def __init__(self) -> None:
        self.events: list[AuditEvent] = []

    def record_audit(self, event: AuditEvent) -> None:
        self.events.append(event)


@pytest.mark.parametrize("label", ["SSHA", "CRYPT-6", "CRYPT-1", "ARGON2"])
def test_a_bind_with_an_imported_hash_upgrades_it_to_bcrypt_once_and_audits_it(
    label: str,
) -> None:
    directory = FakeDirectory(users=[user(1, "alice")], password_hashes={"alice": VECTORS[label]})
    audit = _AuditSink()
    authenticator = PasswordAuthenticator(directory, 4, audit=audit)
    assert not authenticator.check("alice", b"wrong").accepted
    assert directory.password_hashes["alice"] == VECTORS[label]
    assert authenticator.check("alice", PASSWORD).accepted
    assert directory.password_hashes["alice"].startswith(SCHEME)
    assert authenticator.check("alice", PASSWORD).accepted
    assert [e.action for e in audit.events] == ["user.upgrade_password_hash"]


def test_checking_a_legacy_hash_costs_a_bcrypt_check_like_any_other_bind(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import bcrypt

    calls: list[bytes] = []
    real = bcrypt.checkpw

    def counting(password: bytes, hashed: bytes) -> bool:
        calls.append(hashed)
        return real(password, hashed)

    monkeypatch.setattr(bcrypt, "checkpw", counting)
    assert verify_password(PASSWORD, VECTORS["SSHA"], 4)
    assert not verify_password(b"wrong", VECTORS["SSHA"], 4)
    assert len(calls) == 2 and all(h.startswith(b"$2b$04$") for h in calls)


def test_389ds_binary_pbkdf2_is_compacted_to_fit_the_store_and_still_verifies() -> None:
    from ldapsrv.migration.mapping import normalize_password_hash

    stored, reason = normalize_password_hash(DS_PBKDF2)
    assert reason is None and stored is not None
    assert stored.startswith("{PBKDF2-SHA256}10000$") and len(stored) <= 255
    assert verify_legacy(b"Password123", stored)
    assert not verify_legacy(b"Password124", stored)


def test_a_hash_too_long_to_store_is_reported_not_cut() -> None:
    from ldapsrv.migration.mapping import normalize_password_hash

    long_salt = "{SSHA512}" + base64.b64encode(b"x" * 64 + b"s" * 200).decode()
    stored, reason = normalize_password_hash(long_salt)
    assert stored is None and reason is not None and "longer than ldapsrv stores" in reason
