"""Token format, issuing, and the bcrypt-once verifier that revocation cannot fool."""

from __future__ import annotations

import base64
import re
import threading
from dataclasses import replace
from datetime import timedelta

import bcrypt
import pytest
from token_fakes import T0, FakeTokenStore, new_token

from ldapsrv.auth import tokens
from ldapsrv.auth.tokens import (
    DEFAULT_LIFETIME,
    SERVICE_ACCOUNT_TOKEN_LIFETIME,
    TOKEN_LENGTH,
    TOKEN_PREFIX,
    IssuedToken,
    TokenVerifier,
    issue_token,
    parse_token,
    refusal_reason,
)
from ldapsrv.auth.vault import TokenVault
from ldapsrv.directory.records import TokenIntent, TokenRecord

COST = 4
ALPHABET = re.compile(r"[A-Za-z0-9_-]+")


class CountingCheckpw:
    def __init__(self) -> None:
        self.calls = 0
        self._real = bcrypt.checkpw

    def __call__(self, password: bytes, hashed: bytes) -> bool:
        self.calls += 1
        return self._real(password, hashed)


@pytest.fixture
def checkpw(monkeypatch: pytest.MonkeyPatch) -> CountingCheckpw:
    counter = CountingCheckpw()
    monkeypatch.setattr(bcrypt, "checkpw", counter)
    return counter


def stored(issued: IssuedToken, identifier: str = "nas-backup") -> TokenRecord:
    store = FakeTokenStore()
    return store.create_token(
        new_token(identifier, lookup_id=issued.lookup_id, secret_hash=issued.secret_hash)
    )


# --- format ---------------------------------------------------------------------------


def test_a_token_is_62_characters_of_the_base64url_alphabet_with_the_prefix() -> None:
    for _ in range(200):
        value = issue_token(COST, None).value
        assert len(value) == TOKEN_LENGTH == 62
        assert ALPHABET.fullmatch(value)
        assert value.startswith(TOKEN_PREFIX)


def test_tokens_fit_the_64_character_limit_and_stay_below_bcrypts_72_bytes() -> None:
    value = issue_token(COST, None).value
    assert len(value.encode("utf-8")) <= 64 < 72


def test_the_secret_part_carries_256_random_bits() -> None:
    value = issue_token(COST, None).value
    secret = value[len(TOKEN_PREFIX) + 12 + 1 :]
    assert len(secret) == 43
    assert len(base64.urlsafe_b64decode(secret + "=")) * 8 == 256
    assert tokens.SECRET_BYTES * 8 >= 192


def test_issued_values_and_lookup_ids_are_unique() -> None:
    issued = [issue_token(COST, None) for _ in range(100)]
    assert len({i.value for i in issued}) == 100
    assert len({i.lookup_id for i in issued}) == 100


def test_the_lookup_id_is_read_from_its_fixed_position() -> None:
    issued = issue_token(COST, None)
    assert parse_token(issued.value) == issued.lookup_id
    assert parse_token(issued.value.encode()) == issued.lookup_id
    assert issued.value[6:18] == issued.lookup_id


def test_lookup_ids_and_secrets_containing_underscores_still_parse() -> None:
    value = TOKEN_PREFIX + "a_b-c_d-e_f-" + "_" + "_-" * 21 + "x"
    assert len(value) == TOKEN_LENGTH
    assert parse_token(value) == "a_b-c_d-e_f-"


@pytest.mark.parametrize(
    "presented",
    [
        b"",
        b"hunter2",
        b"x" * 62,
        (TOKEN_PREFIX + "A" * 12 + "_" + "B" * 42).encode(),  # one short
        (TOKEN_PREFIX + "A" * 12 + "_" + "B" * 44).encode(),  # one long
        (TOKEN_PREFIX + "A" * 12 + "X" + "B" * 43).encode(),  # no separator
        ("ldsrv-" + "A" * 12 + "_" + "B" * 43).encode(),  # wrong prefix
        (TOKEN_PREFIX + "A" * 12 + "_" + "B" * 42 + "=").encode(),  # padding
        (TOKEN_PREFIX + "A" * 12 + "_" + "B" * 42 + " ").encode(),
        (TOKEN_PREFIX + "A" * 12 + "_" + "B" * 41 + "é").encode(),  # 62 bytes, not ASCII
        (TOKEN_PREFIX + "A" * 12 + "_" + "B" * 42).encode() + b"\xff",  # invalid UTF-8
        (TOKEN_PREFIX + "A" * 12 + "_" + "B" * 42).encode() + b"\x00",
    ],
)
def test_anything_else_is_not_a_token_and_parsing_never_raises(presented: bytes) -> None:
    assert parse_token(presented) is None
    assert parse_token(presented.decode("utf-8", "replace")) is None


