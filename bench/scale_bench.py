"""Scale-out figures on one machine, through the public API, with real processes:

  * images embedded per second by 1 vs 2 `vize worker` processes (4 users train at once,
    each 2 labels x 40 images, nothing embedded beforehand);
  * classify throughput (batches of 10, concurrent clients) against 1 vs 2 `vize serve`
    replicas sharing PostgreSQL and Redis.

Usage:  .venv/bin/python bench/scale_bench.py --dataset DIR
            [--pg postgresql://postgres@127.0.0.1:5432/test]
Needs PostgreSQL and Redis (scripts/test-services.sh starts them). Creates and drops a
scratch database and uses Redis database 14.
"""

from __future__ import annotations

import argparse
import base64
import io
import itertools
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import redis
from PIL import Image
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from vize.db.engine import normalize_url

DATASET_HELP = "CIFAR-10-style folder <label>/<label>_NNN.png (BENCHMARKS.md: 10 x 100 cifar10-dev)"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as fh:
        return subprocess.Popen(
            [sys.executable, "-m", "vize.cli", *args],
            env={**os.environ, **env},
            stdout=fh,
            stderr=subprocess.STDOUT,
        )


def serve(env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = spawn(["serve", "--port", str(port)], env, log)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError(log.read_text()[-2000:])


def user(env: dict[str, str], name: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "vize.cli", "users", "create", name],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip().splitlines()[-1]


def client(url: str, token: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"Authorization": f"Token {token}"}, timeout=300)


def prepare_task(c: httpx.Client, dataset: Path, offset: int) -> str:
    task = c.post("/v2/task/", json={"name": "bench"}).json()
    for name in ("ship", "horse"):
        label = c.post("/v2/label/", json={"name": name, "task": task["id"]}).json()
        for f in sorted((dataset / name).glob("*.png"))[offset : offset + 40]:
            c.post(
                "/v2/training-image/",
                data={"labels": label["id"]},
                files={"img_path": (f.name, f.read_bytes(), "image/png")},
            ).raise_for_status()
    return str(task["id"])


def embed_rate(env: dict[str, str], dataset: Path, workers: int, tmp: Path) -> float:
    log = tmp / f"embed-{workers}.log"
    procs = [spawn(["worker"], env, log) for _ in range(workers)]
    api, url = serve(env, log)
    try:
        tokens = [user(env, f"u{workers}-{i}-{uuid.uuid4().hex[:4]}") for i in range(4)]
        clients = [client(url, t) for t in tokens]
        tasks = [prepare_task(c, dataset, 40 * (i % 2)) for i, c in enumerate(clients)]
        t0 = time.perf_counter()
        for c, tid in zip(clients, tasks, strict=True):
            c.post(f"/v2/task/{tid}/train/").raise_for_status()
        pending = set(range(4))
        while pending:
            for i in list(pending):
                st = clients[i].get(f"/v2/task/{tasks[i]}/training/").json()
                if st["state"] in ("succeeded", "failed"):
                    pending.discard(i)
            time.sleep(0.05)
        elapsed = time.perf_counter() - t0
        for c in clients:
            c.close()
        return 4 * 80 / elapsed
    finally:
        for p in [*procs, api]:
            p.terminate()
            p.wait(30)


def jpeg(dataset: Path) -> str:
    img = Image.open(dataset / "ship" / "ship_099.png").convert("RGB").resize((512, 512))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90)
    return base64.b64encode(buf.getvalue()).decode()


def classify_rate(
    urls: list[str], token: str, task_id: str, jpeg_b64: str, clients: int = 4, each: int = 15
) -> float:
    body = {"task_id": task_id, "records": [{"_base64": jpeg_b64} for _ in range(10)]}
    cycle = itertools.cycle(urls)
    targets = [next(cycle) for _ in range(clients)]

    def run(url: str) -> int:
        with client(url, token) as c:
            for _ in range(each):
                c.post("/v2/classify", json=body).raise_for_status()
        return each * 10

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(run, targets))  # warm-up
        t0 = time.perf_counter()
        total = sum(pool.map(run, targets))
    return total / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--dataset", type=Path, required=True, help=DATASET_HELP)
    p.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test")
    p.add_argument("--redis", default="redis://127.0.0.1:6379/14")
    args = p.parse_args()
    name = f"vize_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(normalize_url(args.pg), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    results: dict[str, Any] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp_s:
            tmp = Path(tmp_s)
            env = {
                "VIZE_DATABASE_URL": make_url(args.pg).set(database=name).render_as_string(False),
                "VIZE_BROKER_URL": args.redis,
                "VIZE_DATA_DIR": str(tmp / "data"),
                "VIZE_DEFAULT_USER": "",
                "VIZE_SECRET_KEY": "bench",
                "VIZE_EMBED_ON_UPLOAD": "false",
                "VIZE_MIN_IMAGES_PER_LABEL": "5",
            }
            subprocess.run(
                [sys.executable, "-m", "vize.cli", "migrate"],
                env={**os.environ, **env},
                check=True,
                capture_output=True,
            )
            redis.Redis.from_url(args.redis).flushdb()
            results["embed_img_s_1_worker_2_threads"] = round(
                embed_rate({**env, "VIZE_TRAIN_THREADS": "2"}, args.dataset, 1, tmp), 1
            )
            results["embed_img_s_2_workers_1_thread"] = round(
                embed_rate({**env, "VIZE_TRAIN_THREADS": "1"}, args.dataset, 2, tmp), 1
            )
            results.update(replicas(env, args.dataset, tmp))
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    print(json.dumps(results, indent=2))


def replicas(env: dict[str, str], dataset: Path, tmp: Path) -> dict[str, float]:
    log = tmp / "replicas.log"
    worker = spawn(["worker"], env, log)
    (a, url_a), (b, url_b) = serve(env, log), serve(env, log)
    try:
        token = user(env, "classifier")
        with client(url_a, token) as c:
            tid = prepare_task(c, dataset, 0)
            c.post(f"/v2/task/{tid}/train/").raise_for_status()
            while c.get(f"/v2/task/{tid}/training/").json()["state"] not in ("succeeded", "failed"):
                time.sleep(0.1)
        one = classify_rate([url_a], token, tid, jpeg(dataset))
        two = classify_rate([url_a, url_b], token, tid, jpeg(dataset))
        return {
            "classify_img_s_1_replica": round(one, 1),
            "classify_img_s_2_replicas": round(two, 1),
            "replicas_ratio": round(two / one, 2),
        }
    finally:
        for p in (worker, a, b):
            p.terminate()
            p.wait(30)


if __name__ == "__main__":
    main()
