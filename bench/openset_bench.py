"""Open-set benchmark of the "unknown" answer (issue 17), through the public API.

    .venv/bin/python bench/openset_bench.py --dataset /work/shared/datasets/cifar10-dev \\
        [--splits 5] [--first-seed 0] [--k 20] [--json out.json]

Per split (seeded): a task of 5 random labels with ``--k`` random images each is trained
through the API of an in-process app (its lifespan, the real backbone); every other image of
the dataset (the seen labels' held-out ones and all of the 5 unseen labels) is classified with
``POST /v2/classify`` and ``threshold=auto``. Reported per split and as the median:

- ``unseen_unknown``: share of the unseen labels' images answered "unknown";
- ``seen_correct``: share of the seen labels' held-out images answered with their label;
- the same two for the baseline, the top softmax probability at 0.5 (read from the same
  responses' ``labels``), side by side;
- AUROC (seen vs. unseen) of the known score and of the top softmax probability. The known
  score is not part of a classify answer: it is read from the model exported with
  ``GET /v2/model/{id}/export/`` (its ``known_score`` output, onnxruntime, same pictures);
- ``export_argmax_agreement``: share of those images whose exported-model argmax is the
  label ``/v2/classify`` ranked first.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import random
import statistics
import subprocess
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from fastapi.testclient import TestClient
from PIL import Image
from similar_bench import new_user  # a sibling script: run as `python bench/openset_bench.py`

from vize.app import create_app
from vize.config import Settings


class Api:
    def __init__(self, client: TestClient, token: str) -> None:
        self.client, self.h = client, {"Authorization": f"Token {token}"}

    def raw(self, method: str, path: str, ok: tuple[int, ...] = (200, 201), **kw: Any) -> Any:
        r = self.client.request(method, "/v2" + path, headers=self.h, **kw)
        if r.status_code not in ok:
            raise RuntimeError(f"{method} {path}: {r.status_code} {r.text[:300]}")
        return r

    def call(self, method: str, path: str, ok: tuple[int, ...] = (200, 201), **kw: Any) -> Any:
        return self.raw(method, path, ok, **kw).json()

    def train(self, task_id: str) -> None:
        self.call("POST", f"/task/{task_id}/train/", ok=(202,))
        while (state := self.call("GET", f"/task/{task_id}/training/")["state"]) != "succeeded":
            if state == "failed":
                raise RuntimeError("training failed")
            time.sleep(0.5)


def auroc(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(score of a seen image > score of an unseen one), ties counted half."""
    scores = np.concatenate([pos, neg])
    order = scores.argsort()
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    for value in np.unique(scores):  # average ranks of ties
        tie = scores == value
        ranks[tie] = ranks[tie].mean()
    n = len(pos)
    return float((ranks[:n].sum() - n * (n + 1) / 2) / (n * len(neg)))


