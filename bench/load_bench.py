"""Classification while other clients upload: does serving keep its priority?

Starts `vize serve` (defaults: embedding on upload, embedded worker) on a temp data dir, trains
one small task, then measures `/v2/classify` (``--classifiers`` clients, one 512-px JPEG per
request, back to back) in ``--rounds`` pairs of phases of ``--seconds``: alone (idle), then
while ``--uploaders``
clients upload small distinct images (CIFAR 32-px PNGs with one random pixel changed, so
none is a duplicate) at ``--upload-rate`` images/s in all. Uploaders honour 429 +
Retry-After (they wait what the server says). Reports classify p50/p99 and requests/s of
every phase, the medians' ratios, and what the uploaders got (201s, 429s).

Usage:  .venv/bin/python bench/load_bench.py --dataset DIR [--seconds 15]
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import random
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from api_bench import DATASET_HELP, JSON, Api, jpeg_512, setup_task, split, start_server
from api_bench import train_and_wait as train


def classify_clients(
    url: str, token: str, body: bytes, clients: int, seconds: float
) -> dict[str, float]:
    latencies: list[float] = []
    errors = [0]
    stop = time.monotonic() + seconds

    def client() -> None:
        with httpx.Client(base_url=url, headers={"Authorization": f"Token {token}"}) as c:
            while time.monotonic() < stop:
                t = time.perf_counter()
                r = c.post("/v2/classify", content=body, headers=JSON, timeout=60)
                latencies.append((time.perf_counter() - t) * 1000)
                errors[0] += r.status_code != 200

    threads = [threading.Thread(target=client) for _ in range(clients)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    latencies.sort()
    return {
        "requests": len(latencies),
        "errors": errors[0],
        "req_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(statistics.median(latencies), 1),
        "p99_ms": round(latencies[int(0.99 * (len(latencies) - 1))], 1),
    }


def variant(png: bytes, rng: random.Random) -> bytes:
    img = Image.open(io.BytesIO(png)).convert("RGB")
    img.putpixel(
        (rng.randrange(img.width), rng.randrange(img.height)), tuple(rng.choices(range(256), k=3))
    )
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def uploaders(
    url: str,
    token: str,
    label_id: str,
    files: list[Path],
    n: int,
    rate: float,
    stop: threading.Event,
) -> dict[str, Any]:
    counts = {"201": 0, "429": 0}
    waited = [0.0]
    lock = threading.Lock()

    def uploader(i: int) -> None:
        rng = random.Random()  # not seeded: every phase uploads new images, no duplicates
        pngs = [f.read_bytes() for f in files]
        interval = n / rate
        with httpx.Client(base_url=url, headers={"Authorization": f"Token {token}"}) as c:
            nxt = time.monotonic()
            while not stop.is_set():
                data = variant(rng.choice(pngs), rng)
                r = c.post(
                    "/v2/training-image/",
                    data={"labels": label_id},
                    files={"img_path": ("x.png", data, "image/png")},
                    timeout=60,
                )
                with lock:
                    counts[str(r.status_code)] = counts.get(str(r.status_code), 0) + 1
                if r.status_code == 429:
                    pause = float(r.headers.get("Retry-After", "1"))
                    waited[0] += pause
                    stop.wait(pause)
                    nxt = time.monotonic()
                    continue
                nxt += interval
                stop.wait(max(0.0, nxt - time.monotonic()))

    threads = [threading.Thread(target=uploader, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    return {"threads": threads, "counts": counts, "waited": waited}


def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        env = {"VIZE_MIN_IMAGES_PER_LABEL": "5", "VIZE_PRECISION": args.precision}
        proc, url, token = start_server(Path(tmp), env, args.python)
        try:
            api = Api(url, token)
            train_files, _ = split(args.dataset, 5, 0)
            two = dict(list(train_files.items())[:2])
            task_id, labels = setup_task(api, "load", two)
            train(api, task_id)
            pool = [f for fs in split(args.dataset, 50, 1)[0].values() for f in fs]
            body = json.dumps(
                {
                    "task_id": task_id,
                    "records": [{"_base64": base64.b64encode(jpeg_512(pool[0])).decode()}],
                }
            ).encode()
            classify_clients(url, token, body, args.classifiers, 2)  # warm-up
            label_id = next(iter(labels.values()))
            idle, loaded, counts, waited, upload_s = [], [], Counter[str](), 0.0, 0.0
            # Phases alternate, so the shared machine's noise weighs on both alike.
            for _ in range(args.rounds):
                idle.append(classify_clients(url, token, body, args.classifiers, args.seconds))
                stop = threading.Event()
                up = uploaders(url, token, label_id, pool, args.uploaders, args.upload_rate, stop)
                time.sleep(1)  # the uploads get going
                t0 = time.monotonic()
                loaded.append(classify_clients(url, token, body, args.classifiers, args.seconds))
                stop.set()
                for t in up["threads"]:
                    t.join()
                upload_s += time.monotonic() - t0 + 1
                counts.update(up["counts"])
                waited += up["waited"][0]

            def med(rows: list[dict[str, float]], key: str) -> float:
                return round(statistics.median(r[key] for r in rows), 1)

            return {
                "precision": args.precision,
                "idle_rounds": idle,
                "under_uploads_rounds": loaded,
                "idle_p99_ms": med(idle, "p99_ms"),
                "under_uploads_p99_ms": med(loaded, "p99_ms"),
                "idle_req_s": med(idle, "req_s"),
                "under_uploads_req_s": med(loaded, "req_s"),
                "p99_ratio": round(med(loaded, "p99_ms") / med(idle, "p99_ms"), 2),
                "throughput_ratio": round(med(loaded, "req_s") / med(idle, "req_s"), 2),
                "uploads": dict(counts),
                "uploads_accepted_per_s": round(counts["201"] / upload_s, 1),
                "uploader_seconds_waited_on_429": round(waited, 1),
            }
        finally:
            proc.terminate()
            proc.wait(30)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--dataset", type=Path, required=True, help=DATASET_HELP)
    p.add_argument("--seconds", type=float, default=8, help="per phase")
    p.add_argument("--rounds", type=int, default=3, help="idle/loaded phase pairs")
    p.add_argument("--classifiers", type=int, default=4)
    p.add_argument("--uploaders", type=int, default=4)
    p.add_argument("--upload-rate", type=float, default=100, help="images/s, all uploaders")
    p.add_argument("--precision", default="fp32", choices=("fp32", "int8"))
    p.add_argument(
        "--python", default=sys.executable, help="the server's interpreter (another checkout)"
    )
    print(json.dumps(run(p.parse_args()), indent=2))


if __name__ == "__main__":
    main()
