"""ImageNet top-1 on known photos: proves weights, architecture and preprocessing fit."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from skimage import data

from vize.ml.backbones import get_backbone_config
from vize.ml.embedder import Embedder
from vize.ml.preprocess import preprocess

ESPRESSO = {967}
CATS = {281, 282, 285}  # tabby, tiger cat, Egyptian cat


def _jpeg(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=92)
    return buf.getvalue()


@pytest.mark.parametrize("name", ["efficientnet_lite0", "efficientnet_lite2"])
def test_top1_of_known_photos(embedder: Embedder, name: str):
    cfg = get_backbone_config(name)
    batch = [preprocess(_jpeg(data.coffee()), cfg), preprocess(_jpeg(data.chelsea()), cfg)]
    logits = embedder.logits(name, batch)
    top1 = logits.argmax(axis=1)
    assert int(top1[0]) in ESPRESSO
    assert int(top1[1]) in CATS
    emb = embedder.embed(name, batch)
    assert emb.shape == (2, 1280)
    assert (emb >= 0).all() and (emb <= 6).all()  # mean of ReLU6 activations
