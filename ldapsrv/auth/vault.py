"""The encrypted copies of token values, so an admin can view a token again.

Binds never use these copies (they check the bcrypt hash). The copy exists so
that ``token view`` can show the value and so that a rotation hook can still be
delivered after a crash. The key is 32 random bytes in a file of its own, created
on first start with mode 0600 in a 0700 directory; a key file that others can read
is refused rather than used, because it would make every stored copy readable.

Blobs are ``v1:`` + base64url(nonce + AES-256-GCM ciphertext). The token's lookup
id is bound in as associated data, so a copy moved onto another token's row does
not decrypt. Blocking file I/O: call ``load_or_create`` before the reactor runs or
in a thread.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import secrets
import stat
from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_BYTES: Final = 32
NONCE_BYTES: Final = 12
BLOB_PREFIX: Final = "v1:"
_TAG_BYTES: Final = 16


class VaultError(Exception):
    """The key file is unusable or a stored copy cannot be decrypted; the message
    says what to do. Never contains a token value or the key."""


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenVault:
    """Encrypts and decrypts token values with one AES-256-GCM key."""

    def __init__(self, key: bytes, *, source: Path | None = None) -> None:
        if len(key) != KEY_BYTES:
            raise VaultError(f"a vault key must be {KEY_BYTES} bytes, got {len(key)}")
        self._aead = AESGCM(key)
        self.source = source

    def __repr__(self) -> str:
        return f"TokenVault(source={str(self.source)!r})"

    @classmethod
    def generate(cls) -> TokenVault:
        """A vault with a fresh random key held only in memory (tests, tools)."""
        return cls(secrets.token_bytes(KEY_BYTES))

    @classmethod
    def load_or_create(cls, path: Path) -> TokenVault:
        """The vault whose key is in ``path``, creating the key file if missing.

        Creation is atomic and never clobbers: the key is written to a private
        temporary file and hard-linked into place, so two servers starting at once
        on the same data directory end up with one key, and a crash never leaves a
        half-written key file behind.
        """
        path = Path(path)
        try:
            return cls(_read_key(path), source=path)
        except FileNotFoundError:
            pass
        _make_private_dir(path.parent)
        key = secrets.token_bytes(KEY_BYTES)
        _create_exclusive(path, base64.b64encode(key) + b"\n")
        # Read back what is there: if another process won the race, its key counts.
        return cls(_read_key(path), source=path)

    def encrypt(self, value: str, lookup_id: str) -> str:
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, value.encode("utf-8"), lookup_id.encode("utf-8"))
        return BLOB_PREFIX + base64.urlsafe_b64encode(nonce + sealed).rstrip(b"=").decode("ascii")

    def decrypt(self, blob: str, lookup_id: str) -> str:
        """The value sealed in ``blob``. VaultError when the blob is not one of ours,
        is corrupt, or was sealed with another key (for instance by a server that
        shares the database but has a different key file)."""
        if not blob.startswith(BLOB_PREFIX):
            raise VaultError("the stored token copy has an unknown format (expected v1:)")
        try:
            raw = _b64url_decode(blob[len(BLOB_PREFIX) :])
        except (binascii.Error, ValueError) as exc:
            raise VaultError("the stored token copy is corrupt (not base64url)") from exc
        if len(raw) < NONCE_BYTES + _TAG_BYTES:
            raise VaultError("the stored token copy is corrupt (too short)")
        nonce, sealed = raw[:NONCE_BYTES], raw[NONCE_BYTES:]
        try:
            plain = self._aead.decrypt(nonce, sealed, lookup_id.encode("utf-8"))
        except InvalidTag as exc:
            where = f" {self.source}" if self.source is not None else ""
            raise VaultError(
                "cannot decrypt the stored token copy: it was encrypted with a different "
                f"key than this server's key file{where} (do all servers sharing the "
                "database use the same key file?) or it is corrupt; rotate the token "
                "to get a new value"
            ) from exc
        return plain.decode("utf-8")


def _read_key(path: Path) -> bytes:
    """The key in ``path``; FileNotFoundError when there is none yet."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise VaultError(f"cannot open token key file {path}: {exc.strerror}") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise VaultError(f"token key file {path} is not a regular file")
        if info.st_mode & 0o077:
            raise VaultError(
                f"token key file {path} is readable or writable by group or others "
                f"(mode {stat.S_IMODE(info.st_mode):04o}); it protects every stored token "
                f"value: run `chmod 600 {path}` and start again"
            )
        content = os.read(fd, 4096)
    finally:
        os.close(fd)
    try:
        key = base64.b64decode(content.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise VaultError(f"token key file {path} does not hold base64 text") from exc
    if len(key) != KEY_BYTES:
        raise VaultError(
            f"token key file {path} holds {len(key)} bytes, expected {KEY_BYTES}; "
            "restore it from a backup (a new key cannot read the stored copies)"
        )
    return key


def _make_private_dir(directory: Path) -> None:
    """Create the missing directories with mode 0700. An existing directory is
    left alone: it may be the operator's data directory with modes of their own."""
    missing: list[Path] = []
    current = directory
    while not current.exists():
        missing.append(current)
        current = current.parent
    for each in reversed(missing):
        with contextlib.suppress(FileExistsError):
            each.mkdir(mode=0o700)
        os.chmod(each, 0o700)  # mkdir's mode is filtered by the umask


def _create_exclusive(path: Path, content: bytes) -> None:
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            os.fchmod(fd, 0o600)  # whatever the umask
            os.write(fd, content)
            os.fsync(fd)
        finally:
            os.close(fd)
        with contextlib.suppress(FileExistsError):  # someone else's key is kept
            os.link(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
