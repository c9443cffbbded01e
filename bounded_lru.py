"""A least-recently-used map bounded by the bytes its values hold, shared by a process's threads."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from typing import Generic, TypeVar

V = TypeVar("V")


class BoundedLru(Generic[V]):
    """Values by key, least recently used out first once their sizes add up to more than
    `capacity_bytes`; a value larger than the whole bound is not kept. A lock guards the index only."""

    def __init__(self, capacity_bytes: int):
        self.capacity = capacity_bytes
        self._items: OrderedDict[Hashable, tuple[V, int]] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    @property
    def size_bytes(self) -> int:
        return self._size

    def get(self, key: Hashable) -> V | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            self._items.move_to_end(key)
            return item[0]

    def put(self, key: Hashable, value: V, size: int) -> None:
        if size > self.capacity:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._size -= old[1]
            self._items[key] = (value, size)
            self._size += size
            while self._size > self.capacity:
                _, (_, evicted) = self._items.popitem(last=False)
                self._size -= evicted

    def discard(self, keys: Sequence[Hashable]) -> None:
        with self._lock:
            for key in keys:
                item = self._items.pop(key, None)
                if item is not None:
                    self._size -= item[1]

    def __len__(self) -> int:
        return len(self._items)
