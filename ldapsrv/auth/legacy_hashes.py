"""Password hashes imported from other LDAP servers, in RFC 2307 ``{SCHEME}`` form.

OpenLDAP, 389-ds and shadow files write these; ldapsrv keeps an imported hash
exactly as it came (scheme prefix included), verifies binds against it, and
replaces it with its own bcrypt scheme on the first successful bind (see
``PasswordAuthenticator``). Supported:

- ``{SHA}`` ``{SSHA}`` ``{SHA256}`` ``{SSHA256}`` ``{SHA384}`` ``{SSHA384}``
  ``{SHA512}`` ``{SSHA512}`` ``{MD5}`` ``{SMD5}`` (digest, then the salt);
- ``{CRYPT}`` with ``$1$`` (MD5-crypt), ``$5$``/``$6$`` (SHA-crypt) or
  ``$2a$``/``$2b$``/``$2y$`` (bcrypt); ``{CRYPT-MD5}``, ``{CRYPT-SHA256}``,
  ``{CRYPT-SHA512}`` (389-ds names) alike. Traditional DES crypt is refused;
- ``{PBKDF2}``/``{PBKDF2-SHA1}``/``{PBKDF2-SHA256}``/``{PBKDF2-SHA512}``
  (OpenLDAP's pw-pbkdf2, passlib and 389-ds 2.x: ``rounds$salt$hash`` in
  adapted base64) and 389-ds' older binary ``{PBKDF2_SHA256}``;
- ``{ARGON2}`` (``$argon2i$``/``$argon2id$``/``$argon2d$``, through argon2-cffi).

Every comparison is constant-time. Anything else is "unknown": ``scheme_of``
returns None and the importer reports it instead of storing a hash nobody can
bind with.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass

import bcrypt

from ldapsrv.auth.unix_crypt import is_crypt_hash, verify_crypt

_BCRYPT_PREFIXES = ("$2a$", "$2b$", "$2y$")
_ARGON2_PREFIXES = ("$argon2i$", "$argon2id$", "$argon2d$")


@dataclass(frozen=True, slots=True)
class _Digest:
    algorithm: str
    size: int
    salted: bool


_DIGESTS = {
    "SHA": _Digest("sha1", 20, False),
    "SSHA": _Digest("sha1", 20, True),
    "SHA256": _Digest("sha256", 32, False),
    "SSHA256": _Digest("sha256", 32, True),
    "SHA384": _Digest("sha384", 48, False),
    "SSHA384": _Digest("sha384", 48, True),
    "SHA512": _Digest("sha512", 64, False),
    "SSHA512": _Digest("sha512", 64, True),
    "MD5": _Digest("md5", 16, False),
    "SMD5": _Digest("md5", 16, True),
}
_CRYPT_SCHEMES = ("CRYPT", "CRYPT-MD5", "CRYPT-SHA256", "CRYPT-SHA512")
_PBKDF2_DIGESTS = {
    "PBKDF2": "sha1",
    "PBKDF2-SHA1": "sha1",
    "PBKDF2-SHA256": "sha256",
    "PBKDF2-SHA512": "sha512",
}
_DS_PBKDF2 = "PBKDF2_SHA256"
_DS_PBKDF2_SALT = 64
_DS_PBKDF2_HASH = 256


def split_scheme(stored: str) -> tuple[str, str] | None:
    """(SCHEME in upper case, the rest) of ``{scheme}rest``, or None."""
    if not stored.startswith("{"):
        return None
    end = stored.find("}")
    if end < 2:
        return None
    return stored[1:end].upper(), stored[end + 1 :]


def _b64decode(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def _ab64encode(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii").rstrip("=").replace("+", ".")


def _ab64decode(text: str) -> bytes:
    """passlib's and OpenLDAP's "adapted base64": ``.`` for ``+``, no padding."""
    return _b64decode(text.replace(".", "+"))


def _digest_parts(scheme: str, payload: str) -> tuple[bytes, bytes] | None:
    spec = _DIGESTS[scheme]
    raw = _b64decode(payload)
    if len(raw) < spec.size or (not spec.salted and len(raw) != spec.size):
        return None
    return raw[: spec.size], raw[spec.size :]


def _verify_digest(scheme: str, payload: str, password: bytes) -> bool:
    parts = _digest_parts(scheme, payload)
    if parts is None:
        return False
    digest, salt = parts
    computed = hashlib.new(_DIGESTS[scheme].algorithm, password + salt).digest()
    return hmac.compare_digest(computed, digest)


def _crypt_kind(payload: str) -> str | None:
    if payload.startswith(_BCRYPT_PREFIXES):
        return "bcrypt" if len(payload) == 60 else None
    return "crypt" if is_crypt_hash(payload) else None


def _verify_crypt(payload: str, password: bytes) -> bool:
    kind = _crypt_kind(payload)
    if kind == "bcrypt":
        # bcrypt reads 72 bytes: a longer password must not pass on its prefix.
        return len(password) <= 72 and bcrypt.checkpw(password, payload.encode("ascii"))
    return kind == "crypt" and verify_crypt(password, payload)


def _pbkdf2_parts(payload: str) -> tuple[int, bytes, bytes] | None:
    rounds, _, rest = payload.partition("$")
    salt_text, _, hash_text = rest.partition("$")
    if not rounds.isdigit() or int(rounds) < 1 or not salt_text or not hash_text:
        return None
    return int(rounds), _ab64decode(salt_text), _ab64decode(hash_text)


def _verify_pbkdf2(scheme: str, payload: str, password: bytes) -> bool:
    parts = _pbkdf2_parts(payload)
    if parts is None:
        return False
    rounds, salt, expected = parts
    computed = hashlib.pbkdf2_hmac(_PBKDF2_DIGESTS[scheme], password, salt, rounds, len(expected))
    return hmac.compare_digest(computed, expected)


def _ds_pbkdf2_parts(payload: str) -> tuple[int, bytes, bytes] | None:
    """389-ds' binary layout: 4 bytes of rounds (big-endian), 64 of salt, 256 of hash."""
    raw = _b64decode(payload)
    if len(raw) != 4 + _DS_PBKDF2_SALT + _DS_PBKDF2_HASH:
        return None
    rounds = int.from_bytes(raw[:4], "big")
    return (rounds, raw[4 : 4 + _DS_PBKDF2_SALT], raw[4 + _DS_PBKDF2_SALT :]) if rounds else None


