"""A least-recently-used map bounded by the bytes its values hold."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

V = TypeVar("V")


@dataclass(frozen=True, slots=True)
class Stamped(Generic[V]):
    """A value and the change counter it was computed under."""

    counter: int
    value: V
    size: int


class ByteBoundedLRU(Generic[V]):
    """Values are dropped least recently used first once their sizes add up to
    more than ``max_bytes``; one value larger than a quarter of the budget is
    never kept (it would only push out everything else).

    Reactor thread only: no locking."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[Hashable, Stamped[V]] = OrderedDict()
        self.bytes = 0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: Hashable, counter: int) -> V | None:
        """The value stored under ``key`` if it was computed under ``counter``."""
        item = self._items.get(key)
        if item is None:
            self.misses += 1
            return None
        if item.counter != counter:
            self._drop(key, item)
            self.misses += 1
            return None
        self._items.move_to_end(key)
        self.hits += 1
        return item.value

    def put(self, key: Hashable, counter: int, value: V, size: int) -> None:
        if size > self.max_bytes // 4:
            return
        old = self._items.pop(key, None)
        if old is not None:
            self.bytes -= old.size
        self._items[key] = Stamped(counter, value, size)
        self.bytes += size
        while self.bytes > self.max_bytes and self._items:
            _, dropped = self._items.popitem(last=False)
            self.bytes -= dropped.size

    def _drop(self, key: Hashable, item: Stamped[V]) -> None:
        del self._items[key]
        self.bytes -= item.size
