"""Resident memory of a live server with both backbones loaded and N trained tasks served.

Usage:  .venv/bin/python bench/memory_bench.py --dataset DIR [--tasks 100]
Starts `vize serve` (Lite0+Lite2 features) on a temp data dir, trains N tasks through the API
(two shared labels with 5 images each, so embeddings are computed once), classifies once with
every task so that every head is cached, and reads the server's VmRSS from /proc.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from api_bench import DATASET_HELP, Api, start_server, train_and_wait


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field}")


def run(n_tasks: int, dataset: Path) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            "VIZE_BACKBONE": "efficientnet_lite0,efficientnet_lite2",
            "VIZE_MIN_IMAGES_PER_LABEL": "5",
        }
        proc, url, token = start_server(Path(tmp), env)
        try:
            api = Api(url, token)
            out = {"rss_idle_mb": round(rss_mb(proc.pid), 1)}
            labels = []
            for name in ("cat", "dog"):
                label = api.post("/v2/label/", json={"name": name})
                labels.append(label["id"])
                for f in sorted((dataset / name).glob("*.png"))[:5]:
                    api.post(
                        "/v2/training-image/",
                        data={"labels": label["id"]},
                        files={"img_path": (f.name, f.read_bytes(), "image/png")},
                    )
            img = base64.b64encode((dataset / "cat" / "cat_099.png").read_bytes()).decode()
            rec = [{"_base64": img}]
            tasks = []
            for i in range(n_tasks + 1):
                task = api.post("/v2/task/", json={"name": f"mem-{i}"})
                for lid in labels:
                    api.post(f"/v2/task/{task['id']}/add-label/", json={"label_id": lid})
                train_and_wait(api, task["id"])
                tasks.append(task["id"])
            for tid in tasks[:n_tasks]:
                api.post("/v2/classify", json={"task_id": tid, "records": rec})
            out[f"rss_{n_tasks}_tasks_mb"] = round(rss_mb(proc.pid), 1)
            api.post("/v2/classify", json={"task_id": tasks[-1], "records": rec})
            out["rss_one_more_task_mb"] = round(rss_mb(proc.pid), 1)
            out["peak_rss_mb"] = round(rss_mb(proc.pid, "VmHWM"), 1)
            artifact = Path(tmp) / "blobs" / "models" / tasks[-1]
            out["head_artifact_kb"] = round(
                sum(p.stat().st_size for p in artifact.glob("*.npz")) / 1024, 1
            )
            return out
        finally:
            proc.terminate()
            proc.wait(30)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--tasks", type=int, default=100)
    p.add_argument("--dataset", type=Path, required=True, help=DATASET_HELP)
    args = p.parse_args()
    print(json.dumps(run(args.tasks, args.dataset), indent=2))


if __name__ == "__main__":
    main()
