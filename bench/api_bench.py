"""End-to-end benchmark through the public HTTP API of a live `vize serve`.

Measures, in one run on one machine:
  * accuracy: an ImageFolder with k images per label uploaded, trained, the rest classified;
  * training time: 10 labels x 20 images cold (embeddings computed) vs the time to embed the
    same images one by one; and retraining after adding 10 images (embeddings cached);
  * /v2/classify latency for one 512-px JPEG vs the best in-process decode + forward of the
    same model (both cores, batch 1), and images/s with 4 clients x batches of 10 vs the best
    in-process decode + forward of batches of 10 (both cores), alternately in the same run.

Usage:  .venv/bin/python bench/api_bench.py --dataset DIR [--k 20] [--backbone NAME]
Starts its own server on a free port with a temporary data dir (nothing else is touched).
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

DATASET_HELP = "CIFAR-10-style folder <label>/<label>_NNN.png (BENCHMARKS.md: 10 x 100 cifar10-dev)"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(
    data_dir: Path, env_extra: dict[str, str], python: str = sys.executable
) -> tuple[subprocess.Popen, str, str]:
    """`vize serve` of ``python``'s installation (another checkout's venv runs its code)."""
    port = free_port()
    env = {
        **os.environ,
        "VIZE_DATA_DIR": str(data_dir),
        "VIZE_DEFAULT_USER": "bench",
        "VIZE_PORT": str(port),
        **env_extra,
    }
    log = data_dir / "server.log"
    # Output goes to a file: an unread pipe would fill up and stall the server.
    proc = subprocess.Popen(
        [python, "-m", "vize.cli", "serve"],
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    while not any("Application startup complete" in ln for ln in lines):
        if proc.poll() is not None:
            raise RuntimeError(log.read_text())
        time.sleep(0.2)
        lines = log.read_text().splitlines()
    token = next(ln.strip() for ln in lines if re.fullmatch(r"[0-9a-f]{40}\s*", ln))
    return proc, f"http://127.0.0.1:{port}", token


class Api:
    def __init__(self, url: str, token: str) -> None:
        self.c = httpx.Client(
            base_url=url, headers={"Authorization": f"Token {token}"}, timeout=120
        )

    def post(self, path: str, **kw: Any) -> Any:
        r = self.c.post(path, **kw)
        r.raise_for_status()
        return r.json()

    def get(self, path: str) -> Any:
        r = self.c.get(path)
        r.raise_for_status()
        return r.json()


def split(dataset: Path, k: int, seed: int) -> tuple[dict[str, list[Path]], dict[str, list[Path]]]:
    rng = random.Random(seed)
    train, test = {}, {}
    for d in sorted(p for p in dataset.iterdir() if p.is_dir()):
        files = sorted(d.glob("*.png"))
        rng.shuffle(files)
        train[d.name], test[d.name] = files[:k], files[k:]
    return train, test


def upload(api: Api, task_id: str, label_id: str, files: list[Path]) -> None:
    def one(f: Path) -> None:
        api.post(
            "/v2/training-image/",
            data={"labels": label_id},
            files={"img_path": (f.name, f.read_bytes(), "image/png")},
        )

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(one, files))


def train_and_wait(api: Api, task_id: str) -> float:
    t0 = time.perf_counter()
    api.post(f"/v2/task/{task_id}/train/")
    while True:
        st = api.get(f"/v2/task/{task_id}/training/")
        if st["state"] in ("succeeded", "failed"):
            break
        time.sleep(0.02)
    if st["state"] != "succeeded":
        raise RuntimeError(st)
    return time.perf_counter() - t0


def setup_task(api: Api, name: str, train: dict[str, list[Path]]) -> tuple[str, dict[str, str]]:
    task = api.post("/v2/task/", json={"name": name})
    labels = {}
    for lname, files in train.items():
        label = api.post("/v2/label/", json={"name": lname, "task": task["id"]})
        labels[lname] = label["id"]
        upload(api, task["id"], label["id"], files)
    return task["id"], labels


def classify_accuracy(api: Api, task_id: str, test: dict[str, list[Path]]) -> float:
    items = [(name, f) for name, files in test.items() for f in files]
    correct = 0
    for i in range(0, len(items), 10):
        chunk = items[i : i + 10]
        recs = [{"_base64": base64.b64encode(f.read_bytes()).decode()} for _, f in chunk]
        out = api.post("/v2/classify", json={"task_id": task_id, "records": recs})
        correct += sum(
            r["best_label"]["name"] == n for r, (n, _) in zip(out["records"], chunk, strict=True)
        )
    return correct / len(items)


def jpeg_512(path: Path) -> bytes:
    img = Image.open(path).convert("RGB").resize((512, 512), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _embedders(data_dir: Path) -> list[Any]:
    """In-process references on both cores: one session with 2 intra-op threads, and one
    single-threaded session (run from 2 Python threads for throughput)."""
    from vize.ml.embedder import Embedder

    return [Embedder(data_dir / "onnx", intra_op_threads=t, max_batch=16) for t in (2, 1)]


def inprocess_single(feature: str, data_dir: Path, jpeg: bytes) -> Callable[[], float]:
    """A timer of decode + preprocess + forward of one JPEG in this process (vize.ml
    directly, batch 1), through whichever of a 2-thread and a 1-thread session is faster
    here: each call returns one run's milliseconds."""
    from vize.ml.backbones import get_backbone_config
    from vize.ml.preprocess import preprocess

    cfg = get_backbone_config(feature)

    def timer(emb: Any) -> Callable[[], float]:
        def once() -> float:
            t = time.perf_counter()
            emb.embed(feature, preprocess(jpeg, cfg)[None])
            return (time.perf_counter() - t) * 1000

        return once

    timers = [timer(e) for e in _embedders(data_dir)]
    for once in timers:
        for _ in range(5):
            once()
    medians = [statistics.median(once() for _ in range(30)) for once in timers]
    return timers[medians.index(min(medians))]