def _verify_ds_pbkdf2(payload: str, password: bytes) -> bool:
    parts = _ds_pbkdf2_parts(payload)
    if parts is None:
        return False
    rounds, salt, expected = parts
    computed = hashlib.pbkdf2_hmac("sha256", password, salt, rounds, len(expected))
    return hmac.compare_digest(computed, expected)


def _verify_argon2(payload: str, password: bytes) -> bool:
    from argon2 import PasswordHasher
    from argon2.exceptions import InvalidHashError, VerificationError

    try:
        return PasswordHasher().verify(payload, password)
    except (VerificationError, InvalidHashError):
        return False


def _well_formed(scheme: str, payload: str) -> bool:
    if scheme in _DIGESTS:
        return _digest_parts(scheme, payload) is not None
    if scheme in _CRYPT_SCHEMES:
        return _crypt_kind(payload) is not None
    if scheme in _PBKDF2_DIGESTS:
        return _pbkdf2_parts(payload) is not None
    if scheme == _DS_PBKDF2:
        return _ds_pbkdf2_parts(payload) is not None
    if scheme == "ARGON2":
        return payload.startswith(_ARGON2_PREFIXES) and payload.count("$") >= 4
    return False


def scheme_of(stored: str) -> str | None:
    """The scheme of a stored legacy hash that ldapsrv can verify (e.g. "SSHA",
    "CRYPT"), or None for an unknown scheme or a malformed value."""
    split = split_scheme(stored)
    if split is None:
        return None
    scheme, payload = split
    try:
        return scheme if _well_formed(scheme, payload) else None
    except (binascii.Error, ValueError):
        return None


def describe_unusable(stored: str) -> str:
    """Why ``stored`` cannot be imported as a hash (for the import report; no secret)."""
    split = split_scheme(stored)
    if split is None:
        return "not a {SCHEME} hash (clear text or unknown format)"
    scheme, payload = split
    if scheme in _CRYPT_SCHEMES and not payload.startswith("$"):
        return f"{{{scheme}}} with traditional DES crypt, which ldapsrv does not verify"
    known = scheme in _DIGESTS or scheme in _CRYPT_SCHEMES or scheme in _PBKDF2_DIGESTS
    if known or scheme in (_DS_PBKDF2, "ARGON2"):
        return f"malformed {{{scheme}}} hash"
    return f"unknown password scheme {{{scheme}}}"


def compact(stored: str) -> str:
    """``stored`` in the shortest form that verifies the same passwords.

    389-ds' binary ``{PBKDF2_SHA256}`` is 447 characters (a 256-byte key), too
    long for the store. PBKDF2 derives its output block by block, and the first
    32 bytes of a 256-byte key are exactly the 32-byte key of the same password,
    salt and rounds: it becomes ``{PBKDF2-SHA256}rounds$salt$first-32-bytes``
    (about 150 characters, 256 bits still compared). Other hashes are returned
    as they are."""
    split = split_scheme(stored)
    if split is None or split[0] != _DS_PBKDF2:
        return stored
    parts = _ds_pbkdf2_parts(split[1])
    if parts is None:
        return stored
    rounds, salt, derived = parts
    return f"{{PBKDF2-SHA256}}{rounds}${_ab64encode(salt)}${_ab64encode(derived[:32])}"


def verify_legacy(password: bytes, stored: str) -> bool:
    """True when ``password`` matches the legacy ``{SCHEME}`` hash ``stored``.
    Unknown schemes and malformed hashes never match."""
    scheme = scheme_of(stored)
    if scheme is None:
        return False
    payload = stored[stored.index("}") + 1 :]
    try:
        if scheme in _DIGESTS:
            return _verify_digest(scheme, payload, password)
        if scheme in _CRYPT_SCHEMES:
            return _verify_crypt(payload, password)
        if scheme in _PBKDF2_DIGESTS:
            return _verify_pbkdf2(scheme, payload, password)
        if scheme == _DS_PBKDF2:
            return _verify_ds_pbkdf2(payload, password)
        return _verify_argon2(payload, password)
    except (binascii.Error, ValueError):
        return False
