"""One bounded cache for the whole project: a mapping that forgets its least recently
put entries beyond ``size`` (and, with ``ttl``, entries older than that)."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar, cast

K = TypeVar("K")
V = TypeVar("V")


class Bounded(Generic[K, V]):
    """A dict that keeps at most ``size`` entries (none when ``size`` <= 0), each for at
    most ``ttl`` seconds when one is given."""

    def __init__(
        self,
        size: int,
        ttl: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.size = size
        self.ttl = ttl
        self._clock = clock
        self._items: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        if key not in self._items:
            return False
        at, _ = self._items[cast(K, key)]
        return self.ttl is None or self._clock() - at < self.ttl

    def get(self, key: K) -> V | None:
        found = self._items.get(key)
        if found is None:
            return None
        if self.ttl is not None and self._clock() - found[0] >= self.ttl:
            del self._items[key]
            return None
        return found[1]

    def put(self, key: K, value: V) -> None:
        if self.size <= 0:
            return
        self._items[key] = (self._clock(), value)
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)

    def pop(self, key: K) -> V | None:
        """Remove and return the entry (``None`` if there is none, or it is too old)."""
        value = self.get(key)
        self._items.pop(key, None)
        return value

    def clear(self) -> None:
        self._items.clear()