def inprocess_limit(feature: str, data_dir: Path, jpeg: bytes, batches: int = 15) -> float:
    """Images/s of decode + preprocess + forward of batches of 10 in this process, the best
    of: one 2-thread session, and two Python threads sharing a 1-thread session."""
    from vize.ml.backbones import get_backbone_config
    from vize.ml.preprocess import preprocess

    cfg = get_backbone_config(feature)
    two, one = _embedders(data_dir)

    def run(emb: Any, n: int) -> None:
        for _ in range(n):
            emb.embed(feature, np.stack([preprocess(jpeg, cfg) for _ in range(10)]))

    run(two, 2)
    run(one, 2)
    t = time.perf_counter()
    run(two, batches)
    serial = batches * 10 / (time.perf_counter() - t)
    t = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda _: run(one, batches), range(2)))
    parallel = 2 * batches * 10 / (time.perf_counter() - t)
    return max(serial, parallel)


def embed_one_by_one_s(backbone: str, data_dir: Path, files: list[Path]) -> float:
    """Seconds to embed ``files`` one by one in this process (feature name ``backbone``)."""
    from vize.ml.backbones import get_backbone_config
    from vize.ml.embedder import Embedder
    from vize.ml.preprocess import preprocess

    emb = Embedder(data_dir / "onnx", intra_op_threads=2)
    cfg = get_backbone_config(backbone)
    emb.embed(backbone, preprocess(files[0].read_bytes(), cfg))
    t0 = time.perf_counter()
    for f in files:
        emb.embed(backbone, preprocess(f.read_bytes(), cfg))
    return time.perf_counter() - t0


JSON = {"Content-Type": "application/json"}


def latency(
    api: Api, task_id: str, jpeg: bytes, forward: Callable[[], float], n: int = 150
) -> tuple[float, float]:
    """Medians (ms) of the in-process reference and of ``/v2/classify`` for one image,
    sampled alternately: the shared machine's noise then weighs on both figures alike."""
    # The body is serialised once: the figure is the server's, not the client's JSON encoder.
    body = json.dumps(
        {"task_id": task_id, "records": [{"_base64": base64.b64encode(jpeg).decode()}]}
    ).encode()
    for _ in range(5):
        api.post("/v2/classify", content=body, headers=JSON)
    raw, served = [], []
    for _ in range(n):
        raw.append(forward())
        t = time.perf_counter()
        api.post("/v2/classify", content=body, headers=JSON)
        served.append((time.perf_counter() - t) * 1000)
    return statistics.median(raw), statistics.median(served)


def throughput(
    url: str, token: str, task_id: str, jpeg: bytes, clients: int = 4, requests_each: int = 15
) -> float:
    body = json.dumps(
        {
            "task_id": task_id,
            "records": [{"_base64": base64.b64encode(jpeg).decode()} for _ in range(10)],
        }
    ).encode()

    def worker(_: int) -> int:
        api = Api(url, token)
        for _ in range(requests_each):
            api.post("/v2/classify", content=body, headers=JSON)
        api.c.close()
        return requests_each * 10

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(worker, range(clients)))  # warm-up round
        t0 = time.perf_counter()
        total = sum(pool.map(worker, range(clients)))
    return total / (time.perf_counter() - t0)


