from __future__ import annotations

import io
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

from vize.ml.backbones import get_backbone_config, weights_path
from vize.ml.pth import PthFormatError, read_state_dict, read_state_dict_stream


@pytest.mark.parametrize(
    ("name", "n_keys", "head_in", "n_blocks"),
    [("efficientnet_lite0", 296, 320, 16), ("efficientnet_lite2", 386, 352, 21)],
)
def test_reads_expected_keys_and_shapes(name: str, n_keys: int, head_in: int, n_blocks: int):
    sd = read_state_dict(weights_path(get_backbone_config(name)))
    assert len(sd) == n_keys
    assert sd["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert sd["_conv_stem.weight"].dtype == np.float32
    assert sd["_conv_head.weight"].shape == (1280, head_in, 1, 1)
    assert sd["_fc.weight"].shape == (1000, 1280)
    assert sd["_fc.bias"].shape == (1000,)
    assert sd["_bn0.num_batches_tracked"].dtype == np.int64
    blocks = {k.split(".")[1] for k in sd if k.startswith("_blocks.")}
    assert len(blocks) == n_blocks
    assert sd["_blocks.1._depthwise_conv.weight"].shape == (96, 1, 3, 3)
    # Running variances are non-negative and weights finite: data was read at the right offsets.
    assert all(np.isfinite(v).all() for v in sd.values())
    assert all((v >= 0).all() for k, v in sd.items() if k.endswith("running_var"))


def _legacy_file(payload: object) -> bytes:
    buf = io.BytesIO()
    for obj in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}, payload, []):
        pickle.dump(obj, buf, protocol=2)
    return buf.getvalue()


def test_rejects_disallowed_globals():
    # A pickle that would call os.system must not be executed.
    with pytest.raises(PthFormatError, match="not allowed"):
        read_state_dict_stream(io.BytesIO(_legacy_file(os.system)))


def test_rejects_non_torch_and_zip_files(tmp_path: Path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(pickle.dumps(123))
    with pytest.raises(PthFormatError, match="magic"):
        read_state_dict(bad)
    zipped = tmp_path / "new.pth"
    with zipfile.ZipFile(zipped, "w") as zf:
        zf.writestr("archive/data.pkl", b"x")
    with pytest.raises(PthFormatError, match="zip"):
        read_state_dict(zipped)
