"""The forward batcher: every caller gets its own rows, callers that queue while a forward
runs are merged into one forward, and interactive work goes before background work."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np
import pytest

from tests.helpers import images
from vize.ml.backbones import get_backbone_config
from vize.ml.batcher import ForwardBatcher, Lane
from vize.ml.embedder import Embedder
from vize.ml.preprocess import preprocess

LITE0 = "efficientnet_lite0"


@pytest.fixture(scope="module")
def inputs() -> np.ndarray:
    cfg = get_backbone_config(LITE0)
    return np.stack([preprocess(f.read_bytes(), cfg) for f in images("cat", 0, 6)])


def _held(batcher: ForwardBatcher, calls: list[Callable[[], None]], queued: int) -> None:
    """Run ``calls`` in threads while a forward is (said to be) under way, until ``queued``
    requests wait; then let them go and wait for all."""
    with batcher._cond:
        batcher._running = True
    threads = [threading.Thread(target=call) for call in calls]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while sum(len(q) for q in batcher._lanes.values()) < queued:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    with batcher._cond:
        batcher._running = False
        batcher._cond.notify_all()
    for t in threads:
        t.join(60)


def test_callers_queued_during_a_forward_share_the_next_one(
    embedder: Embedder, inputs: np.ndarray
) -> None:
    batcher = ForwardBatcher(embedder, max_images=16)
    expected = embedder.embed(LITE0, inputs)
    parts = [inputs[0:1], inputs[1:3], inputs[3:6]]
    got: dict[int, np.ndarray] = {}

    def call(i: int) -> Callable[[], None]:
        return lambda: got.__setitem__(i, batcher.embed(LITE0, parts[i]))

    _held(batcher, [call(i) for i in range(3)], queued=3)
    assert batcher.forwards == 1  # three requests, one forward
    np.testing.assert_allclose(np.concatenate([got[0], got[1], got[2]]), expected, atol=1e-4)
    # Alone, a request runs in the caller's thread at once.
    np.testing.assert_allclose(batcher.embed(LITE0, inputs[:2]), expected[:2], atol=1e-4)
    assert batcher.forwards == 2


def test_a_forward_takes_at_most_max_images(embedder: Embedder, inputs: np.ndarray) -> None:
    batcher = ForwardBatcher(embedder, max_images=4)
    calls = [lambda: batcher.embed(LITE0, inputs[:3]) for _ in range(3)]
    _held(batcher, calls, queued=3)
    assert batcher.forwards == 3  # 3 + 3 images do not fit in 4


def test_interactive_requests_go_before_background_ones(
    embedder: Embedder, inputs: np.ndarray
) -> None:
    batcher = ForwardBatcher(embedder, max_images=16)
    order: list[int] = []
    real = embedder.embed

    class Recording(Embedder):
        def embed(self, name: str, batch: object) -> np.ndarray:
            order.append(len(batch))  # type: ignore[arg-type]
            return real(name, batch)  # type: ignore[arg-type]

    batcher.embedder = Recording.__new__(Recording)
    background = [lambda: batcher.embed(LITE0, inputs[:5], Lane.BACKGROUND)]
    interactive = [lambda: batcher.embed(LITE0, inputs[:1], Lane.INTERACTIVE)]
    _held(batcher, background + interactive, queued=2)
    assert order == [1, 5]  # queued second, served first; never mixed in one forward


def test_a_closed_batcher_refuses_work(embedder: Embedder, inputs: np.ndarray) -> None:
    batcher = ForwardBatcher(embedder)
    batcher.close()
    with pytest.raises(RuntimeError, match="closed"):
        batcher.embed(LITE0, inputs[:1])