def run(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {"backbone": args.backbone, "k": args.k, "seeds": args.seeds}
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        env = {
            "VIZE_BACKBONE": args.backbone,
            "VIZE_MIN_IMAGES_PER_LABEL": "5",
            "VIZE_EMBED_ON_UPLOAD": "false" if args.no_embed_on_upload else "true",
            "VIZE_PRECISION": args.precision,
        }
        results["embed_on_upload"] = not args.no_embed_on_upload
        proc, url, token = start_server(data_dir, env)
        try:
            api = Api(url, token)
            # Training time first, while nothing of this user is embedded yet.
            train, _ = split(args.dataset, 20, 99)
            cold_files = [f for files in train.values() for f in files]
            results.update(training_times(api, args, train, cold_files, data_dir))
            task_id = results.pop("_task")
            results["cv_accuracy_timing_task"] = api.get(f"/v2/model/?task={task_id}")["results"][
                0
            ]["cv_accuracy"]
            if not args.serving_only:
                results.update(accuracy(api, args))
            results.update(serving(api, url, token, task_id, args, data_dir, cold_files[0]))
        finally:
            proc.terminate()
            proc.wait(30)
    return results


def serving(
    api: Api,
    url: str,
    token: str,
    task_id: str,
    args: argparse.Namespace,
    data_dir: Path,
    image: Path,
) -> dict[str, Any]:
    """Latency and throughput of the served model next to the best in-process figures of
    the same model on this machine, measured alternately in this run."""
    from vize.ml.backbones import feature_name

    feature = feature_name(args.backbone.split(",")[0], args.precision)
    jpeg = jpeg_512(image)
    ref_ms, lat = latency(api, task_id, jpeg, inprocess_single(feature, data_dir, jpeg))
    out: dict[str, Any] = {
        "feature": feature,
        "inprocess_decode_forward_ms_p50": round(ref_ms, 2),
        "classify_one_jpeg512_ms_p50": round(lat, 2),
        "latency_ratio": round(lat / ref_ms, 2),
    }
    served, limits = [], []
    for _ in range(args.rounds):  # alternating: the machine's noise weighs on both alike
        limits.append(inprocess_limit(feature, data_dir, jpeg))
        served.append(throughput(url, token, task_id, jpeg))
    out["inprocess_limit_img_s_rounds"] = [round(r, 1) for r in limits]
    out["throughput_img_s_rounds"] = [round(r, 1) for r in served]
    out["inprocess_limit_img_s"] = round(statistics.median(limits), 1)
    out["throughput_img_s_batches_of_10"] = round(statistics.median(served), 1)
    out["throughput_ratio"] = round(
        statistics.median(s / lim for s, lim in zip(served, limits, strict=True)), 2
    )
    return out


def accuracy(api: Api, args: argparse.Namespace) -> dict[str, Any]:
    accs, out = [], {}
    for seed in range(args.seeds):
        train, test = split(args.dataset, args.k, seed)
        t_upload = time.perf_counter()
        task_id, _ = setup_task(api, f"acc-{seed}", train)
        upload_s = time.perf_counter() - t_upload
        train_s = train_and_wait(api, task_id)
        accs.append(classify_accuracy(api, task_id, test))
        if seed == 0:
            out["upload_s_seed0"] = round(upload_s, 2)
            out["train_s_seed0"] = round(train_s, 2)
    out["accuracy_per_seed"] = [round(a, 4) for a in accs]
    out["accuracy_mean"] = round(statistics.mean(accs), 4)
    return out


def training_times(
    api: Api,
    args: argparse.Namespace,
    train: dict[str, list[Path]],
    files: list[Path],
    data_dir: Path,
) -> dict[str, Any]:
    """Cold training, embedding one-by-one baseline, and retraining after 10 new images."""
    from vize.ml.backbones import feature_name

    # Hold back the last image of each label so that the retraining adds 10 new ones.
    first = {name: fs[:-1] for name, fs in train.items()}
    task_id, labels = setup_task(api, "timing", {n: fs for n, fs in first.items()})
    cold = train_and_wait(api, task_id)
    for name, fs in train.items():
        upload(api, task_id, labels[name], fs[-1:])
    warm = train_and_wait(api, task_id)
    one_by_one = sum(
        embed_one_by_one_s(feature_name(bb, args.precision), data_dir, files)
        for bb in args.backbone.split(",")
    )
    return {
        "_task": task_id,
        "train_cold_s": round(cold, 2),
        "embed_one_by_one_s": round(one_by_one, 2),
        "train_cold_ratio": round(cold / one_by_one, 2),
        "retrain_after_10_new_s": round(warm, 2),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--dataset", type=Path, required=True, help=DATASET_HELP)
    p.add_argument("--k", type=int, default=20)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--backbone", default="efficientnet_lite0")
    p.add_argument("--precision", default="fp32", choices=("fp32", "int8"))
    p.add_argument("--serving-only", action="store_true", help="skip the accuracy runs")
    p.add_argument("--rounds", type=int, default=3, help="throughput rounds (median reported)")
    p.add_argument(
        "--no-embed-on-upload",
        action="store_true",
        help="cold training really embeds every image (no background embedding)",
    )
    args = p.parse_args()
    print(json.dumps(run(args), indent=2))


if __name__ == "__main__":
    main()
