"""Shared fixtures: one embedder per test session, on the session's ONNX cache (``onnx_dir``,
tests/fixtures.py), so the ML tests and the apps convert each backbone once between them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.helpers import images
from vize.ml.backbones import get_backbone_config
from vize.ml.embedder import Embedder
from vize.ml.preprocess import preprocess

DATA_DIR = Path(__file__).resolve().parents[1] / "data" / "ml"
SLICE_LABELS = ("airplane", "cat", "frog", "truck")


@pytest.fixture(scope="session")
def embedder(onnx_dir: Path) -> Embedder:
    return Embedder(onnx_dir, intra_op_threads=2)


@pytest.fixture(scope="session")
def cifar_slice(embedder: Embedder) -> tuple[np.ndarray, list[str], list[str]]:
    """Real Lite0 embeddings of 4 CIFAR-10 classes x 15 images -> (X, labels, ids)."""
    cfg = get_backbone_config("efficientnet_lite0")
    files = [f for label in SLICE_LABELS for f in images(label, 0, 15)]
    assert len(files) == 60
    x = embedder.embed("efficientnet_lite0", [preprocess(f.read_bytes(), cfg) for f in files])
    return x, [f.parent.name for f in files], [f.stem for f in files]
