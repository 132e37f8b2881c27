"""Cut the labelled image set the tests read (tests/data/images/<label>/<label>_NNN.png).

The source is a CIFAR-10 dev set laid out as ``<label>/<label>_000.png`` ... ``_099.png``
(10 labels x 100 PNGs of 32x32 pixels). The files keep their names, so a test that refers to
``cat_090`` means the same picture here as in the source. Per label it copies:

- ``000``-``039``: the training pool (the scale-out test uploads 40 per label);
- ``050``, ``051``, ``060``-``063``, ``070``, ``080``, ``090``: held-out pictures the tests
  classify after training on the pool, so they are never among the training images;
- for ``frog`` also ``040``-``069``: the scale-out test's second upload batch;
- for ``airplane`` and ``automobile`` also ``040``: the browser test's preview pictures.

That is 10 x 49 + 24 + 2 = 516 PNGs, about 1.2 MB. The tests only read the committed copies;
re-run this only to rebuild them:

    python tests/data/make_images.py /path/to/cifar10-dev
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

DEST = Path(__file__).resolve().parent / "images"
LABELS = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"
)  # fmt: skip
POOL = range(40)
HELD_OUT = (50, 51, 60, 61, 62, 63, 70, 80, 90)
EXTRA = {"frog": range(40, 70), "airplane": (40,), "automobile": (40,)}


def numbers(label: str) -> list[int]:
    return sorted({*POOL, *HELD_OUT, *EXTRA.get(label, ())})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("source", type=Path, help="the CIFAR-10 dev set folder")
    args = parser.parse_args()
    if DEST.exists():
        shutil.rmtree(DEST)
    for label in LABELS:
        (DEST / label).mkdir(parents=True)
        for n in numbers(label):
            name = f"{label}_{n:03d}.png"
            shutil.copyfile(args.source / label / name, DEST / label / name)
    print(f"{sum(1 for _ in DEST.glob('*/*.png'))} images in {DEST}")


if __name__ == "__main__":
    main()
