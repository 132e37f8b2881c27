"""Train through the API on real images and classify with the deployed model."""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

from tests.conftest import dataset_dir
from tests.inprocess import AppClient


def _upload_label(client: AppClient, h: dict, task_id: str, name: str, files: list[Path]) -> str:
    label = client.post("/v2/label/", headers=h, json={"name": name, "task": task_id}).json()
    for f in files:
        r = client.post("/v2/training-image/", headers=h, data={"labels": label["id"]},
                        files={"img_path": (f.name, f.read_bytes(), "image/png")})
        assert r.status_code == 201, r.text
    return label["id"]


def wait_training(client: AppClient, h: dict, task_id: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = client.get(f"/v2/task/{task_id}/training/", headers=h).json()
        if st["state"] in ("succeeded", "failed"):
            return st
        time.sleep(0.1)
    raise AssertionError(f"training did not finish: {st}")


def test_train_then_classify(client: AppClient, alice: dict) -> None:
    h = alice["headers"]
    root = dataset_dir()
    task = client.post("/v2/task/", headers=h, json={"name": "planes vs cars"}).json()
    planes = sorted((root / "airplane").glob("*.png"))
    cars = sorted((root / "automobile").glob("*.png"))
    plane_id = _upload_label(client, h, task["id"], "airplane", planes[:8])
    _upload_label(client, h, task["id"], "automobile", cars[:8])
    r = client.post(f"/v2/task/{task['id']}/train/", headers=h)
    assert r.status_code == 202, r.text
    assert r.json()["model"]["version"] == 1
    st = wait_training(client, h, task["id"])
    assert st["state"] == "succeeded", st
    task = client.get(f"/v2/task/{task['id']}", headers=h).json()
    assert task["production_version"] == 1
    model = client.get(f"/v2/model/?task={task['id']}", headers=h).json()["results"][0]
    assert model["train_status"] == "trained"
    assert model["metrics"]["confusion_matrix"]["matrix"]
    b64 = base64.b64encode(planes[50].read_bytes()).decode()
    r = client.post("/v2/classify", headers=h, json={
        "task_id": task["id"], "descriptor": 1,
        "records": [{"_base64": b64, "mine": 7}, {"_base64": "@@notbase64"}]})
    assert r.status_code == 200, r.text
    recs = r.json()["records"]
    assert recs[0]["best_label"]["id"] == plane_id and recs[0]["mine"] == 7
    assert recs[0]["_status"]["code"] == 200 and len(recs[0]["_descriptor"]) == 1280
    assert recs[1]["_status"]["code"] == 400 and "_base64" not in recs[1]
    r = client.post("/v1/classify/", headers=h, data={"task": task["id"]},
                    files={"image_file": ("x.png", planes[51].read_bytes(), "image/png")})
    assert r.status_code == 200, r.text
    assert r.json()["best_label"]["label_name"] == "airplane"
    assert client.get("/v2/usage/", headers=h).json()["today"] == 2