def test_parse_token_rejects_non_string_input_without_raising() -> None:
    assert parse_token(None) is None  # type: ignore[arg-type]
    assert parse_token(62) is None  # type: ignore[arg-type]


def test_the_repr_of_an_issued_token_hides_the_value_and_the_encrypted_copy() -> None:
    issued = issue_token(COST, TokenVault.generate())
    shown = repr(issued) + str(issued)
    assert issued.value not in shown
    assert issued.value[len(TOKEN_PREFIX) + 13 :] not in shown
    assert issued.encrypted_value is not None and issued.encrypted_value not in shown
    assert issued.lookup_id in shown


def test_the_hash_is_bcrypt_over_the_whole_value() -> None:
    issued = issue_token(COST, None)
    assert issued.secret_hash.startswith("$2b$04$")
    assert bcrypt.checkpw(issued.value.encode(), issued.secret_hash.encode())
    flipped = issued.value[:-1] + ("A" if issued.value[-1] != "A" else "B")
    assert not bcrypt.checkpw(flipped.encode(), issued.secret_hash.encode())


def test_an_encrypted_copy_is_made_only_when_a_vault_is_given() -> None:
    assert issue_token(COST, None).encrypted_value is None
    vault = TokenVault.generate()
    issued = issue_token(COST, vault)
    assert issued.encrypted_value is not None
    assert vault.decrypt(issued.encrypted_value, issued.lookup_id) == issued.value


def test_default_lifetimes_follow_the_design() -> None:
    assert DEFAULT_LIFETIME[TokenIntent.APP_PASSWORD] == timedelta(days=365)
    assert DEFAULT_LIFETIME[TokenIntent.API] == timedelta(minutes=30)
    assert set(DEFAULT_LIFETIME) == set(TokenIntent)
    assert SERVICE_ACCOUNT_TOKEN_LIFETIME == timedelta(days=360)


# --- verifier -------------------------------------------------------------------------


def test_the_right_value_verifies(checkpw: CountingCheckpw) -> None:
    issued = issue_token(COST, None)
    assert TokenVerifier(COST).verify(issued.value.encode(), stored(issued))
    assert checkpw.calls == 1


def test_a_second_bind_with_the_same_value_makes_no_bcrypt_call(
    checkpw: CountingCheckpw,
) -> None:
    issued = issue_token(COST, None)
    record = stored(issued)
    verifier = TokenVerifier(COST)
    for _ in range(50):
        assert verifier.verify(issued.value.encode(), record)
    assert checkpw.calls == 1


def test_a_changed_secret_hash_forces_bcrypt_and_the_old_value_fails(
    checkpw: CountingCheckpw,
) -> None:
    old = issue_token(COST, None)
    record = stored(old)
    verifier = TokenVerifier(COST)
    assert verifier.verify(old.value.encode(), record)
    # The same row after a rotation that (for the sake of the test) kept the lookup id.
    new_hash = bcrypt.hashpw(b"something else", bcrypt.gensalt(rounds=COST)).decode()
    rotated = replace(record, secret_hash=new_hash, generation=record.generation + 1)
    assert not verifier.verify(old.value.encode(), rotated)
    assert checkpw.calls == 2


def test_a_rehash_of_the_same_value_is_checked_with_bcrypt_again(
    checkpw: CountingCheckpw,
) -> None:
    issued = issue_token(COST, None)
    record = stored(issued)
    verifier = TokenVerifier(COST)
    assert verifier.verify(issued.value.encode(), record)
    rehashed = replace(record, secret_hash=tokens.hash_token(issued.value, COST))
    assert verifier.verify(issued.value.encode(), rehashed)
    assert checkpw.calls == 2


def test_wrong_values_never_pass_even_when_the_right_one_is_cached(
    checkpw: CountingCheckpw,
) -> None:
    issued = issue_token(COST, None)
    record = stored(issued)
    verifier = TokenVerifier(COST)
    assert verifier.verify(issued.value.encode(), record)
    last = issued.value[-1]
    wrong = issued.value[:-1] + ("A" if last != "A" else "B")
    for _ in range(3):
        assert not verifier.verify(wrong.encode(), record)
    assert not verifier.verify(b"", record)
    assert not verifier.verify(issued.value.encode() + b"x", record)
    assert verifier.verify(issued.value.encode(), record)


