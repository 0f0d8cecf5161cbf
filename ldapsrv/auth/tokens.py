"""Token values: their format, issuing them, and checking a presented one cheaply.

A token reads ``ldsrv_<lookup id>_<secret>``: 62 characters of ``[A-Za-z0-9_-]``.

* The prefix makes a leaked token recognisable (secret scanners, log review).
* The lookup id (9 random bytes, 12 base64url characters) is public: a bind finds
  the one row it names with an indexed query, so a bind costs exactly one bcrypt
  check instead of one per token in the database.
* The secret is 32 random bytes (256 bits; the design asks for at least 192).
* 62 characters fit QNAP's limit on bind passwords (it cuts them beyond 66) and
  stay below bcrypt's 72 bytes, so bcrypt hashes the whole value and nothing is
  ever silently truncated. The value is bcrypt-hashed as is: it is random, so the
  SHA-256 pre-hash that person passwords need buys nothing here.

The base64url alphabet contains ``_`` and ``-``, so a value is cut at fixed
offsets, never split on ``_``.

Everything here blocks (bcrypt): call it off the reactor thread.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache
from typing import TYPE_CHECKING, Final

import bcrypt

from ldapsrv.directory.records import TokenIntent, TokenRecord

if TYPE_CHECKING:
    from ldapsrv.auth.vault import TokenVault

TOKEN_PREFIX: Final = "ldsrv_"
LOOKUP_ID_BYTES: Final = 9
SECRET_BYTES: Final = 32
LOOKUP_ID_LENGTH: Final = 12  # base64url of 9 bytes, no padding needed
SECRET_LENGTH: Final = 43  # base64url of 32 bytes without its "=" padding
_LOOKUP_START: Final = len(TOKEN_PREFIX)
_SEPARATOR_AT: Final = _LOOKUP_START + LOOKUP_ID_LENGTH
_SECRET_START: Final = _SEPARATOR_AT + 1
TOKEN_LENGTH: Final = _SECRET_START + SECRET_LENGTH

assert TOKEN_LENGTH == 62
assert TOKEN_LENGTH <= 64, "the design promises tokens of at most 64 characters"
assert TOKEN_LENGTH < 72, "bcrypt would silently ignore the bytes beyond 72"
assert SECRET_BYTES * 8 >= 192

TOKEN_ALPHABET: Final = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
)

DEFAULT_LIFETIME: Final[dict[TokenIntent, timedelta]] = {
    TokenIntent.APP_PASSWORD: timedelta(days=365),
    TokenIntent.API: timedelta(minutes=30),
}
"""How long a token lives when the admin gives no expiry (DESIGN.md section 3)."""

SERVICE_ACCOUNT_TOKEN_LIFETIME: Final = timedelta(days=360)
"""The lifetime of the token ``service-account create`` hands out."""

DEFAULT_CACHE_SIZE: Final = 10_000


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def parse_token(presented: bytes | str) -> str | None:
    """The lookup id of a well-formed token, or None for anything else.

    Never raises: a bind password is attacker-controlled input, and anything
    that is not a token (wrong length, wrong prefix, a byte outside the alphabet,
    invalid UTF-8) is simply not one.
    """
    if isinstance(presented, bytes):
        if len(presented) != TOKEN_LENGTH:
            return None
        try:
            text = presented.decode("utf-8")
        except UnicodeDecodeError:
            return None
    elif isinstance(presented, str):
        text = presented
    else:
        return None
    if (
        len(text) != TOKEN_LENGTH
        or not text.startswith(TOKEN_PREFIX)
        or text[_SEPARATOR_AT] != "_"
        or not TOKEN_ALPHABET.issuperset(text)
    ):
        return None
    return text[_LOOKUP_START:_SEPARATOR_AT]


def looks_like_token(presented: bytes | str) -> bool:
    """True for a well-formed token (so a bind knows to look for a token row)."""
    return parse_token(presented) is not None


@dataclass(frozen=True)
class IssuedToken:
    """A freshly made token: the value (shown once, or kept encrypted), and what the
    store keeps. The value is left out of ``repr`` so that it never reaches a log
    line or a traceback by accident."""

    value: str = field(repr=False)
    lookup_id: str
    secret_hash: str
    encrypted_value: str | None = field(repr=False)


def generate_token_value() -> tuple[str, str]:
    """A new random token value and its lookup id (no hashing)."""
    lookup_id = _b64url(secrets.token_bytes(LOOKUP_ID_BYTES))
    secret = _b64url(secrets.token_bytes(SECRET_BYTES))
    value = f"{TOKEN_PREFIX}{lookup_id}_{secret}"
    assert len(value) == TOKEN_LENGTH and len(secret) == SECRET_LENGTH
    return value, lookup_id


def hash_token(value: str, cost: int) -> str:
    """bcrypt over the whole value (62 bytes, below bcrypt's 72-byte limit)."""
    raw = value.encode("ascii")
    if len(raw) >= 72:  # unreachable for our own tokens; refuse rather than truncate
        raise ValueError("token value too long for bcrypt")
    return bcrypt.hashpw(raw, bcrypt.gensalt(rounds=cost)).decode("ascii")


def issue_token(cost: int, vault: TokenVault | None) -> IssuedToken:
    """Make a new token value, its bcrypt hash and, when viewable copies are on
    (a vault is given), its encrypted copy."""
    value, lookup_id = generate_token_value()
    encrypted = vault.encrypt(value, lookup_id) if vault is not None else None
    return IssuedToken(
        value=value,
        lookup_id=lookup_id,
        secret_hash=hash_token(value, cost),
        encrypted_value=encrypted,
    )


def refusal_reason(
    record: TokenRecord, now: datetime, intent: TokenIntent = TokenIntent.APP_PASSWORD
) -> str | None:
    """Why ``record`` may not authenticate for ``intent`` at ``now`` (for the server
    log; the client only ever sees invalidCredentials), or None when it may.

    An expiring token stops working at its expiry instant itself, not when the
    rotation job next runs, hence ``<=``.
    """
    if record.intent != intent:
        return f"token {record.identifier} has intent {record.intent}, not {intent}"
    if record.expiring and record.expires_at is not None and record.expires_at <= now:
        return f"token {record.identifier} expired at {record.expires_at.isoformat()}"
    return None


_DECOY_VALUE: Final = b"ldsrv_decoy-decoy-decoy-decoy"


@cache
def _decoy_hash(cost: int) -> bytes:
    return bcrypt.hashpw(_DECOY_VALUE, bcrypt.gensalt(rounds=cost))


class TokenVerifier:
    """Checks a presented value against a token row: bcrypt once, then a keyed
    in-memory check.

    An SSSD host may bind many times a second with the same token; paying a
    bcrypt each time would make the server a CPU heater. After bcrypt accepts a
    value, the verifier remembers HMAC-SHA256(process key, value) under the pair
    (lookup id, secret hash). The next bind with the same value costs one HMAC.

    This cache cannot keep a revoked token working (authentik's bug): the caller
    fetches the row from the database on every bind and passes it in, and the
    cache key contains the row's *current* secret hash. A deleted token has no
    row, so ``verify`` is never reached; a rotated token has a new hash, so the
    old entry is never looked up again (it ages out of the LRU). The cache only
    saves the bcrypt, never the database read.

    The HMAC key is random per process and never stored, so the remembered
    digests mean nothing outside this process. Failures are never cached.
    Thread-safe: binds run in the thread pool.

    Concurrent checks of one value against one row share a single bcrypt: when
    a fleet reconnects at once (a restart, a network blip), sixty-four hosts
    presenting the same token cost one bcrypt, not sixty-four. The others wait
    for it, so they take as long as a bcrypt would have, and a value it
    rejects still pays its own bcrypt.
    """

    def __init__(self, cost: int, *, max_entries: int = DEFAULT_CACHE_SIZE) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.cost = cost
        self._max_entries = max_entries
        self._key = secrets.token_bytes(32)
        self._cache: OrderedDict[tuple[str, str], bytes] = OrderedDict()
        self._lock = threading.Lock()
        self._checking: dict[tuple[str, str, bytes], threading.Event] = {}

    def _digest(self, presented: bytes) -> bytes:
        return hmac.new(self._key, presented, hashlib.sha256).digest()

    def verify(self, presented: bytes, record: TokenRecord) -> bool:
        """True when ``presented`` is the value of ``record``. Says nothing about
        expiry or intent: see ``refusal_reason``."""
        if parse_token(presented) != record.lookup_id:
            return False
        key = (record.lookup_id, record.secret_hash)
        digest = self._digest(presented)
        if self._remembered(key, digest):
            return True
        check = (*key, digest)
        with self._lock:
            running = self._checking.get(check)
            if running is None:
                self._checking[check] = threading.Event()
        if running is not None:
            running.wait()
            if self._remembered(key, digest):
                return True
            # The shared check failed: this caller pays its own, as any wrong value does.
            return self._bcrypt(presented, record, key, digest)
        try:
            return self._bcrypt(presented, record, key, digest)
        finally:
            with self._lock:
                self._checking.pop(check).set()

    def _remembered(self, key: tuple[str, str], digest: bytes) -> bool:
        with self._lock:
            remembered = self._cache.get(key)
            if remembered is not None:
                self._cache.move_to_end(key)
        return remembered is not None and hmac.compare_digest(remembered, digest)

    def _bcrypt(
        self, presented: bytes, record: TokenRecord, key: tuple[str, str], digest: bytes
    ) -> bool:
        # A wrong value for a cached pair still pays a bcrypt: a wrong secret costs
        # the same whether or not the token was used recently.
        try:
            ok = bcrypt.checkpw(presented, record.secret_hash.encode("ascii"))
        except ValueError:  # a malformed stored hash never matches
            ok = False
        if ok:
            with self._lock:
                self._cache[key] = digest
                self._cache.move_to_end(key)
                while len(self._cache) > self._max_entries:
                    self._cache.popitem(last=False)
        return ok

    def decoy(self, presented: bytes) -> None:
        """One bcrypt at the configured cost against a fixed hash, for a lookup id
        that names no token, so that an unknown token costs as much as a wrong
        secret and timing does not reveal which lookup ids exist."""
        # Any input, however long or odd, costs one full bcrypt: a pre-hash keeps it
        # under bcrypt's 72-byte limit and free of NUL bytes.
        candidate = base64.b64encode(hashlib.sha256(presented).digest())
        try:
            bcrypt.checkpw(candidate, _decoy_hash(self.cost))
        except ValueError:
            pass

    def cached_entries(self) -> int:
        """How many values are remembered (for tests and metrics)."""
        with self._lock:
            return len(self._cache)
