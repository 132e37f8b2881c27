"""Linear-probe accuracy per image domain for view, backbone and precision choices (issue 14).

    .venv/bin/python bench/domain_probe.py --suite DIR [--cache DIR] [--int8] [--json FILE]

``DIR`` is a suite made by ``bench/prepare_domains.py`` (``<domain>/{train,test}/<label>``).
In-process, like ``bench/ml_accuracy.py``: vize's own backbones (``vize.ml``), vize's own
preprocessing for the whole-image view and vize's own head (``train_head``: L2-normalised
embeddings, multinomial logistic regression, default C) trained on the fixed train split
and scored on the test split. The view variants live here, not in ``vize/``:

- ``whole``: the whole image resized to the square input (the service's default).
- ``crop``: the usual ImageNet evaluation view: shorter side to input/0.875, centre square.
- ``mean``: the mean of the L2-normalised ``whole`` and ``crop`` embeddings (2 forwards).
- ``multi->X``: trained on four rows per image (whole, crop and their mirror images),
  serving view X (``whole``: 1 forward, ``mean``: 2).

``--int8`` adds static int8 backbones: ONNX Runtime QDQ, per-channel int8 weights, uint8
activations, MinMax calibration on real images of the suite's *train* splits (never test).
``--redraws N`` instead scores the single views (whole, crop, mean) over N fresh draws of
k per label from the pooled train+test images, to show how much the draw itself moves a figure.
``--precisions`` picks fp32 and/or int8 (``--int8`` = both), or ``vize-int8``: the int8
model the service itself builds and serves (``vize.ml.quantize``: 7-bit weights, calibration
on generated images, nothing from the suite). Embeddings are cached per
domain/backbone/precision in ``--cache`` (npz), so re-runs only re-train heads. Accuracy
only: the rough timings printed are not benchmark figures.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

from vize.ml.backbones import BackboneConfig, feature_name, get_backbone_config
from vize.ml.embedder import Embedder
from vize.ml.predictor import normalise_features
from vize.ml.preprocess import decode_image, hflip, preprocess
from vize.ml.trainer import TrainParams, head_scores, train_head

BACKBONES = {"lite0": "efficientnet_lite0", "lite2": "efficientnet_lite2"}
CROP_FRACTION = 0.875
CALIBRATION_PER_DOMAIN = 16
Features = dict[str, np.ndarray]


@dataclass(frozen=True)
class Split:
    files: list[Path]
    labels: list[str]


def load_suite(root: Path) -> dict[str, dict[str, Split]]:
    suite: dict[str, dict[str, Split]] = {}
    for domain in sorted(p for p in root.iterdir() if (p / "train").is_dir()):
        suite[domain.name] = {}
        for split in ("train", "test"):
            files = sorted((domain / split).glob("*/*.png"))
            suite[domain.name][split] = Split(files, [f.parent.name for f in files])
    return suite


def crop_view(img: Image.Image, size: int) -> Image.Image:
    """Shorter side to size/0.875 (aspect kept), then the centre size x size square."""
    w, h = img.size
    scale = size / CROP_FRACTION / min(w, h)
    rw, rh = max(size, round(w * scale)), max(size, round(h * scale))
    img = img.resize((rw, rh), Image.Resampling.BICUBIC, reducing_gap=3.0)
    left, top = (rw - size) // 2, (rh - size) // 2
    return img.crop((left, top, left + size, top + size))


def views(path: Path, cfg: BackboneConfig) -> tuple[np.ndarray, np.ndarray]:
    img = decode_image(path.read_bytes(), cfg.input_size)
    return preprocess(img, cfg), preprocess(crop_view(img, cfg.input_size), cfg)


class Backbones:
    """fp32 through vize's Embedder; int8 as our own sessions on quantised copies."""

    def __init__(self, cache: Path, threads: int) -> None:
        self.cache, self.threads = cache, threads
        self.embedder = Embedder(cache, intra_op_threads=threads)
        self.int8: dict[str, ort.InferenceSession] = {}

    def embed(self, name: str, precision: str, x: np.ndarray) -> np.ndarray:
        if precision == "fp32":
            return self.embedder.embed(name, x)
        if precision == "vize-int8":  # the int8 model the service builds and serves
            return self.embedder.embed(feature_name(name, "int8"), x)
        sess = self.int8[name]
        parts = [sess.run(["embedding"], {"input": x[i : i + 32]})[0] for i in range(0, len(x), 32)]
        return np.concatenate(parts)

    def quantise(self, name: str, calibration: list[np.ndarray]) -> float:
        """Build (once) and load the int8 model; returns the seconds the build took."""
        from onnxruntime.quantization import (
            CalibrationDataReader,
            QuantFormat,
            QuantType,
            quantize_static,
        )
        from onnxruntime.quantization.shape_inference import quant_pre_process

        src = self.embedder.backbone(name).onnx_path
        out = self.cache / f"{name}.int8.onnx"
        t = time.perf_counter()
        if not out.is_file():
            pre = self.cache / f"{name}.pre.onnx"
            quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)

            class Reader(CalibrationDataReader):
                def __init__(self) -> None:
                    self.items: Iterator[np.ndarray] = iter(calibration)

                def get_next(self) -> dict[str, np.ndarray] | None:
                    x = next(self.items, None)
                    return None if x is None else {"input": x[None]}

            quantize_static(
                str(pre),
                str(out),
                Reader(),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                weight_type=QuantType.QInt8,
                activation_type=QuantType.QUInt8,
            )
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.int8[name] = ort.InferenceSession(str(out), opts, providers=["CPUExecutionProvider"])
        return time.perf_counter() - t


