"""Issue 17: calibrated thresholds and the "unknown" answer, and the exported ONNX model."""

from __future__ import annotations

import base64
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

from tests.helpers import IMAGES, image, images, upload_label, wait_training
from tests.inprocess import AppClient
from vize.ml import openset
from vize.ml.backbones import get_backbone_config
from vize.ml.preprocess import decode_image

SEEN = ("airplane", "automobile", "ship")


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def _classify(client: AppClient, h: dict, task_id: str, paths: list[Path], **extra: object):
    out = []
    for start in range(0, len(paths), 10):
        recs = [{"_base64": _b64(p)} for p in paths[start : start + 10]]
        r = client.post(
            "/v2/classify", headers=h, json={"task_id": task_id, "records": recs, **extra}
        )
        assert r.status_code == 200, r.text
        out.extend(r.json()["records"])
    return out


def _trained_task(client: AppClient, h: dict) -> tuple[str, dict[str, str]]:
    task = client.post("/v2/task/", headers=h, json={"name": "vehicles"}).json()
    ids = {name: upload_label(client, h, task["id"], name, images(name, 0, 12)) for name in SEEN}
    assert client.post(f"/v2/task/{task['id']}/train/", headers=h).status_code == 202
    assert wait_training(client, h, task["id"], timeout=300)["state"] == "succeeded"
    return task["id"], ids


def test_thresholds_unknown_and_export(client: AppClient, alice: dict, bob: dict) -> None:
    h = alice["headers"]
    task_id, ids = _trained_task(client, h)
    model = client.get(f"/v2/model/?task={task_id}", headers=h).json()["results"][0]
    thresholds = model["metrics"]["thresholds"]
    assert thresholds["method"] == openset.METHOD
    assert {t["label_id"] for t in thresholds["labels"]} == set(ids.values())
    assert all(0.5 <= t["kept"] <= 1 for t in thresholds["labels"])

    # Per request: a bad threshold is refused before any work; 1.0 answers "unknown" for
    # (nearly) everything, "off" never, the record still lists every label.
    held_out = [image(name, n) for name in SEEN for n in range(12, 22)]
    unseen = [image(name, n) for name in ("cat", "frog", "deer") for n in range(0, 10)]
    for bad in ("sometimes", 1.5, -0.1, True):
        r = client.post(
            "/v2/classify",
            headers=h,
            json={"task_id": task_id, "threshold": bad, "records": [{"_base64": "x"}]},
        )
        assert r.status_code == 400 and r.json()["code"] == "invalid_threshold", r.text
    strict = _classify(client, h, task_id, held_out[:10], threshold=1.0)
    assert all(rec["best_label"]["id"] is None for rec in strict)
    assert strict[0]["best_label"]["name"] == "unknown" and len(strict[0]["labels"]) == 3
    assert strict[0]["best_label"]["prob"] == strict[0]["labels"][0]["prob"]
    off = _classify(client, h, task_id, unseen, threshold="off")
    assert all(rec["best_label"]["id"] in ids.values() for rec in off)

    # auto: most seen images answered right, most unseen ones "unknown".
    seen_recs = _classify(client, h, task_id, held_out, threshold="auto")
    truth = [ids[name] for name in SEEN for _ in range(10)]
    right = np.mean([r["best_label"]["id"] == t for r, t in zip(seen_recs, truth, strict=True)])
    unseen_recs = _classify(client, h, task_id, unseen, threshold="auto")
    rejected = np.mean([r["best_label"]["id"] is None for r in unseen_recs])
    # 30 seen images and thresholds calibrated on 4 per label and fold: the share right is
    # ~0.72 on average but moves by ~0.08 with the random ids' fold draw (0.63 seen on one
    # run). 0.55 still fails a model that refuses everything or nothing.
    assert right >= 0.55 and rejected >= 0.5, (right, rejected)

    # The task's setting applies when the request names none; the request's wins.
    r = client.patch(f"/v2/task/{task_id}/", headers=h, json={"unknown": "auto"})
    assert r.status_code == 200 and r.json()["unknown"] == "auto", r.text
    assert client.patch(f"/v2/task/{task_id}/", headers=h, json={"unknown": "2"}).status_code == 400
    by_task = _classify(client, h, task_id, unseen)
    assert [r["best_label"]["id"] for r in by_task] == [r["best_label"]["id"] for r in unseen_recs]
    assert all(r["best_label"]["id"] for r in _classify(client, h, task_id, unseen, threshold=0))
    r = client.post(
        "/v1/classify/",
        headers=h,
        data={"task": task_id, "threshold": "1"},
        files={"image_file": ("x.png", image("ship", 30).read_bytes(), "image/png")},
    )
    assert r.status_code == 200 and r.json()["best_label"]["label_name"] == "unknown", r.text

    # Export: owner only (404 for others), both prefixes; the zip runs with onnxruntime.
    assert client.get(f"/v2/model/{model['id']}/export/", headers=bob["headers"]).status_code == 404
    r = client.get(f"/recognition/v2/model/{model['id']}/export", headers=h)
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    zf = zipfile.ZipFile(io.BytesIO(r.content))
    assert {"model.onnx", "labels.json", "preprocess.json", "thresholds.json", "README.md"} <= set(
        zf.namelist()
    )
    labels = json.loads(zf.read("labels.json"))
    pre = json.loads(zf.read("preprocess.json"))
    cut = json.loads(zf.read("thresholds.json"))
    assert {lbl["id"] for lbl in labels} == set(ids.values())
    session = ort.InferenceSession(zf.read("model.onnx"), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].name == "image"
    size = pre["input_size"]
    assert size == get_backbone_config("efficientnet_lite0").input_size

    # Agreement with /v2/classify on every committed image of the ten labels not trained on.
    trained = {image(name, n) for name in SEEN for n in range(12)}
    paths = [p for p in sorted(IMAGES.glob("*/*.png")) if p not in trained]
    assert len(paths) >= 400
    served = _classify(client, h, task_id, paths, threshold="auto")
    batch = np.stack([_pixels(p, size) for p in paths])
    probs, known = session.run(["probabilities", "known_score"], {"image": batch})
    order = [lbl["id"] for lbl in labels]
    top = [order[j] for j in probs.argmax(axis=1)]
    served_top = [r["labels"][0]["id"] for r in served]
    agree = np.mean([a == b for a, b in zip(top, served_top, strict=True)])
    assert agree >= 0.99, agree
    limits = np.array([t["threshold"] for t in cut["labels"]])
    best = probs.argmax(axis=1)
    exported_unknown = known[np.arange(len(best)), best] < limits[best]
    served_unknown = np.array([r["best_label"]["id"] is None for r in served])
    assert np.mean(exported_unknown == served_unknown) >= 0.97


def _pixels(path: Path, size: int) -> np.ndarray:
    """What the README tells users to do: RGB, the whole image resized (bicubic)."""
    img = decode_image(path.read_bytes(), size)
    img = img.resize((size, size), Image.Resampling.BICUBIC, reducing_gap=3.0)
    return np.asarray(img, dtype=np.uint8)
