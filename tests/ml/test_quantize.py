"""The int8 backbone built at conversion time agrees with fp32 on known images."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from skimage import data

from tests.helpers import images
from tests.ml.conftest import SLICE_LABELS
from tests.ml.test_imagenet import CATS, ESPRESSO
from vize.ml.backbones import (
    create_backbone,
    feature_name,
    get_backbone_config,
    onnx_cache_path,
    split_feature,
)
from vize.ml.embedder import Embedder
from vize.ml.predictor import predict_proba
from vize.ml.preprocess import preprocess
from vize.ml.quantize import calibration_images
from vize.ml.trainer import TrainParams, train_head

LITE0 = "efficientnet_lite0"
LITE0_INT8 = feature_name(LITE0, "int8")


def _jpeg(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=92)
    return buf.getvalue()


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_feature_names_carry_the_precision() -> None:
    assert feature_name(LITE0, "fp32") == LITE0
    assert split_feature(LITE0_INT8) == (LITE0, "int8")
    assert split_feature(LITE0) == (LITE0, "fp32")
    assert get_backbone_config(LITE0_INT8) == get_backbone_config(LITE0)
    with pytest.raises(ValueError, match="precision"):
        feature_name(LITE0, "fp16")


def test_calibration_images_are_generated_the_same_every_time() -> None:
    cfg = get_backbone_config(LITE0)
    first, again = calibration_images(cfg, 6), calibration_images(cfg, 6)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert first[0].shape == (3, 224, 224)
    assert len({float(x.std()) for x in first}) == 6  # six different pictures


def test_int8_file_is_built_once_next_to_the_fp32_one(embedder: Embedder) -> None:
    bb = embedder.backbone(LITE0_INT8)
    assert bb.precision == "int8" and bb.name == LITE0_INT8
    assert bb.onnx_path == onnx_cache_path(bb.config, embedder.cache_dir, "int8")
    assert bb.onnx_path != onnx_cache_path(bb.config, embedder.cache_dir)
    built = bb.onnx_path.stat().st_mtime_ns
    assert create_backbone(LITE0_INT8, embedder.cache_dir).onnx_path.stat().st_mtime_ns == built


def test_int8_finds_the_same_imagenet_class_on_known_photos(embedder: Embedder) -> None:
    cfg = get_backbone_config(LITE0)
    batch = [preprocess(_jpeg(data.coffee()), cfg), preprocess(_jpeg(data.chelsea()), cfg)]
    top1 = embedder.logits(LITE0_INT8, batch).argmax(axis=1)
    assert int(top1[0]) in ESPRESSO and int(top1[1]) in CATS
    cos = (_unit(embedder.embed(LITE0, batch)) * _unit(embedder.embed(LITE0_INT8, batch))).sum(1)
    assert cos.min() > 0.95, cos


def test_a_head_trained_in_fp32_answers_the_same_on_int8_embeddings(
    embedder: Embedder, cifar_slice: tuple[np.ndarray, list[str], list[str]]
) -> None:
    """The tests' CIFAR images (32 px, upscaled): int8 embeddings stay close to fp32 ones and
    a head fit on fp32 picks the same label for nearly all of them."""
    x32, labels, _ = cifar_slice
    files = [f for label in SLICE_LABELS for f in images(label, 0, 15)]
    cfg = get_backbone_config(LITE0)
    x8 = embedder.embed(LITE0_INT8, [preprocess(f.read_bytes(), cfg) for f in files])
    cos = (_unit(x32) * _unit(x8)).sum(1)
    assert np.median(cos) > 0.9 and cos.min() > 0.7, (np.median(cos), cos.min())
    head = train_head(
        x32, labels, sorted(set(labels)), "multi_class", TrainParams(), backbones=[LITE0]
    )
    same = predict_proba(head, x32).argmax(1) == predict_proba(head, x8).argmax(1)
    assert same.mean() >= 0.9, same.mean()