def embed_domain(
    bb: Backbones, name: str, precision: str, data: dict[str, Split], path: Path
) -> Features:
    """Embeddings of every view: ``<split>:<view>``; mirrored views for train only."""
    if path.is_file():
        return dict(np.load(path))
    cfg = get_backbone_config(name)
    out: Features = {}
    for split, s in data.items():
        pairs = [views(f, cfg) for f in s.files]
        whole = np.stack([p[0] for p in pairs])
        crop = np.stack([p[1] for p in pairs])
        out[f"{split}:whole"] = bb.embed(name, precision, whole)
        out[f"{split}:crop"] = bb.embed(name, precision, crop)
        if split == "train":
            out[f"{split}:whole_flip"] = bb.embed(name, precision, hflip(whole))
            out[f"{split}:crop_flip"] = bb.embed(name, precision, hflip(crop))
    np.savez(path, **out)  # type: ignore[arg-type]
    return out


def unit(x: np.ndarray) -> np.ndarray:
    return normalise_features(x, (x.shape[1],))


def mean_view(f: Features, split: str, suffix: str = "") -> np.ndarray:
    return (unit(f[f"{split}:whole{suffix}"]) + unit(f[f"{split}:crop{suffix}"])) / 2


TrainRows = Callable[[Features], list[np.ndarray]]
Serve = Callable[[Features], np.ndarray]
MULTI: TrainRows = lambda f: [f[f"train:{v}"] for v in ("whole", "crop", "whole_flip", "crop_flip")]  # noqa: E731
# name -> (training rows, served view, forwards per served image)
VARIANTS: dict[str, tuple[TrainRows, Serve, int]] = {
    "whole": (lambda f: [f["train:whole"]], lambda f: f["test:whole"], 1),
    "crop": (lambda f: [f["train:crop"]], lambda f: f["test:crop"], 1),
    "mean": (lambda f: [mean_view(f, "train")], lambda f: mean_view(f, "test"), 2),
    "multi->whole": (MULTI, lambda f: f["test:whole"], 1),
    "multi->crop": (MULTI, lambda f: f["test:crop"], 1),
    "multi->mean": (MULTI, lambda f: mean_view(f, "test"), 2),
    "mean+flip->mean": (
        lambda f: [mean_view(f, "train"), mean_view(f, "train", "_flip")],
        lambda f: mean_view(f, "test"),
        2,
    ),
}


def probe(f: Features, data: dict[str, Split], variant: str) -> float:
    rows_of, serve, _ = VARIANTS[variant]
    rows = [unit(r) for r in rows_of(f)]
    classes = sorted(set(data["train"].labels))
    y = list(data["train"].labels) * len(rows)
    x = np.concatenate(rows)
    head = train_head(x, y, classes, "multi_class", TrainParams(), block_dims=(x.shape[1],))
    pred = np.array(classes)[head_scores(head, serve(f)).argmax(1)]
    return float(np.mean(pred == np.array(data["test"].labels)))


def redraw_probe(f: Features, data: dict[str, Split], variant: str, seed: int) -> float:
    """Single-view variants on a fresh draw of k per label from the pooled train+test images.

    The fixed split is one draw of 20 per label; which 20 moves a domain's figure by more than
    the view choices do, so the single-view rows are also averaged over several draws.
    """
    labels = np.array(data["train"].labels + data["test"].labels)
    if variant == "mean":
        x = np.concatenate([mean_view(f, "train"), mean_view(f, "test")])
    else:
        x = np.concatenate([f[f"train:{variant}"], f[f"test:{variant}"]])
    classes = sorted(set(labels.tolist()))
    k = len(data["train"].files) // len(classes)
    rng = np.random.default_rng(seed)
    tr = np.concatenate(
        [rng.choice(np.flatnonzero(labels == c), k, replace=False) for c in classes]
    )
    te = np.setdiff1d(np.arange(len(labels)), tr)
    head = train_head(
        unit(x[tr]),
        list(labels[tr]),
        classes,
        "multi_class",
        TrainParams(),
        block_dims=(x.shape[1],),
    )
    pred = np.array(classes)[head_scores(head, x[te]).argmax(1)]
    return float(np.mean(pred == labels[te]))


