"""Person passwords: bcrypt, without bcrypt's silent 72-byte truncation.

bcrypt only reads the first 72 bytes of its input, so two long passphrases that
share a prefix would verify against each other. Every password is therefore
pre-hashed with SHA-256 (base64, 44 bytes) before bcrypt, and the stored hash is
tagged with the scheme so that imported plain ``$2b$`` hashes keep working.
Hashes imported from other servers keep their ``{SCHEME}`` prefix and are
checked by ``legacy_hashes``; ``needs_rehash`` is true for them, so the first
successful bind replaces them with this module's scheme.
These functions are CPU-bound and blocking: call them off the reactor thread.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import string
from functools import cache

import bcrypt

from ldapsrv.auth.legacy_hashes import verify_legacy

SCHEME = "$bcrypt-sha256$"
MAX_PASSWORD_BYTES = 4096
_GENERATED_ALPHABET = string.ascii_letters + string.digits


class PasswordRejected(ValueError):
    """The password breaks a rule; the message says which (never the password)."""


def _prehash(password: bytes) -> bytes:
    return base64.b64encode(hashlib.sha256(password).digest())


def check_password_rules(password: bytes) -> None:
    if not password:
        raise PasswordRejected("password must not be empty")
    if len(password) > MAX_PASSWORD_BYTES:
        raise PasswordRejected(f"password is longer than {MAX_PASSWORD_BYTES} bytes")
    try:
        password.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PasswordRejected("password is not valid UTF-8") from exc


def hash_password(password: bytes, cost: int) -> str:
    check_password_rules(password)
    hashed = bcrypt.hashpw(_prehash(password), bcrypt.gensalt(rounds=cost))
    return SCHEME + hashed.decode("ascii")


@cache
def _dummy_hash(cost: int) -> bytes:
    """A hash to check against when the account does not exist, at the configured
    cost, so that a bind for an unknown name costs as much as a wrong password."""
    return bcrypt.hashpw(b"ldapsrv-dummy", bcrypt.gensalt(rounds=cost))


def verify_password(password: bytes, stored: str | None, cost: int = 12) -> bool:
    """True when ``password`` matches ``stored``. Unknown schemes never match.
    ``cost`` sets the price of the decoy check when ``stored`` is None or a cheap
    imported ``{SCHEME}`` hash."""
    if not password or len(password) > MAX_PASSWORD_BYTES:
        return False
    try:
        if stored is None:
            bcrypt.checkpw(_prehash(password), _dummy_hash(cost))
            return False
        if stored.startswith(SCHEME):
            return bcrypt.checkpw(_prehash(password), stored[len(SCHEME) :].encode("ascii"))
        if stored.startswith(("$2a$", "$2b$", "$2y$")):
            if len(password) > 72:
                return False  # a plain bcrypt hash cannot tell long passwords apart
            return bcrypt.checkpw(password, stored.encode("ascii"))
        if stored.startswith("{"):
            matched = verify_legacy(password, stored)
            # Most legacy schemes take microseconds: pay for a bcrypt check too, so
            # that a bind to an imported account costs what one to any other does
            # (the time must not tell which accounts exist or were just imported).
            bcrypt.checkpw(_prehash(password), _dummy_hash(cost))
            return matched
    except ValueError:
        return False
    return False


def is_legacy_hash(stored: str) -> bool:
    """True for a hash another server wrote (imported, ``{SCHEME}`` or plain bcrypt)."""
    return stored.startswith(("{", "$2a$", "$2b$", "$2y$"))


def needs_rehash(stored: str, cost: int) -> bool:
    if not stored.startswith(SCHEME):
        return True
    parts = stored[len(SCHEME) :].split("$")
    return len(parts) < 3 or not parts[2].isdigit() or int(parts[2]) != cost


def generate_password(length: int = 20) -> str:
    """A random password of letters and digits (~119 bits at 20 characters)."""
    return "".join(secrets.choice(_GENERATED_ALPHABET) for _ in range(length))


def constant_time_equals(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(a, b)
