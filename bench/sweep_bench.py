"""Start-up cost of the orphan sweep: ``vize serve`` lists every stored file once at start
(vize.services.orphans). Times that listing for a storage folder of N files laid out like
training images (``images/<owner>/<xx>/<sha256>``); median of 3 listings, warm disk cache.

    .venv/bin/python bench/sweep_bench.py --files 100000
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from vize.storage import LocalBlobStore


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--files", type=int, default=100_000)
    args = p.parse_args()
    root = Path(tempfile.mkdtemp(prefix="vize-sweep-"))
    try:
        for i in range(args.files):
            name = f"{i:064x}"
            folder = root / "images" / "owner" / name[-2:]
            folder.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(b"x")
        store = LocalBlobStore(root)
        times = []
        for _ in range(3):
            started = time.perf_counter()
            count = sum(1 for _ in store.scan())
            times.append(time.perf_counter() - started)
        print(json.dumps({"files": count, "scan_s_median": round(statistics.median(times), 2)}))
    finally:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
