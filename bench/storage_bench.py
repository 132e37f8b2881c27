"""Local disk vs S3 (moto's server on loopback) under a live `vize serve`: upload, training
and classify throughput through the public API, the same work on both backends.

Indicative only: moto keeps objects in its own Python process's memory and answers on
loopback, so this compares the code paths' request overhead (HTTP to the store, no fsync),
not a real network store; and on a busy shared machine every figure moves with the load.

Usage:  .venv/bin/python bench/storage_bench.py [--dataset DIR] [--per-label 20] [--rounds 1]
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.api_bench import DEFAULT_DATASET, Api, start_server, train_and_wait
from tests.s3server import moto_server

LABELS = ("airplane", "frog")


def run_backend(dataset: Path, per_label: int, env: dict[str, str], data: Path) -> dict[str, Any]:
    data.mkdir(parents=True)
    proc, url, token = start_server(
        data, {"VIZE_EMBED_ON_UPLOAD": "false", "VIZE_MIN_IMAGES_PER_LABEL": "5", **env}
    )
    try:
        api = Api(url, token)
        task = api.post("/v2/task/", json={"name": "storage-bench"})["id"]
        files = []
        for name in LABELS:
            label = api.post("/v2/label/", json={"name": name, "task": task})["id"]
            files += [(label, f) for f in sorted((dataset / name).glob("*.png"))[:per_label]]

        def one(item: tuple[str, Path]) -> None:
            label, f = item
            api.post("/v2/training-image/", data={"labels": label},
                     files={"img_path": (f.name, f.read_bytes(), "image/png")})  # fmt: skip

        t0 = time.perf_counter()
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(one, files))
        upload_s = time.perf_counter() - t0
        train_s = train_and_wait(api, task)  # embeds every image: reads each blob once
        tests = [f for name in LABELS for f in sorted((dataset / name).glob("*.png"))[-50:]]
        batches = [tests[i : i + 10] for i in range(0, len(tests), 10)]

        def classify(batch: list[Path]) -> None:
            records = [{"_base64": base64.b64encode(f.read_bytes()).decode()} for f in batch]
            api.post("/v2/classify", json={"task_id": task, "records": records})

        classify(batches[0])  # warm: model head loaded from the store once
        t0 = time.perf_counter()
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(classify, batches))
        classify_s = time.perf_counter() - t0
        return {
            "upload_images_per_s": round(len(files) / upload_s, 1),
            "training_s": round(train_s, 2),
            "classify_images_per_s": round(len(tests) / classify_s, 1),
            "images": len(files),
        }
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET)
    parser.add_argument("--per-label", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    results: dict[str, list[dict[str, Any]]] = {"disk": [], "s3": []}
    with tempfile.TemporaryDirectory() as tmp, moto_server(Path(tmp) / "moto.log") as s3:
        for r in range(args.rounds):  # alternate, so load drifts hit both alike
            results["disk"].append(
                run_backend(args.dataset, args.per_label, {}, Path(tmp) / f"disk{r}")
            )
            env = {**s3.env(), "VIZE_STORAGE_URL": f"s3://{s3.new_bucket()}/bench"}
            s3_dir = Path(tmp) / f"s3{r}"
            results["s3"].append(run_backend(args.dataset, args.per_label, env, s3_dir))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
