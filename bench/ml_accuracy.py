"""Development benchmark: linear-probe accuracy on cifar10-dev and embedding speed.

    .venv/bin/python bench/ml_accuracy.py --dataset DIR [--cache DIR] [--threads N]

For each variant: k=20 training images per label, the other 80 per label as test, 3 seeds,
mean accuracy. Embeddings are cached in --cache (npz) so re-runs only re-train heads.
Not the API benchmark: it calls vize.ml directly.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from PIL import Image

from vize.ml.backbones import get_backbone_config
from vize.ml.embedder import Embedder
from vize.ml.preprocess import hflip, preprocess
from vize.ml.trainer import TrainParams, head_scores, train_head

BACKBONES = ("efficientnet_lite0", "efficientnet_lite2")
K_TRAIN, SEEDS = 20, (0, 1, 2)


def load_dataset(root: Path) -> tuple[list[Path], list[str]]:
    files = sorted(root.glob("*/*.png"))
    return files, [f.parent.name for f in files]


def centre_crop(img: Image.Image, fraction: float = 0.875) -> Image.Image:
    w, h = img.size
    side = min(w, h) * fraction
    left, top = (w - side) / 2, (h - side) / 2
    return img.crop((round(left), round(top), round(left + side), round(top + side)))


def embed_all(emb: Embedder, files: list[Path], cache: Path) -> dict[str, np.ndarray]:
    path = cache / "cifar10dev_embeddings.npz"
    if path.is_file():
        return dict(np.load(path))
    out: dict[str, np.ndarray] = {}
    for name in BACKBONES:
        cfg = get_backbone_config(name)
        raw = [f.read_bytes() for f in files]
        x = np.stack([preprocess(b, cfg) for b in raw])
        out[name] = emb.embed(name, x)
        out[name + ":flip"] = emb.embed(name, hflip(x))
        crops = np.stack(
            [preprocess(centre_crop(Image.open(f).convert("RGB")), cfg) for f in files]
        )
        out[name + ":crop"] = emb.embed(name, crops)
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(path, **out)
    return out


def split(labels: list[str], seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.array(labels)
    train = np.concatenate(
        [rng.choice(np.flatnonzero(y == c), K_TRAIN, replace=False) for c in sorted(set(labels))]
    )
    return np.sort(train), np.setdiff1d(np.arange(len(y)), train)


def run_variant(
    feats: dict[str, np.ndarray],
    labels: list[str],
    names: tuple[str, ...],
    c: float,
    flip_train: bool,
    flip_test: bool,
    suffix: str = "",
) -> float:
    x = np.concatenate([feats[n + suffix] for n in names], axis=1)
    xf = np.concatenate([feats[n + ":flip"] for n in names], axis=1)
    dims = [1280] * len(names)
    classes = sorted(set(labels))
    y = np.array(labels)
    accs = []
    for seed in SEEDS:
        tr, te = split(labels, seed)
        head = train_head(
            x[tr],
            list(y[tr]),
            classes,
            "multi_class",
            TrainParams(C=c),
            backbones=names,
            block_dims=dims,
            augment=xf[tr] if flip_train else None,
        )
        probs = head_scores(head, x[te])
        if flip_test:
            probs = (probs + head_scores(head, xf[te])) / 2
        accs.append(float(np.mean(np.array(classes)[probs.argmax(1)] == y[te])))
    return float(np.mean(accs))


def speed(emb: Embedder, files: list[Path], repeats: int = 5) -> None:
    for name in BACKBONES:
        cfg = get_backbone_config(name)
        raw = [f.read_bytes() for f in files[:32]]
        t0 = time.perf_counter()
        x = np.stack([preprocess(b, cfg) for b in raw])
        pre_ms = (time.perf_counter() - t0) / len(raw) * 1000
        emb.embed(name, x[:4])  # warm-up
        for bs in (1, 32):
            per = []
            for _ in range(repeats):
                t = time.perf_counter()
                emb.embed(name, x[:bs])
                per.append((time.perf_counter() - t) / bs * 1000)
            print(
                f"{name}: batch {bs:2d}: {np.median(per):6.2f} ms/image "
                f"(threads={emb.intra_op_threads}); preprocess {pre_ms:.2f} ms/image"
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument(
        "--dataset",
        type=Path,
        required=True,
        help="CIFAR-10-style folder <label>/<label>_NNN.png (BENCHMARKS.md: 10 x 100 cifar10-dev)",
    )
    ap.add_argument("--cache", type=Path, default=Path("/tmp/vize-bench-cache"))
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    files, labels = load_dataset(args.dataset)
    for threads in sorted({1, args.threads}):
        speed(Embedder(args.cache, intra_op_threads=threads), files)
    feats = embed_all(Embedder(args.cache, intra_op_threads=args.threads), files, args.cache)
    l0, l2 = ("efficientnet_lite0",), ("efficientnet_lite2",)
    both = l0 + l2
    variants = [
        ("lite0 C=10 (reference probe)", l0, 10.0, False, False, ""),
        ("lite0 C=10 centre-crop 0.875", l0, 10.0, False, False, ":crop"),
        ("lite2 C=10", l2, 10.0, False, False, ""),
        ("lite2 C=10 centre-crop 0.875", l2, 10.0, False, False, ":crop"),
        ("lite0+lite2 C=10", both, 10.0, False, False, ""),
    ]
    for c in (1.0, 3.0, 10.0, 30.0, 100.0):
        variants.append((f"lite0 C={c:g} +flip-train", l0, c, True, False, ""))
        variants.append((f"lite0+lite2 C={c:g} +flip-train", both, c, True, False, ""))
    variants += [
        ("lite0 C=10 +flip-train +flip-test", l0, 10.0, True, True, ""),
        ("lite2 C=10 +flip-train", l2, 10.0, True, False, ""),
        ("lite0+lite2 C=10 +flip-train +flip-test", both, 10.0, True, True, ""),
    ]
    for name, names, c, ft, fte, suffix in variants:
        t = time.perf_counter()
        acc = run_variant(feats, labels, names, c, ft, fte, suffix)
        fit_s = (time.perf_counter() - t) / len(SEEDS)
        print(f"{name:45s} acc {acc:.3f}   head fit {fit_s:.2f} s")


if __name__ == "__main__":
    main()