def run_split(api: Api, data: dict[str, list[Path]], seed: int, k: int) -> dict[str, Any]:
    rng = random.Random(seed)
    seen = sorted(rng.sample(sorted(data), 5))
    task = api.call("POST", "/task/", json={"name": f"openset {seed}"})
    ids, train = {}, set()
    for name in seen:
        ids[name] = api.call("POST", "/label/", json={"name": name, "task": task["id"]})["id"]
        for path in rng.sample(data[name], k):
            train.add(path)
            files = {"img_path": (path.name, path.read_bytes(), "image/png")}
            api.call("POST", "/training-image/", data={"labels": ids[name]}, files=files)
    api.train(task["id"])
    tests = [(name, p) for name in sorted(data) for p in data[name] if p not in train]
    records = []
    for start in range(0, len(tests), 10):
        chunk = tests[start : start + 10]
        recs = [{"_base64": base64.b64encode(p.read_bytes()).decode()} for _, p in chunk]
        body = {"task_id": task["id"], "threshold": "auto", "records": recs}
        records.extend(api.call("POST", "/classify", json=body)["records"])
    is_seen = np.array([name in seen for name, _ in tests])
    truth = [ids.get(name) for name, _ in tests]
    answer = [r["best_label"]["id"] for r in records]
    top = [r["labels"][0] for r in records]
    top_prob = np.array([t["prob"] for t in top])
    base_answer = [t["id"] if t["prob"] >= 0.5 else None for t in top]
    known, exported_top = exported_outputs(api, task["id"], [p for _, p in tests])
    return {
        "seed": seed,
        "seen": seen,
        "unseen_unknown": _share(
            [a is None for a, s in zip(answer, is_seen, strict=True) if not s]
        ),
        "seen_correct": _share(
            [a == t for a, t, s in zip(answer, truth, is_seen, strict=True) if s]
        ),
        "baseline_unseen_unknown": _share(
            [a is None for a, s in zip(base_answer, is_seen, strict=True) if not s]
        ),
        "baseline_seen_correct": _share(
            [a == t for a, t, s in zip(base_answer, truth, is_seen, strict=True) if s]
        ),
        # The softmax with the threshold that refuses as many unseen images as ours (chosen
        # knowing the unseen images, which favours the baseline): its seen share.
        "baseline_matched_seen_correct": _matched(top, top_prob, truth, is_seen, answer),
        "auroc_known_score": round(auroc(known[is_seen], known[~is_seen]), 4),
        "auroc_top_softmax": round(auroc(top_prob[is_seen], top_prob[~is_seen]), 4),
        "export_argmax_agreement": _share(
            [t["id"] == e for t, e in zip(top, exported_top, strict=True)]
        ),
        "images": len(tests),
    }


def _matched(
    top: list[dict[str, Any]],
    top_prob: np.ndarray,
    truth: list[str | None],
    is_seen: np.ndarray,
    answer: list[str | None],
) -> float:
    rejected = np.mean([a is None for a, s in zip(answer, is_seen, strict=True) if not s])
    cut = float(np.quantile(top_prob[~is_seen], rejected))
    return _share(
        [
            t["id"] == want and p >= cut
            for t, p, want, s in zip(top, top_prob, truth, is_seen, strict=True)
            if s
        ]
    )


def _share(flags: list[bool]) -> float:
    return round(float(np.mean(flags)), 4)


def exported_outputs(api: Api, task_id: str, paths: list[Path]) -> tuple[np.ndarray, list[str]]:
    """From the exported model: the known score of the argmax label, and that label's id."""
    model = api.call("GET", f"/model/?task={task_id}")["results"][0]
    zf = zipfile.ZipFile(io.BytesIO(api.raw("GET", f"/model/{model['id']}/export/").content))
    size = json.loads(zf.read("preprocess.json"))["input_size"]
    session = ort.InferenceSession(zf.read("model.onnx"), providers=["CPUExecutionProvider"])
    order = [lbl["id"] for lbl in json.loads(zf.read("labels.json"))]
    out, top = [], []
    for start in range(0, len(paths), 16):
        batch = np.stack(
            [
                np.asarray(
                    Image.open(p).convert("RGB").resize((size, size), Image.Resampling.BICUBIC),
                    dtype=np.uint8,
                )
                for p in paths[start : start + 16]
            ]
        )
        probs, known = session.run(["probabilities", "known_score"], {"image": batch})
        out.append(known[np.arange(len(batch)), probs.argmax(axis=1)])
        top.extend(order[j] for j in probs.argmax(axis=1))
    return np.concatenate(out), top


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dataset", type=Path, required=True)
    ap.add_argument("--splits", type=int, default=5)
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    data = {d.name: sorted(d.glob("*.png")) for d in sorted(args.dataset.iterdir()) if d.is_dir()}
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    splits = []
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), default_user="", min_images_per_label=5)
        with TestClient(create_app(settings)) as client:
            api = Api(client, new_user(settings, "openset"))
            for seed in range(args.first_seed, args.first_seed + args.splits):
                splits.append(run_split(api, data, seed, args.k))
                print(json.dumps(splits[-1]), flush=True)
    keys = [k for k in splits[-1] if k not in ("seed", "seen", "images")]
    results = {
        "median": {k: statistics.median(s[k] for s in splits if k in s) for k in keys},
        "splits": splits,
        "load_before": load,
        "load_after": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
    }
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