def rough_ms(bb: Backbones, name: str, precision: str, x: np.ndarray, n: int = 15) -> float:
    bb.embed(name, precision, x[:1])
    times = []
    for _ in range(n):
        t = time.perf_counter()
        bb.embed(name, precision, x[:1])
        times.append(time.perf_counter() - t)
    return float(np.median(times) * 1000)


def calibration_images(suite: dict[str, dict[str, Split]], cfg: BackboneConfig) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    out: list[np.ndarray] = []
    for data in suite.values():
        files = data["train"].files
        for i in rng.choice(len(files), min(CALIBRATION_PER_DOMAIN, len(files)), replace=False):
            out.extend(views(files[i], cfg))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--suite", type=Path, default=Path("/tmp/vize-domains"))
    ap.add_argument("--cache", type=Path, default=Path("/tmp/vize-bench-cache"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--backbones", nargs="+", default=list(BACKBONES), choices=list(BACKBONES))
    ap.add_argument("--int8", action="store_true", help="also static int8 backbones")
    ap.add_argument(
        "--precisions",
        nargs="+",
        choices=("fp32", "int8", "vize-int8"),
        help="instead of --int8; vize-int8: the service's own int8 model (generated calibration)",
    )
    ap.add_argument("--json", type=Path, help="write all results here")
    ap.add_argument(
        "--redraws", type=int, default=0, help="instead: whole/crop/mean over N fresh draws"
    )
    args = ap.parse_args()
    suite = load_suite(args.suite)
    args.cache.mkdir(parents=True, exist_ok=True)
    bb = Backbones(args.cache, args.threads)
    results: dict[str, dict[str, float]] = {}
    timings: dict[str, float] = {}
    # All fp32 results first: int8 is the optional, slower-to-build part.
    precisions = args.precisions or (["fp32", "int8"] if args.int8 else ["fp32"])
    for precision in precisions:
        for short in args.backbones:
            name = BACKBONES[short]
            cfg = get_backbone_config(name)
            if precision == "int8":
                build_s = bb.quantise(name, calibration_images(suite, cfg))
                print(f"{short} int8 ready in {build_s:.0f} s")
            sample = np.stack([views(suite[d]["test"].files[0], cfg)[0] for d in suite])
            timings[f"{short}/{precision}"] = rough_ms(bb, name, precision, sample)
            feats = {
                d: embed_domain(
                    bb, name, precision, data, args.cache / f"domain-{d}-{short}-{precision}.npz"
                )
                for d, data in suite.items()
            }
            for variant in ("whole", "crop", "mean") if args.redraws else VARIANTS:
                if args.redraws:
                    draws = range(1, args.redraws + 1)
                    row = {
                        d: float(
                            np.mean([redraw_probe(feats[d], suite[d], variant, s) for s in draws])
                        )
                        for d in suite
                    }
                else:
                    row = {d: probe(feats[d], suite[d], variant) for d in suite}
                row["mean"] = float(np.mean(list(row.values())))
                results[f"{short}/{precision}/{variant}"] = row
                cells = " | ".join(f"{row[d]:.3f}" for d in [*suite, "mean"])
                print(f"| {short} {precision} {variant} | {cells} |", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"results": results, "rough_ms": timings}, indent=2))
    if "lite0/fp32/whole" in results and "lite0/fp32/crop" in results and not args.redraws:
        print_report(suite, results, timings)


def print_report(
    suite: dict[str, dict[str, Split]],
    results: dict[str, dict[str, float]],
    timings: dict[str, float],
) -> None:
    """Markdown table, plus the issue's targets checked against the Lite0 fp32 probe."""
    domains = list(suite)
    ref, crop = results["lite0/fp32/whole"], results["lite0/fp32/crop"]
    print(
        "\n| backbone / precision / variant | fwd | "
        + " | ".join(domains)
        + " | mean | Δmean | worst vs crop-1 |"
    )
    print("| --- " * (len(domains) + 5) + "|")
    for key, row in results.items():
        fwd = VARIANTS[key.split("/", 2)[2]][2]
        margin = min(row[d] - (crop[d] - 0.01) for d in domains)
        cells = " | ".join(f"{row[d]:.3f}" for d in domains)
        print(
            f"| {key} | {fwd} | {cells} | {row['mean']:.3f} | "
            f"{(row['mean'] - ref['mean']) * 100:+.1f} | {margin * 100:+.1f} |"
        )
    # One fixed draw of 20 per label: the test split's binomial error bounds what a difference
    # between two rows can mean (the train draw adds to it; both rows share that draw).
    se = {d: np.sqrt(ref[d] * (1 - ref[d]) / len(suite[d]["test"].files)) for d in domains}
    mean_se = np.sqrt(sum(v * v for v in se.values())) / len(domains)
    print(
        "\nstandard error of the reference row (test split only): "
        + ", ".join(f"{d} {v * 100:.1f}" for d, v in se.items())
        + f", mean {mean_se * 100:.1f} points"
    )
    print("rough batch-1 forward, ms (loaded machine, not a benchmark): " + json.dumps(timings))


if __name__ == "__main__":
    main()