def test_a_failed_check_is_not_cached_as_success(checkpw: CountingCheckpw) -> None:
    issued = issue_token(COST, None)
    record = stored(issued)
    verifier = TokenVerifier(COST)
    other = issue_token(COST, None).value
    wrong = TOKEN_PREFIX + issued.lookup_id + other[18:]
    assert not verifier.verify(wrong.encode(), record)
    assert not verifier.verify(wrong.encode(), record)
    assert checkpw.calls == 2
    assert verifier.cached_entries() == 0


def test_a_value_for_another_lookup_id_is_refused_without_bcrypt(
    checkpw: CountingCheckpw,
) -> None:
    mine, theirs = issue_token(COST, None), issue_token(COST, None)
    assert not TokenVerifier(COST).verify(theirs.value.encode(), stored(mine))
    assert checkpw.calls == 0


def test_a_malformed_stored_hash_never_matches() -> None:
    issued = issue_token(COST, None)
    record = replace(stored(issued), secret_hash="not a bcrypt hash")
    assert not TokenVerifier(COST).verify(issued.value.encode(), record)


def test_the_cache_is_bounded_and_evicts_the_least_recently_used(
    checkpw: CountingCheckpw,
) -> None:
    verifier = TokenVerifier(COST, max_entries=2)
    issued = [issue_token(COST, None) for _ in range(3)]
    records = [stored(i, f"t{n}") for n, i in enumerate(issued)]
    assert verifier.verify(issued[0].value.encode(), records[0])
    assert verifier.verify(issued[1].value.encode(), records[1])
    assert verifier.verify(issued[0].value.encode(), records[0])  # 0 is now most recent
    assert verifier.verify(issued[2].value.encode(), records[2])  # evicts 1
    assert verifier.cached_entries() == 2
    assert checkpw.calls == 3
    assert verifier.verify(issued[0].value.encode(), records[0])
    assert checkpw.calls == 3
    assert verifier.verify(issued[1].value.encode(), records[1])
    assert checkpw.calls == 4


def test_two_verifiers_do_not_share_their_keys() -> None:
    issued = issue_token(COST, None)
    record = stored(issued)
    first, second = TokenVerifier(COST), TokenVerifier(COST)
    first.verify(issued.value.encode(), record)
    assert first._key != second._key
    assert second.cached_entries() == 0


def test_concurrent_binds_all_verify_and_the_cache_stays_consistent() -> None:
    verifier = TokenVerifier(COST, max_entries=5)
    issued = [issue_token(COST, None) for _ in range(8)]
    records = [stored(i, f"t{n}") for n, i in enumerate(issued)]
    failures: list[int] = []

    def bind(n: int) -> None:
        for round_ in range(20):
            k = (n + round_) % len(issued)
            if not verifier.verify(issued[k].value.encode(), records[k]):
                failures.append(k)

    threads = [threading.Thread(target=bind, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert verifier.cached_entries() <= 5


def test_a_decoy_runs_one_bcrypt_at_the_configured_cost(
    checkpw: CountingCheckpw, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[bytes] = []
    real = checkpw._real

    def spy(password: bytes, hashed: bytes) -> bool:
        seen.append(hashed)
        return real(password, hashed)

    monkeypatch.setattr(bcrypt, "checkpw", spy)
    verifier = TokenVerifier(5)
    verifier.decoy(b"ldsrv_whatever")
    verifier.decoy(b"x" * 500)  # longer than bcrypt accepts: still one full check
    verifier.decoy(b"\x00\xff")
    assert len(seen) == 3
    assert all(h.startswith(b"$2b$05$") for h in seen)


def test_a_token_stops_working_at_its_expiry_instant() -> None:
    record = FakeTokenStore().create_token(new_token(expires_at=T0 + timedelta(hours=1)))
    assert refusal_reason(record, T0 + timedelta(minutes=59, seconds=59)) is None
    assert "expired" in (refusal_reason(record, T0 + timedelta(hours=1)) or "")
    never = replace(record, expiring=False, expires_at=None)
    assert refusal_reason(never, T0 + timedelta(days=10_000)) is None


def test_an_api_token_is_refused_for_an_ldap_bind() -> None:
    record = FakeTokenStore().create_token(new_token(intent=TokenIntent.API))
    assert "intent" in (refusal_reason(record, T0) or "")
    assert refusal_reason(record, T0, TokenIntent.API) is None
