"""Shared fixtures: one ONNX conversion cache and one embedder per test session."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vize.ml.backbones import get_backbone_config
from vize.ml.embedder import Embedder
from vize.ml.preprocess import preprocess

DATA_DIR = Path(__file__).resolve().parents[1] / "data" / "ml"
# 4 CIFAR-10 classes x 15 PNGs cut from /work/shared/datasets/cifar10-dev (~130 KB).
CIFAR_SLICE = DATA_DIR / "cifar_slice"


@pytest.fixture(scope="session")
def ml_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ml-cache")


@pytest.fixture(scope="session")
def embedder(ml_cache_dir: Path) -> Embedder:
    return Embedder(ml_cache_dir, intra_op_threads=2)


@pytest.fixture(scope="session")
def cifar_slice(embedder: Embedder) -> tuple[np.ndarray, list[str], list[str]]:
    """Real Lite0 embeddings of 4 CIFAR-10 classes x 15 images -> (X, labels, ids)."""
    cfg = get_backbone_config("efficientnet_lite0")
    files = sorted(CIFAR_SLICE.glob("*/*.png"))
    assert len(files) == 60
    x = embedder.embed("efficientnet_lite0", [preprocess(f.read_bytes(), cfg) for f in files])
    return x, [f.parent.name for f in files], [f.stem for f in files]
