"""A memory budget for decoding images: bounds what concurrent decodes hold at once.

The pixel limit bounds one image; this bounds all of them together. Upload checks run in the
general thread pool (tens of threads) and classification decodes in the inference pool, so
without it ten 40 MP images arriving at once would each take their full decoded size at the
same moment (5.5 GB seen). A decode first reserves its estimated bytes and waits while the
reservations of others would exceed the budget; one image alone may always run."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class MemoryBudget:
    def __init__(self, total_bytes: int) -> None:
        if total_bytes < 1:
            raise ValueError("total_bytes must be >= 1")
        self.total = total_bytes
        self._used = 0
        self._cond = threading.Condition()

    @property
    def used(self) -> int:
        with self._cond:
            return self._used

    @contextmanager
    def reserve(self, nbytes: int) -> Iterator[None]:
        nbytes = max(0, nbytes)
        with self._cond:
            # Alone, an image may use more than the budget (its own limit was checked before).
            self._cond.wait_for(lambda: self._used == 0 or self._used + nbytes <= self.total)
            self._used += nbytes
        try:
            yield
        finally:
            with self._cond:
                self._used -= nbytes
                self._cond.notify_all()
