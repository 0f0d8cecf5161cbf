"""The token vault: AES-256-GCM copies bound to their token, and a private key file."""

from __future__ import annotations

import base64
import os
import stat
import threading
from pathlib import Path

import pytest

from ldapsrv.auth.vault import BLOB_PREFIX, KEY_BYTES, TokenVault, VaultError

VALUE = "ldsrv_AAAAAAAAAAAA_" + "B" * 43
LOOKUP = "AAAAAAAAAAAA"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_value_decrypts_back_to_itself() -> None:
    vault = TokenVault.generate()
    blob = vault.encrypt(VALUE, LOOKUP)
    assert blob.startswith(BLOB_PREFIX)
    assert VALUE not in blob
    assert vault.decrypt(blob, LOOKUP) == VALUE


def test_the_blob_is_v1_then_base64url_of_a_12_byte_nonce_and_the_ciphertext() -> None:
    blob = TokenVault.generate().encrypt(VALUE, LOOKUP)
    body = blob[len(BLOB_PREFIX) :]
    assert set(body) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    assert len(raw) == 12 + len(VALUE) + 16


def test_encrypting_twice_gives_different_blobs() -> None:
    vault = TokenVault.generate()
    assert vault.encrypt(VALUE, LOOKUP) != vault.encrypt(VALUE, LOOKUP)


def test_another_key_cannot_decrypt_and_the_error_says_why() -> None:
    blob = TokenVault.generate().encrypt(VALUE, LOOKUP)
    with pytest.raises(VaultError, match="different key") as caught:
        TokenVault.generate().decrypt(blob, LOOKUP)
    assert VALUE not in str(caught.value)


def test_a_copy_moved_to_another_tokens_row_does_not_decrypt() -> None:
    vault = TokenVault.generate()
    blob = vault.encrypt(VALUE, LOOKUP)
    with pytest.raises(VaultError):
        vault.decrypt(blob, "BBBBBBBBBBBB")


@pytest.mark.parametrize("position", [0, 5, 12, 30, -1])
def test_a_tampered_blob_is_refused(position: int) -> None:
    vault = TokenVault.generate()
    blob = vault.encrypt(VALUE, LOOKUP)
    body = bytearray(base64.urlsafe_b64decode(blob[3:] + "=" * (-len(blob[3:]) % 4)))
    body[position] ^= 0x01
    tampered = BLOB_PREFIX + base64.urlsafe_b64encode(bytes(body)).rstrip(b"=").decode()
    with pytest.raises(VaultError):
        vault.decrypt(tampered, LOOKUP)


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        ("", "unknown format"),
        ("v2:AAAA", "unknown format"),
        ("v1:", "too short"),
        ("v1:AAAAAAAA", "too short"),
        ("v1:!!!!", "corrupt"),
        ("v1:A", "corrupt"),
    ],
)
def test_a_corrupt_or_foreign_blob_is_a_vault_error(blob: str, message: str) -> None:
    with pytest.raises(VaultError, match=message):
        TokenVault.generate().decrypt(blob, LOOKUP)


def test_a_key_must_be_32_bytes() -> None:
    with pytest.raises(VaultError):
        TokenVault(b"short")


def test_the_repr_does_not_show_the_key() -> None:
    key = os.urandom(KEY_BYTES)
    assert key.hex() not in repr(TokenVault(key))
    assert repr(key) not in repr(TokenVault(key))


# --- key file -------------------------------------------------------------------------


def test_the_key_file_is_created_0600_in_a_new_0700_directory(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "sub" / "token.key"
    old = os.umask(0o022)
    try:
        vault = TokenVault.load_or_create(path)
    finally:
        os.umask(old)
    assert mode(path) == 0o600
    assert mode(path.parent) == 0o700
    assert mode(path.parent.parent) == 0o700
    assert len(base64.b64decode(path.read_text().strip(), validate=True)) == KEY_BYTES
    assert [p.name for p in path.parent.iterdir()] == ["token.key"]  # no temporary left
    assert vault.source == path


def test_the_same_key_file_gives_the_same_key(tmp_path: Path) -> None:
    path = tmp_path / "token.key"
    blob = TokenVault.load_or_create(path).encrypt(VALUE, LOOKUP)
    assert TokenVault.load_or_create(path).decrypt(blob, LOOKUP) == VALUE


def test_an_existing_directory_keeps_its_mode(tmp_path: Path) -> None:
    tmp_path.chmod(0o750)
    TokenVault.load_or_create(tmp_path / "token.key")
    assert mode(tmp_path) == 0o750


def test_another_servers_key_file_names_itself_in_the_error(tmp_path: Path) -> None:
    ours = TokenVault.load_or_create(tmp_path / "a" / "token.key")
    theirs = TokenVault.load_or_create(tmp_path / "b" / "token.key")
    blob = theirs.encrypt(VALUE, LOOKUP)
    with pytest.raises(VaultError, match=str(tmp_path / "a" / "token.key")):
        ours.decrypt(blob, LOOKUP)


@pytest.mark.parametrize("bad_mode", [0o640, 0o604, 0o660, 0o644, 0o700])
def test_a_key_file_others_can_access_is_refused_with_the_fix(
    tmp_path: Path, bad_mode: int
) -> None:
    path = tmp_path / "token.key"
    TokenVault.load_or_create(path)
    path.chmod(bad_mode)
    if bad_mode & 0o077 == 0:
        TokenVault.load_or_create(path)  # owner-only modes are fine
        return
    with pytest.raises(VaultError) as caught:
        TokenVault.load_or_create(path)
    assert str(path) in str(caught.value)
    assert f"chmod 600 {path}" in str(caught.value)


def test_a_key_file_with_the_wrong_content_is_refused_not_replaced(tmp_path: Path) -> None:
    path = tmp_path / "token.key"
    path.write_text("not base64 at all!\n")
    path.chmod(0o600)
    with pytest.raises(VaultError, match="base64"):
        TokenVault.load_or_create(path)
    path.write_text(base64.b64encode(b"x" * 16).decode())
    with pytest.raises(VaultError, match="16 bytes"):
        TokenVault.load_or_create(path)
    assert path.read_text() == base64.b64encode(b"x" * 16).decode()


def test_a_symlinked_key_file_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "real.key"
    TokenVault.load_or_create(real)
    link = tmp_path / "token.key"
    link.symlink_to(real)
    with pytest.raises(VaultError, match="cannot open"):
        TokenVault.load_or_create(link)


def test_a_key_path_that_is_a_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "token.key").mkdir(mode=0o700)
    with pytest.raises(VaultError):
        TokenVault.load_or_create(tmp_path / "token.key")


def test_servers_starting_at_once_end_up_with_one_key(tmp_path: Path) -> None:
    path = tmp_path / "data" / "token.key"
    vaults: list[TokenVault] = []
    barrier = threading.Barrier(8)

    def start() -> None:
        barrier.wait()
        vaults.append(TokenVault.load_or_create(path))

    threads = [threading.Thread(target=start) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(vaults) == 8
    blob = vaults[0].encrypt(VALUE, LOOKUP)
    assert all(v.decrypt(blob, LOOKUP) == VALUE for v in vaults)
    assert [p.name for p in path.parent.iterdir()] == ["token.key"]
