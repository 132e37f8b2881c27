"""End-to-end training time for 10 labels x 20 images: decode + preprocess + embed + fit.

.venv/bin/python bench/ml_train_time.py --dataset DIR [--threads N] [--backbones a,b]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from vize.ml.backbones import get_backbone_config
from vize.ml.embedder import Embedder
from vize.ml.preprocess import preprocess
from vize.ml.trainer import evaluate, train_head


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument(
        "--dataset",
        type=Path,
        required=True,
        help="CIFAR-10-style folder <label>/<label>_NNN.png (BENCHMARKS.md: 10 x 100 cifar10-dev)",
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--backbones", default="efficientnet_lite2")
    args = ap.parse_args()
    names = args.backbones.split(",")
    files = [f for d in sorted(args.dataset.iterdir()) for f in sorted(d.glob("*.png"))[:20]]
    labels = sorted({f.parent.name for f in files})
    with tempfile.TemporaryDirectory() as cache:
        emb = Embedder(cache, intra_op_threads=args.threads)
        for n in names:
            emb.session(n)  # conversion + session creation are one-off, not per training
        t0 = time.perf_counter()
        raw = [f.read_bytes() for f in files]
        parts = [
            emb.embed(n, np.stack([preprocess(b, get_backbone_config(n)) for b in raw]))
            for n in names
        ]
        t1 = time.perf_counter()
        x = np.concatenate(parts, axis=1)
        y = [f.parent.name for f in files]
        report = evaluate(
            x, y, labels, "multi_class", [f.stem for f in files], block_dims=[1280] * len(names)
        )
        t2 = time.perf_counter()
        head = train_head(
            x, y, labels, "multi_class", backbones=names, block_dims=[1280] * len(names)
        )
        t3 = time.perf_counter()
    print(
        f"{'+'.join(names)} threads={args.threads}: embed {t1 - t0:.2f} s for {len(files)} "
        f"images, evaluate (split + 5-fold CV) {t2 - t1:.2f} s, final fit {t3 - t2:.2f} s, "
        f"head {len(head.to_bytes())} bytes, holdout acc {report['accuracy']:.3f}, "
        f"cv acc {report['cv_accuracy']:.3f}"
    )


if __name__ == "__main__":
    main()
