"""Benchmark of similarity search, near-duplicates and mislabel detection (issue 16).

    .venv/bin/python bench/similar_bench.py --dataset /work/shared/datasets/cifar10-dev \\
        [--per-label 100] [--queries 200] [--trials 5] [--json out.json]

Accuracy, through the public API of an in-process app (its lifespan, real backbone):
- search: the task holds ``--per-label`` images per label; for ``--queries`` of them a copy
  (mirrored; JPEG q=75; resized to 90 %; all three; cropped by 6 %) is searched with
  ``POST /v2/similar``: how often the original is the top hit;
- near-duplicates: 100 copies (all three changes) uploaded into the task: how many are
  answered with ``near_duplicate_of`` = their original, how many of the insights' pairs are
  exactly those, and the share of the other (distinct) image pairs reported;
- mislabels: per trial, a new user's task of 20 images per label with 10 % of the labels
  flipped at random, trained; the top-N suspects of ``GET /v2/task/{id}/insights/`` (N =
  number flipped) against ranking by the plain cross-validated probability of the given
  label (``given_prob``), on the same draws; median, mean and range over the trials.
Search time: the search's own work (listing the task's images, the chunked scan of their
cached vectors) over a SQLite database of 10k and 100k synthetic images, in-process:
indicative only on a loaded host.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from fastapi.testclient import TestClient
from PIL import Image, ImageOps

from vize.app import create_app
from vize.config import Settings
from vize.db.engine import make_engine, make_sessionmaker, session_scope
from vize.db.migrate import upgrade
from vize.services import similarity as sim
from vize.services import users as users_service


def encode(img: Image.Image, fmt: str = "PNG", **kw: Any) -> bytes:
    out = io.BytesIO()
    img.save(out, fmt, **kw)
    return out.getvalue()


def resize90(img: Image.Image) -> Image.Image:
    return img.resize((round(img.width * 0.9), round(img.height * 0.9)), Image.Resampling.BICUBIC)


def crop6(img: Image.Image) -> Image.Image:
    dx, dy = max(1, round(img.width * 0.06)), max(1, round(img.height * 0.06))
    return img.crop((dx, dy, img.width - dx // 2, img.height - dy // 2))


CHANGES: dict[str, Callable[[Image.Image], bytes]] = {
    "mirrored": lambda im: encode(ImageOps.mirror(im)),
    "jpeg_q75": lambda im: encode(im, "JPEG", quality=75),
    "resized_90": lambda im: encode(resize90(im)),
    "all_three": lambda im: encode(ImageOps.mirror(resize90(im)), "JPEG", quality=75),
    "cropped_6pct": lambda im: encode(crop6(im)),
}


class Api:
    def __init__(self, client: TestClient, token: str) -> None:
        self.client, self.h = client, {"Authorization": f"Token {token}"}

    def call(self, method: str, path: str, ok: tuple[int, ...] = (200, 201), **kw: Any) -> Any:
        r = self.client.request(method, "/v2" + path, headers=self.h, **kw)
        if r.status_code not in ok:
            raise RuntimeError(f"{method} {path}: {r.status_code} {r.text[:300]}")
        return r.json()

    def task(self, name: str, labels: list[str]) -> tuple[str, dict[str, str]]:
        task = self.call("POST", "/task/", json={"name": name})
        ids = {
            n: self.call("POST", "/label/", json={"name": n, "task": task["id"]})["id"]
            for n in labels
        }
        return task["id"], ids

    def upload(self, data: bytes, label_id: str) -> dict[str, Any]:
        files = {"img_path": ("x.png", data, "application/octet-stream")}
        return dict(self.call("POST", "/training-image/", data={"labels": label_id}, files=files))

    def train(self, task_id: str) -> None:
        self.call("POST", f"/task/{task_id}/train/", ok=(202,))
        while True:
            st = self.call("GET", f"/task/{task_id}/training/")
            if st["state"] in ("succeeded", "failed"):
                if st["state"] != "succeeded":
                    raise RuntimeError(f"training failed: {st}")
                return
            time.sleep(0.5)


def new_user(settings: Settings, name: str) -> str:
    engine = make_engine(settings)
    upgrade(engine)
    with session_scope(make_sessionmaker(engine)) as db:
        token = users_service.create_user(db, name, email=f"{name}@example.com").api_token
    engine.dispose()
    return token


def dataset(root: Path) -> dict[str, list[Path]]:
    return {d.name: sorted(d.glob("*.png")) for d in sorted(root.iterdir()) if d.is_dir()}


def bench_search(api: Api, data: dict[str, list[Path]], per_label: int, queries: int) -> dict:
    task_id, labels = api.task("search", list(data))
    originals: list[tuple[Path, str]] = []
    for name, files in data.items():
        for f in files[:per_label]:
            originals.append((f, api.upload(f.read_bytes(), labels[name])["id"]))
    rng = random.Random(0)
    picked = rng.sample(originals, min(queries, len(originals)))
    out: dict[str, Any] = {"index_images": len(originals), "queries": len(picked)}
    for change, make in CHANGES.items():
        hits = 0
        for start in range(0, len(picked), 10):
            batch = picked[start : start + 10]
            records = [
                {"_base64": base64.b64encode(make(Image.open(f).convert("RGB"))).decode()}
                for f, _ in batch
            ]
            answer = api.call(
                "POST", "/similar", json={"task_id": task_id, "k": 1, "records": records}
            )
            for (_, image_id), rec in zip(batch, answer["records"], strict=True):
                hits += rec["similar"][0]["id"] == image_id
        out[change] = round(hits / len(picked), 4)
        print(f"search top-1, {change}: {out[change]:.1%}", flush=True)
    out["task_id"] = task_id
    out["originals"] = originals
    return out


def bench_duplicates(api: Api, search: dict, copies: int) -> dict:
    task_id, originals = search["task_id"], search["originals"]
    label_of = {}
    for f, image_id in originals:
        label_of[image_id] = f.parent.name
    labels = {lbl["name"]: lbl["id"] for lbl in api.call("GET", f"/task/{task_id}/")["labels"]}
    rng = random.Random(1)
    chosen = rng.sample(originals, copies)
    pairs, at_upload = set(), 0
    for f, image_id in chosen:
        data = CHANGES["all_three"](Image.open(f).convert("RGB"))
        up = api.upload(data, labels[f.parent.name])
        at_upload += up.get("near_duplicate_of", [])[:1] == [image_id]
        pairs.add(frozenset((image_id, up["id"])))
    report = api.call("GET", f"/task/{task_id}/insights/?recompute=true")
    reported = set()
    for group in report["near_duplicates"]:
        ids = group["images"]
        reported |= {frozenset((a, b)) for i, a in enumerate(ids) for b in ids[i + 1 :]}
    n = len(originals) + copies
    distinct_pairs = n * (n - 1) // 2 - len(pairs)
    out = {
        "copies": copies,
        "answered_at_upload": round(at_upload / copies, 4),
        "reported_in_insights": round(len(pairs & reported) / copies, 4),
        "distinct_pairs": distinct_pairs,
        "distinct_pairs_reported": len(reported - pairs),
        "distinct_pairs_reported_share": (len(reported - pairs)) / distinct_pairs,
    }
    print(f"near-duplicates: {out}", flush=True)
    return out


def bench_mislabels(
    settings: Settings, client: TestClient, data: dict, trials: int, first: int = 0
) -> dict:
    names = list(data)
    ours, plain = [], []
    for trial in range(first, first + trials):
        api = Api(client, new_user(settings, f"mislabel{trial}"))
        task_id, labels = api.task(f"mislabels {trial}", names)
        rng = random.Random(100 + trial)
        items = [(f, n) for n in names for f in rng.sample(data[n], 20)]
        flipped = set(rng.sample(range(len(items)), len(items) // 10))
        ids, wrong = [], set()
        for i, (f, name) in enumerate(items):
            given = rng.choice([x for x in names if x != name]) if i in flipped else name
            image_id = api.upload(f.read_bytes(), labels[given])["id"]
            ids.append(image_id)
            if i in flipped:
                wrong.add(image_id)
        api.train(task_id)
        suspects = api.call("GET", f"/task/{task_id}/insights/")["suspected_mislabels"]
        top = {s["id"] for s in suspects[: len(wrong)]}
        by_prob = sorted(suspects, key=lambda s: s["given_prob"])
        base = {s["id"] for s in by_prob[: len(wrong)]}
        ours.append(len(top & wrong) / len(wrong))
        plain.append(len(base & wrong) / len(wrong))
        print(f"mislabels trial {trial}: ours {ours[-1]:.1%}, plain p(given) {plain[-1]:.1%}")
    wins = sum(a > b for a, b in zip(ours, plain, strict=True))
    losses = sum(a < b for a, b in zip(ours, plain, strict=True))
    out = {
        "trials": trials,
        "flipped_per_trial": 20,
        "top_n_recall": _spread(ours),
        "plain_cv_prob_recall": _spread(plain),
        "better_on": wins,
        "worse_on": losses,
        "per_trial": [round(x, 4) for x in ours],
        "plain_per_trial": [round(x, 4) for x in plain],
    }
    print(f"mislabels: {out}", flush=True)
    return out


def _spread(values: list[float]) -> dict[str, float]:
    """Median, mean and range over the trials (one image is 5 points of one trial)."""
    return {
        "median": round(statistics.median(values), 4),
        "mean": round(statistics.mean(values), 4),
        "min": round(min(values), 4),
        "max": round(max(values), 4),
    }


def bench_search_time(sizes: tuple[int, ...] = (10_000, 100_000), reps: int = 3) -> dict:
    """The search's own work over one user's task of ``n`` images: listing the task's images
    and their missing embeddings (``admit``), and the chunked scan of their cached vectors
    (``answer``), on a SQLite database holding synthetic unit vectors of the descriptor's
    size (Lite0, 1280, plus the 432-value layout); no query embedding."""
    out = {}
    for n in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            settings = Settings(data_dir=Path(tmp), default_user="")
            engine = make_engine(settings)
            upgrade(engine)
            sessions = make_sessionmaker(engine)
            owner, task_id = _synthetic_task(sessions, n)
            rng = np.random.default_rng(1)
            query = rng.standard_normal((1, 1280 + sim.LAYOUT_SIDE**2 * 3)).astype(np.float32)
            query /= np.linalg.norm(query)
            admit_t, scan_t = [], []
            for _ in range(reps):
                start = time.perf_counter()
                with sessions() as db:
                    rows = sim.task_image_rows(db, owner, task_id)
                    missing = sim.unembedded(db, [i for i, _, _ in rows], [BACKBONE])
                admit_t.append(time.perf_counter() - start)
                start = time.perf_counter()
                found = sim.scan(sessions, NoBlobs(), [BACKBONE], rows, query, 10, [None])
                scan_t.append(time.perf_counter() - start)
            assert not missing and found.searched == n and len(found.hits[0]) == 10
            out[str(n)] = {
                "admit_p50_ms": round(1000 * statistics.median(admit_t), 1),
                "scan_p50_ms": round(1000 * statistics.median(scan_t), 1),
                "reps": reps,
            }
            print(f"search over {n} images: {out[str(n)]}", flush=True)
            engine.dispose()
    return out


BACKBONE = "efficientnet_lite0"


class NoBlobs:
    """The scan reads no file when every layout is cached (as here)."""

    def get(self, key: str) -> bytes:
        raise KeyError(key)


def _synthetic_task(sessions: Any, n: int, batch: int = 5000) -> tuple[str, str]:
    """A user's task of ``n`` images with cached synthetic vectors (rows inserted in bulk)."""
    from sqlalchemy import insert

    from vize.db.tables import Embedding, Image, ImageLabel, Label, Task, TaskLabel

    rng = np.random.default_rng(0)
    with session_scope(sessions) as db:
        owner = users_service.create_user(db, "scan", email="scan@example.com").id
        task = Task(owner_id=owner, name="scan")
        label = Label(owner_id=owner, name="all")
        db.add_all([task, label])
        db.flush()
        db.add(TaskLabel(task_id=task.id, label_id=label.id))
        task_id, label_id = task.id, label.id
    for start in range(0, n, batch):
        ids = [f"{i:08d}-0000-4000-8000-000000000000" for i in range(start, min(n, start + batch))]
        cnn = rng.standard_normal((len(ids), 1280)).astype(np.float32)
        layout = rng.standard_normal((len(ids), sim.LAYOUT_SIDE**2 * 3)).astype(np.float32)
        layout /= np.linalg.norm(layout, axis=1, keepdims=True)
        with session_scope(sessions) as db:
            db.execute(
                insert(Image),
                [
                    {
                        "id": i,
                        "owner_id": owner,
                        "sha256": i,
                        "blob_key": i,
                        "thumb_key": i,
                        "content_type": "image/png",
                        "size": 1,
                        "width": 32,
                        "height": 32,
                    }
                    for i in ids
                ],
            )
            db.execute(insert(ImageLabel), [{"image_id": i, "label_id": label_id} for i in ids])
            vectors = [(BACKBONE, cnn), (sim.LAYOUT, layout)]
            db.execute(
                insert(Embedding),
                [
                    {"image_id": i, "backbone": bb, "view": "orig", "vector": m[r].tobytes()}
                    for bb, m in vectors
                    for r, i in enumerate(ids)
                ],
            )
    return owner, task_id


def run_api_parts(args: argparse.Namespace, data: dict, results: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), default_user="", min_images_per_label=5)
        with TestClient(create_app(settings)) as client:
            if "search" not in args.skip:
                api = Api(client, new_user(settings, "searcher"))
                search = bench_search(api, data, args.per_label, args.queries)
                results["duplicates"] = bench_duplicates(api, search, args.copies)
                search.pop("originals")
                search.pop("task_id")
                results["search_top1"] = search
            if "mislabels" not in args.skip:
                results["mislabels"] = bench_mislabels(
                    settings, client, data, args.trials, args.first_trial
                )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dataset", type=Path, required=True)
    ap.add_argument("--per-label", type=int, default=100)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--copies", type=int, default=100)
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--first-trial", type=int, default=0, help="draws first..first+trials-1")
    ap.add_argument("--skip", nargs="*", default=[], help="parts to skip: search, mislabels, time")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    data = dataset(args.dataset)
    results: dict[str, Any] = {}
    if {"search", "mislabels"} - set(args.skip):
        run_api_parts(args, data, results)
    if "time" not in args.skip:
        results["search_time"] = bench_search_time()
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
