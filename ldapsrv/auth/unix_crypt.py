"""crypt(3) hashes other servers and /etc/shadow write: MD5-crypt ``$1$`` and
SHA-crypt ``$5$``/``$6$``, in pure Python.

The standard ``crypt`` module is deprecated in 3.11 and gone in 3.13, so the two
algorithms are implemented here after their specifications (Poul-Henning Kamp's
MD5-crypt; Ulrich Drepper's "Unix crypt using SHA-256 and SHA-512"). Only
verification needs them: ldapsrv never writes these hashes, it replaces them
with bcrypt on the first successful bind. CPU-bound: call off the reactor.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Sequence
from typing import Any

_ALPHABET = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

_SHA_ROUNDS_DEFAULT = 5000
_SHA_ROUNDS_MIN = 1000
_SHA_ROUNDS_MAX = 999_999_999

# Output byte order of each variant: groups of three bytes become four
# characters; the last group is shorter.
_MD5_ORDER = ((0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5))
_SHA256_ORDER = (
    (0, 10, 20), (21, 1, 11), (12, 22, 2), (3, 13, 23), (24, 4, 14),
    (15, 25, 5), (6, 16, 26), (27, 7, 17), (18, 28, 8), (9, 19, 29),
)  # fmt: skip
_SHA512_ORDER = (
    (0, 21, 42), (22, 43, 1), (44, 2, 23), (3, 24, 45), (25, 46, 4),
    (47, 5, 26), (6, 27, 48), (28, 49, 7), (50, 8, 29), (9, 30, 51),
    (31, 52, 10), (53, 11, 32), (12, 33, 54), (34, 55, 13), (56, 14, 35),
    (15, 36, 57), (37, 58, 16), (59, 17, 38), (18, 39, 60), (40, 61, 19),
    (62, 20, 41),
)  # fmt: skip


def _b64_from_24bit(b2: int, b1: int, b0: int, count: int) -> str:
    word = (b2 << 16) | (b1 << 8) | b0
    out = []
    for _ in range(count):
        out.append(_ALPHABET[word & 0x3F])
        word >>= 6
    return "".join(out)


def _encode(digest: bytes, order: Sequence[tuple[int, int, int]]) -> str:
    return "".join(_b64_from_24bit(digest[a], digest[b], digest[c], 4) for a, b, c in order)


def md5_crypt(password: bytes, salt: str) -> str:
    """The ``$1$salt$hash`` string for ``password`` (salt: at most 8 characters)."""
    salt_bytes = salt.split("$", 1)[0][:8].encode("ascii")
    alternate = hashlib.md5(password + salt_bytes + password).digest()
    context = hashlib.md5(password + b"$1$" + salt_bytes)
    for remaining in range(len(password), 0, -16):
        context.update(alternate[: min(16, remaining)])
    length = len(password)
    while length:
        context.update(b"\0" if length & 1 else password[:1])
        length >>= 1
    final = context.digest()
    for i in range(1000):
        step = hashlib.md5(password if i & 1 else final)
        if i % 3:
            step.update(salt_bytes)
        if i % 7:
            step.update(password)
        step.update(final if i & 1 else password)
        final = step.digest()
    encoded = _encode(final, _MD5_ORDER) + _b64_from_24bit(0, 0, final[11], 2)
    return f"$1${salt_bytes.decode('ascii')}${encoded}"


def _repeat_to(block: bytes, length: int) -> bytes:
    return (block * (length // len(block) + 1))[:length]


def sha_crypt(password: bytes, setting: str, variant: str) -> str:
    """The ``$5$``/``$6$`` string for ``password``; ``setting`` is what follows the
    variant marker (``[rounds=N$]salt[$...]``), ``variant`` "5" or "6"."""
    new: Callable[..., Any] = hashlib.sha256 if variant == "5" else hashlib.sha512
    size = 32 if variant == "5" else 64
    rounds = _SHA_ROUNDS_DEFAULT
    custom_rounds = False
    if setting.startswith("rounds="):
        text, _, setting = setting[len("rounds=") :].partition("$")
        if not text.isdigit():
            raise ValueError("rounds must be a number")
        rounds = min(max(int(text), _SHA_ROUNDS_MIN), _SHA_ROUNDS_MAX)
        custom_rounds = True
    salt = setting.split("$", 1)[0][:16].encode("ascii")

    alternate = new(password + salt + password).digest()
    context = new(password + salt)
    for remaining in range(len(password), 0, -size):
        context.update(alternate[: min(size, remaining)])
    length = len(password)
    while length:
        context.update(alternate if length & 1 else password)
        length >>= 1
    digest_a = context.digest()
    p_bytes = _repeat_to(new(password * len(password)).digest(), len(password))
    s_bytes = _repeat_to(new(salt * (16 + digest_a[0])).digest(), len(salt))
    current = digest_a
    for i in range(rounds):
        step = new(p_bytes if i & 1 else current)
        if i % 3:
            step.update(s_bytes)
        if i % 7:
            step.update(p_bytes)
        step.update(current if i & 1 else p_bytes)
        current = step.digest()

    if variant == "5":
        encoded = _encode(current, _SHA256_ORDER) + _b64_from_24bit(0, current[31], current[30], 3)
    else:
        encoded = _encode(current, _SHA512_ORDER) + _b64_from_24bit(0, 0, current[63], 2)
    prefix = f"${variant}$" + (f"rounds={rounds}$" if custom_rounds else "")
    return f"{prefix}{salt.decode('ascii')}${encoded}"


def is_crypt_hash(stored: str) -> bool:
    """True for a well-formed ``$1$``/``$5$``/``$6$`` string (not a proof it verifies)."""
    if stored.startswith("$1$"):
        parts = stored.split("$")
        return len(parts) == 4 and len(parts[3]) == 22
    if stored.startswith(("$5$", "$6$")):
        parts = stored.split("$")
        expected = 43 if stored[1] == "5" else 86
        return len(parts) in (4, 5) and len(parts[-1]) == expected
    return False


def verify_crypt(password: bytes, stored: str) -> bool:
    """True when ``password`` hashes to ``stored`` (``$1$``, ``$5$`` or ``$6$``)."""
    if not is_crypt_hash(stored):
        return False
    try:
        if stored.startswith("$1$"):
            computed = md5_crypt(password, stored[3:])
        else:
            computed = sha_crypt(password, stored[3:], stored[1])
    except (ValueError, UnicodeEncodeError):
        return False
    return hmac.compare_digest(computed.encode("ascii"), stored.encode("ascii"))
