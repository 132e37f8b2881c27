from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from vize.ml.embedder import Embedder


def test_concurrent_embedding_matches_sequential(embedder: Embedder):
    rng = np.random.default_rng(0)
    batches = [rng.uniform(-1, 1, (2, 3, 224, 224)).astype(np.float32) for _ in range(6)]
    sequential = [embedder.embed("efficientnet_lite0", b) for b in batches]
    with ThreadPoolExecutor(max_workers=3) as pool:
        concurrent = list(pool.map(lambda b: embedder.embed("efficientnet_lite0", b), batches))
    for a, b in zip(sequential, concurrent, strict=True):
        assert np.allclose(a, b, atol=1e-5)
    assert embedder.session("efficientnet_lite0") is embedder.session("efficientnet_lite0")


def test_batches_larger_than_max_batch_are_split(onnx_dir: Path):
    small = Embedder(onnx_dir, max_batch=2)
    x = np.random.default_rng(1).uniform(-1, 1, (5, 3, 224, 224)).astype(np.float32)
    out = small.embed("efficientnet_lite0", x)
    assert out.shape == (5, 1280)
    assert np.allclose(out[4], small.embed("efficientnet_lite0", x[4]), atol=1e-5)


def test_wrong_input_shape_is_rejected(embedder: Embedder):
    with pytest.raises(ValueError, match=r"\(3, 260, 260\)"):
        embedder.embed("efficientnet_lite2", np.zeros((1, 3, 224, 224), np.float32))


def test_invalid_thread_count(tmp_path: Path):
    with pytest.raises(ValueError):
        Embedder(tmp_path, intra_op_threads=0)
