"""The ONNX graph must reproduce an independent torch implementation (make_golden.py)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from vize.ml.backbones import get_backbone_config
from vize.ml.embedder import Embedder
from vize.ml.preprocess import preprocess

from .conftest import DATA_DIR

IMAGES = ("airplane_000.png", "cat_000.png", "frog_000.png")


@pytest.mark.parametrize("name", ["efficientnet_lite0", "efficientnet_lite2"])
def test_matches_torch_golden(embedder: Embedder, name: str):
    cfg = get_backbone_config(name)
    batch = np.stack([preprocess(Image.open(DATA_DIR / f), cfg) for f in IMAGES])
    emb = embedder.embed(name, batch)
    logits = embedder.logits(name, batch)
    golden_emb = np.load(DATA_DIR / f"golden_{name}_embedding.npy")
    golden_logits = np.load(DATA_DIR / f"golden_{name}_logits.npy")
    assert emb.shape == golden_emb.shape == (3, 1280)
    assert np.abs(emb - golden_emb).max() < 1e-4 * np.abs(golden_emb).max()
    assert np.abs(logits - golden_logits).max() < 1e-4 * np.abs(golden_logits).max()
