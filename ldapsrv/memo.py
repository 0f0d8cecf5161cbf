"""A bounded memo for values clients send over and over (bind DNs, search bases).

A plain dict emptied when it is full: a lookup costs one hash, nothing is
reordered on a hit, and input that never repeats cannot grow it past its bound.
Values must be immutable (every caller shares them); dict operations are atomic
under the GIL, so pool threads may share a memo with the reactor thread.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

DEFAULT_MAX_ENTRIES = 4096


class Memo(Generic[K, V]):
    """``compute(key)``, remembered for keys that ``keeps`` accepts (judged on a
    miss only: a key too large to hold is computed every time)."""

    def __init__(
        self,
        compute: Callable[[K], V],
        keeps: Callable[[K], bool] = lambda key: True,
        max_entries: int = DEFAULT_MAX_ENTRIES,
    ) -> None:
        self._compute = compute
        self._keeps = keeps
        self._max_entries = max_entries
        self._known: dict[K, V] = {}

    def __call__(self, key: K) -> V:
        known = self._known
        try:
            return known[key]
        except KeyError:
            pass
        value = self._compute(key)
        if self._keeps(key):
            if len(known) >= self._max_entries:
                known.clear()
            known[key] = value
        return value

    def __len__(self) -> int:
        return len(self._known)
