"""A small LRU cache of what is loaded from a model's artifact (its head, its unknown-answer
calibration): immutable per model version, so keyed by model id and never invalidated."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class ModelCache(Generic[T]):
    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[str, T] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, model_id: str, load: Callable[[], T]) -> T:
        """The cached value, or ``load()``'s (run outside the lock: it reads storage; two
        callers may both load a missing one, and the second's value is kept)."""
        with self._lock:
            if model_id in self._items:
                self._items.move_to_end(model_id)
                return self._items[model_id]
        value = load()
        with self._lock:
            self._items[model_id] = value
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return value
