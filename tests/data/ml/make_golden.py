"""Produce the golden EfficientNet-Lite outputs that tests/ml/test_golden.py compares against.

The outputs come from an independent PyTorch implementation (unfolded batch norm, TF 'SAME'
padding via F.pad, weights loaded with ``torch.load``), applied to the three CIFAR-10 PNGs in
this folder after preprocessing with ``vize.ml.preprocess.preprocess`` (so the test checks the
ONNX graph, not the preprocessing). torch must NOT be installed in the project venv; re-run
in a throwaway venv:

    python3 -m venv /tmp/torchenv
    /tmp/torchenv/bin/pip install torch==2.13.0 numpy pillow
    cd /work/main   # the repository root
    /tmp/torchenv/bin/python tests/data/ml/make_golden.py \
        --site-packages .venv/lib/python3.11/site-packages

It writes ``golden_<backbone>_embedding.npy`` and ``golden_<backbone>_logits.npy`` here.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))  # repository root, for vize.ml.preprocess

from PIL import Image  # noqa: E402

from vize.ml.backbones import get_backbone_config  # noqa: E402
from vize.ml.preprocess import preprocess  # noqa: E402

IMAGES = ("airplane_000.png", "cat_000.png", "frog_000.png")
# EfficientNet-Lite block table: repeats, kernel, stride, expand, in, out.
TABLE = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
]


def scale_ch(c: int, w: float) -> int:
    new = max(8, int(c * w + 4) // 8 * 8)
    return new + 8 if new < 0.9 * c * w else new


def blocks(w: float, d: float) -> list[tuple[int, int, int, int, int]]:
    out = []
    for i, (r, k, s, e, cin, cout) in enumerate(TABLE):
        reps = r if i in (0, len(TABLE) - 1) else math.ceil(d * r)
        cin = 32 if i == 0 else scale_ch(cin, w)
        cout = scale_ch(cout, w)
        for j in range(reps):
            out.append((k, s if j == 0 else 1, e, cin if j == 0 else cout, cout))
    return out


def conv_same(x: torch.Tensor, weight: torch.Tensor, stride: int, groups: int = 1) -> torch.Tensor:
    ih, k = x.shape[-1], weight.shape[-1]
    oh = math.ceil(ih / stride)
    pad = max((oh - 1) * stride + k - ih, 0)
    x = F.pad(x, [pad // 2, pad - pad // 2, pad // 2, pad - pad // 2])
    return F.conv2d(x, weight, stride=stride, groups=groups)


def bn(x: torch.Tensor, sd: dict[str, torch.Tensor], p: str) -> torch.Tensor:
    return F.batch_norm(
        x,
        sd[f"{p}.running_mean"],
        sd[f"{p}.running_var"],
        sd[f"{p}.weight"],
        sd[f"{p}.bias"],
        training=False,
        eps=1e-3,
    )


def forward(sd: dict[str, torch.Tensor], x: torch.Tensor, w: float, d: float):
    x = F.relu6(bn(conv_same(x, sd["_conv_stem.weight"], 2), sd, "_bn0"))
    for i, (_k, s, e, cin, cout) in enumerate(blocks(w, d)):
        p, h = f"_blocks.{i}", x
        if e != 1:
            h = F.relu6(bn(conv_same(h, sd[f"{p}._expand_conv.weight"], 1), sd, f"{p}._bn0"))
        h = conv_same(h, sd[f"{p}._depthwise_conv.weight"], s, groups=cin * e)
        h = F.relu6(bn(h, sd, f"{p}._bn1"))
        h = bn(conv_same(h, sd[f"{p}._project_conv.weight"], 1), sd, f"{p}._bn2")
        x = h + x if s == 1 and cin == cout else h
    x = F.relu6(bn(conv_same(x, sd["_conv_head.weight"], 1), sd, "_bn1"))
    emb = x.mean(dim=(2, 3))
    return emb, F.linear(emb, sd["_fc.weight"], sd["_fc.bias"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--site-packages", type=Path, required=True)
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    for name in ("efficientnet_lite0", "efficientnet_lite2"):
        cfg = get_backbone_config(name)
        pth = args.site_packages / cfg.weights_module / cfg.weights_file
        sd = torch.load(pth, map_location="cpu", weights_only=True)
        sd = {k: v.double() for k, v in sd.items()}  # float64: the golden values are exact
        batch = np.stack([preprocess(Image.open(HERE / f), cfg) for f in IMAGES])
        emb, logits = forward(sd, torch.from_numpy(batch).double(), cfg.width, cfg.depth)
        np.save(HERE / f"golden_{name}_embedding.npy", emb.float().numpy())
        np.save(HERE / f"golden_{name}_logits.npy", logits.float().numpy())
        print(name, "top-1:", logits.argmax(1).tolist(), "emb norm:", emb.norm(dim=1).tolist())


if __name__ == "__main__":
    main()
