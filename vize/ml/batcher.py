"""Dynamic batching of backbone forwards: one forward at a time, on all the cores.

Every forward of the process goes through one ``ForwardBatcher``, whose ONNX sessions use
every core (``intra_op_threads``). So one request on an idle server uses both cores of a
2-core machine (with one single-threaded session per request, a lone request used one), and
concurrent requests do not oversubscribe: their images, queued while a forward runs, are
merged into the next forward, which is also what makes batches fast.

No thread of its own: a caller that finds no forward running runs the next one itself
(leader/followers), so a lone request pays no thread hand-off; callers that arrive meanwhile
wait, and the first of them to see the forward finish runs the next batch, theirs and
everyone else's queued. Interactive work goes first: a forward takes queued interactive
requests before any background one (embedding after uploads, training chunks) and never mixes
the two, so a classification waits for at most one background forward of ``max_images``.
"""

from __future__ import annotations

import threading
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np

from vize.ml.embedder import Embedder


class Lane(IntEnum):
    """The two queues of the batcher, first served first (mirrors the pool's priorities)."""

    INTERACTIVE = 0
    BACKGROUND = 1


@dataclass
class _Request:
    name: str
    batch: np.ndarray
    future: Future[np.ndarray] = field(default_factory=Future)


class ForwardBatcher:
    def __init__(self, embedder: Embedder, *, max_images: int = 16) -> None:
        if max_images < 1:
            raise ValueError("max_images must be >= 1")
        self.embedder = embedder
        self.max_images = max_images
        self._cond = threading.Condition()
        self._lanes: dict[Lane, deque[_Request]] = {lane: deque() for lane in Lane}
        self._running = False
        self._closed = False
        self.forwards = 0  # forwards run (tests, metrics)

    def embed(self, name: str, batch: np.ndarray, lane: Lane = Lane.INTERACTIVE) -> np.ndarray:
        """Raw embeddings of ``batch`` (N, 3, S, S) with feature ``name``; blocks."""
        if len(batch) == 0:
            return self.embedder.embed(name, batch)  # the embedder's own shape checks
        request = _Request(name, batch)
        with self._cond:
            if self._closed:
                raise RuntimeError("the forward batcher is closed")
            self._lanes[lane].append(request)
        while not request.future.done():
            with self._cond:
                while self._running and not request.future.done():
                    self._cond.wait()
                if request.future.done():
                    break
                taken = self._take()  # ours is queued, so never empty
                self._running = True
            try:
                self._run(taken)
            finally:
                with self._cond:
                    self._running = False
                    self._cond.notify_all()
        return request.future.result()

    def close(self) -> None:
        """Refuse new work (forwards under way finish)."""
        with self._cond:
            self._closed = True

    def _take(self) -> list[_Request]:
        """The next forward (lock held): queued requests of the first non-empty lane with the
        same feature name as its head, in order, up to ``max_images`` (at least one)."""
        for lane in Lane:
            queue = self._lanes[lane]
            if not queue:
                continue
            first = queue.popleft()
            taken, images = [first], len(first.batch)
            rest: deque[_Request] = deque()
            while queue:
                nxt = queue.popleft()
                if nxt.name == first.name and images + len(nxt.batch) <= self.max_images:
                    taken.append(nxt)
                    images += len(nxt.batch)
                else:
                    rest.append(nxt)
            queue.extendleft(reversed(rest))
            return taken
        return []

    def _run(self, taken: list[_Request]) -> None:
        live = [r for r in taken if r.future.set_running_or_notify_cancel()]
        if not live:
            return
        try:
            batch = np.concatenate([r.batch for r in live]) if len(live) > 1 else live[0].batch
            out = self.embedder.embed(live[0].name, batch)
            self.forwards += 1
        except BaseException as exc:  # handed to every waiting caller
            for r in live:
                r.future.set_exception(exc)
            return
        start = 0
        for r in live:
            r.future.set_result(out[start : start + len(r.batch)])
            start += len(r.batch)
