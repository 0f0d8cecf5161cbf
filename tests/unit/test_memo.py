"""The bounded memo: each key computed once while remembered, keys it must not keep
computed every time, emptied rather than grown past its bound, and a failing
computation neither swallowed nor remembered."""

from __future__ import annotations

import pytest

from ldapsrv.memo import DEFAULT_MAX_ENTRIES, Memo


class Counting:
    """A computation that records every key it is asked for."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, key: str) -> str:
        self.calls.append(key)
        return key.upper()


def test_each_key_is_computed_once_and_its_value_remembered() -> None:
    compute = Counting()
    memo: Memo[str, str] = Memo(compute)
    assert memo("a") == "A"
    assert memo("a") == "A"
    assert memo("b") == "B"
    assert memo("a") == "A"
    assert memo("b") == "B"
    assert compute.calls == ["a", "b"]
    assert len(memo) == 2


def test_the_remembered_value_is_the_very_object_computed() -> None:
    made: list[object] = []

    def compute(key: int) -> object:
        value = object()
        made.append(value)
        return value

    memo: Memo[int, object] = Memo(compute)
    first = memo(1)
    assert memo(1) is first
    assert made == [first]


def test_a_key_that_keeps_rejects_is_computed_every_time_and_never_stored() -> None:
    compute = Counting()
    memo: Memo[str, str] = Memo(compute, keeps=lambda key: len(key) <= 3)
    for _ in range(3):
        assert memo("toolong") == "TOOLONG"
    assert compute.calls == ["toolong"] * 3
    assert len(memo) == 0
    assert memo("ok") == "OK"
    assert memo("ok") == "OK"
    assert compute.calls == ["toolong"] * 3 + ["ok"]
    assert len(memo) == 1


def test_keeps_is_asked_on_a_miss_only() -> None:
    asked: list[str] = []

    def keeps(key: str) -> bool:
        asked.append(key)
        return True

    memo: Memo[str, str] = Memo(Counting(), keeps=keeps)
    memo("a")
    memo("a")
    memo("a")
    assert asked == ["a"]


def test_a_full_memo_is_emptied_before_the_next_key_is_stored() -> None:
    compute = Counting()
    memo: Memo[str, str] = Memo(compute, max_entries=3)
    for key in ("a", "b", "c"):
        memo(key)
    assert len(memo) == 3
    memo("a")  # a hit: nothing changes
    assert len(memo) == 3
    assert compute.calls == ["a", "b", "c"]

    memo("d")  # a miss while full: emptied, then "d" stored
    assert len(memo) == 1
    memo("d")
    assert compute.calls == ["a", "b", "c", "d"]
    memo("a")  # forgotten by the clearing: computed again
    assert compute.calls == ["a", "b", "c", "d", "a"]
    assert len(memo) == 2


def test_the_memo_never_holds_more_than_its_bound() -> None:
    compute = Counting()
    memo: Memo[str, str] = Memo(compute, max_entries=5)
    sizes = []
    for n in range(100):
        assert memo(f"k{n}") == f"K{n}"
        sizes.append(len(memo))
    assert max(sizes) == 5
    assert min(sizes) == 1
    assert len(compute.calls) == 100  # every key was new


def test_the_default_bound() -> None:
    memo: Memo[int, int] = Memo(lambda key: key)
    for n in range(DEFAULT_MAX_ENTRIES):
        memo(n)
    assert len(memo) == DEFAULT_MAX_ENTRIES
    memo(-1)
    assert len(memo) == 1


def test_an_exception_from_compute_propagates_and_nothing_is_stored() -> None:
    attempts: list[str] = []

    def compute(key: str) -> str:
        attempts.append(key)
        if key == "bad":
            raise ValueError("cannot compute")
        return key

    memo: Memo[str, str] = Memo(compute)
    with pytest.raises(ValueError, match="cannot compute"):
        memo("bad")
    assert len(memo) == 0
    with pytest.raises(ValueError, match="cannot compute"):
        memo("bad")
    assert attempts == ["bad", "bad"]  # the failure was not remembered either
    assert memo("good") == "good"
    assert len(memo) == 1


def test_an_exception_does_not_empty_a_full_memo() -> None:
    def compute(key: int) -> int:
        if key < 0:
            raise KeyError(key)
        return key * 2

    memo: Memo[int, int] = Memo(compute, max_entries=2)
    memo(1)
    memo(2)
    with pytest.raises(KeyError):
        memo(-1)
    assert len(memo) == 2
