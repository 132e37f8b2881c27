"""Admission of uploads at the rate this process can embed them.

Each new image queues background embedding (``VIZE_EMBED_ON_UPLOAD``). Embedding yields to
classification (``FairPool`` priorities, ``ForwardBatcher`` lanes), so under load a burst of
uploads would grow an ever longer backlog of images waiting for a forward. ``EmbedBacklog``
counts, per workspace, the images uploaded to this process that its embed jobs have not reached
yet; beyond ``limit`` in all, or, while classifications are being served, beyond what the
embed jobs get through in ``seconds`` at the rate they actually ran (measured, so it is the
rate the machine can embed *while* serving: low when classifications take the cores), an
upload is refused with 429 ``embedding_backlog`` and a ``Retry-After`` of the time the excess
takes to drain at that rate. Without classifications the count alone applies: a burst of
uploads into an idle server is not cut short by a rate measured on a busy machine.

The count corrects itself: an embed job takes the workspace's count when it starts and subtracts
it when it ends, whatever it found (images deleted meanwhile, or embedded by a training,
are gone from the count too). Only a process that runs the embed jobs itself (the embedded
worker) has one; with Celery workers the broker's queue is the backlog.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter

from vize.errors import TooManyRequests

# Until an embed job has run: a conservative guess of images embedded per second.
DEFAULT_RATE = 20.0
MAX_RETRY_SECONDS = 60
MIN_LIMIT = 16  # the time bound never refuses a small batch on a slow machine
SERVING_WINDOW = 5.0  # seconds after a classification during which the time bound applies


class EmbedBacklog:
    def __init__(self, limit: int, seconds: float = 0.0) -> None:
        self.limit = limit
        self.seconds = seconds
        self._lock = threading.Lock()
        self._pending: Counter[str] = Counter()
        self._rate = DEFAULT_RATE  # images/s, moving average over embed jobs
        self._last_served = -float("inf")  # monotonic time of the last classification

    def total(self) -> int:
        with self._lock:
            return sum(self._pending.values())

    def admit(self, workspace_id: str | None = None) -> None:
        """Raise 429 with ``Retry-After`` while the backlog is full (``limit`` 0: never).
        A full backlog still admits a workspace holding less than an equal share of it, so
        one workspace flooding uploads cannot lock the others out."""
        if self.limit <= 0:
            return
        with self._lock:
            total, rate = sum(self._pending.values()), self._rate
            mine = self._pending.get(workspace_id, 0) if workspace_id is not None else None
            sharing = len(self._pending) + (1 if not mine else 0)
        limit = self.current_limit(rate)
        if mine is not None and mine < limit / sharing:
            return
        if total >= limit:
            retry = min(MAX_RETRY_SECONDS, max(1, math.ceil((total - limit + 1) / rate)))
            raise TooManyRequests(
                f"{total} uploaded images are waiting to be processed; retry in {retry} s.",
                code="embedding_backlog",
                headers={"Retry-After": str(retry)},
            )

    def serving(self) -> None:
        """A classification was admitted (the time bound applies for ``SERVING_WINDOW``)."""
        self._last_served = time.monotonic()

    def current_limit(self, rate: float | None = None) -> int:
        """The backlog admitted now: ``limit``, or, while classifications are served, less
        when the measured rate would take longer than ``seconds`` to embed it."""
        if self.seconds <= 0 or time.monotonic() - self._last_served > SERVING_WINDOW:
            return self.limit
        rate = self._rate if rate is None else rate
        return min(self.limit, max(MIN_LIMIT, math.floor(rate * self.seconds)))

    def added(self, workspace_id: str, images: int = 1) -> None:
        with self._lock:
            self._pending[workspace_id] += images

    def started(self, workspace_id: str) -> int:
        """An embed job of ``workspace_id`` starts (before it looks for images): its share."""
        with self._lock:
            return self._pending[workspace_id]

    def finished(self, workspace_id: str, share: int, embedded: int, seconds: float) -> None:
        """The job that took ``share`` ended, having embedded ``embedded`` images."""
        with self._lock:
            left = self._pending[workspace_id] - share
            if left > 0:
                self._pending[workspace_id] = left
            else:
                del self._pending[workspace_id]
            if embedded >= 8 and seconds > 0:  # a few images say little about the rate
                self._rate = 0.5 * self._rate + 0.5 * (embedded / seconds)
