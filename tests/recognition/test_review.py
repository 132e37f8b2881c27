"""Issue 17: the review loop (store_images, the queue, accept / dismiss, retention)."""

from __future__ import annotations

import base64

from fastapi import FastAPI

from tests.helpers import image, task_with_images, wait_training
from tests.inprocess import AppClient
from vize.services.review import Review


def _b64(label: str, n: int) -> str:
    return base64.b64encode(image(label, n).read_bytes()).decode()


def test_review_loop(client: AppClient, app: FastAPI, alice: dict, bob: dict) -> None:
    h = alice["headers"]
    t = task_with_images(client, h, n=6)
    task_id, ids = t["task"]["id"], t["labels"]
    assert client.post(f"/v2/task/{task_id}/train/", headers=h).status_code == 202
    assert wait_training(client, h, task_id, timeout=300)["state"] == "succeeded"

    # Without store_images nothing is kept; with it each answered image once (twice the same
    # bytes = one row), a record that failed is not.
    recs = [{"_base64": _b64("cat", 20)}]
    body = {"task_id": task_id, "records": recs}
    assert client.post("/v2/classify", headers=h, json=body).status_code == 200
    assert client.get(f"/v2/task/{task_id}/predictions/", headers=h).json()["count"] == 0
    recs = [{"_base64": _b64(name, n)} for name, n in (("cat", 20), ("ship", 20), ("frog", 3))]
    recs += [{"_base64": _b64("cat", 20)}, {"_base64": "@@bad"}]
    r = client.post("/v2/classify", headers=h, json={**body, "records": recs, "store_images": True})
    assert r.status_code == 200, r.text
    r = client.post(
        "/v2/classify",
        headers=h,
        json={**body, "records": [{"_base64": _b64("deer", 4)}], "threshold": 1, "store_images": 1},
    )
    assert r.json()["records"][0]["best_label"]["id"] is None

    listing = client.get(f"/v2/task/{task_id}/predictions/?order=uncertain", headers=h).json()
    assert listing["count"] == 4
    preds = listing["results"]
    assert [p["uncertainty"] for p in preds] == sorted(
        (p["uncertainty"] for p in preds), reverse=True
    )
    recent = client.get(f"/recognition/v2/task/{task_id}/predictions/?order=recent", headers=h)
    assert recent.json()["results"][0]["best_label"]["name"] == "unknown"
    assert "/recognition/v2/prediction/" in recent.json()["results"][0]["img_path"]
    for bad in ("order=random", "status=maybe"):
        r = client.get(f"/v2/task/{task_id}/predictions/?{bad}", headers=h)
        assert r.status_code == 400, r.text

    # Owner only: another user gets 404 everywhere.
    pid = preds[0]["id"]
    hb = bob["headers"]
    assert client.get(f"/v2/task/{task_id}/predictions/", headers=hb).status_code == 404
    assert client.post(f"/v2/prediction/{pid}/accept/", headers=hb).status_code == 404
    assert client.delete(f"/v2/prediction/{pid}/", headers=hb).status_code == 404
    assert client.get(f"/v2/prediction/{pid}/thumb/", headers=hb).status_code == 404
    thumb = client.get(f"/v2/prediction/{pid}/thumb/", headers=h)
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert client.get(f"/v2/prediction/{pid}/file", headers=h).content.startswith(b"\x89PNG")

    # Accept: the unknown one needs a label of the task; a reviewed one cannot be again.
    unknown = next(p for p in preds if p["best_label"]["id"] is None)
    r = client.post(f"/v2/prediction/{unknown['id']}/accept/", headers=h)
    assert r.status_code == 400 and r.json()["code"] == "label_required"
    other = client.post("/v2/label/", headers=h, json={"name": "elsewhere"}).json()
    r = client.post(
        f"/v2/prediction/{unknown['id']}/accept/", headers=h, json={"label_id": other["id"]}
    )
    assert r.status_code == 400 and r.json()["code"] == "label_not_in_task"
    r = client.post(
        f"/v2/prediction/{unknown['id']}/accept/", headers=h, json={"label_id": ids["ship"]}
    )
    assert r.status_code == 200, r.text
    accepted = r.json()
    assert accepted["status"] == "accepted" and accepted["image_id"]
    img = client.get(f"/v2/training-image/{accepted['image_id']}/", headers=h).json()
    assert [lbl["id"] for lbl in img["labels"]] == [ids["ship"]]
    assert (
        client.get(f"/v2/training-image/{accepted['image_id']}/file/", headers=h).status_code == 200
    )
    again = client.post(f"/v2/prediction/{unknown['id']}/accept/", headers=h)
    assert again.status_code == 400 and again.json()["code"] == "prediction_reviewed"

    # Dismiss: gone from the pending queue with its file; classifying it again does not
    # bring it back (counted once).
    dismissed = next(p for p in preds if p["id"] != unknown["id"])
    assert client.delete(f"/v2/prediction/{dismissed['id']}/", headers=h).status_code == 204
    assert client.get(f"/v2/prediction/{dismissed['id']}/file/", headers=h).status_code == 404
    pending = client.get(f"/v2/task/{task_id}/predictions/", headers=h).json()
    assert pending["count"] == 2
    everything = client.get(f"/v2/task/{task_id}/predictions/?status=all", headers=h).json()
    assert everything["count"] == 4

    # Retention: beyond the limit the oldest rows go, with their files.
    state = app.state.vize
    small = state.settings.model_copy(update={"review_max_predictions": 1})
    Review(small, state.sessions, state.blobs).enforce_retention(task_id)
    everything = client.get(f"/v2/task/{task_id}/predictions/?status=all", headers=h).json()
    assert everything["count"] == 1
    left = everything["results"][0]
    assert left["id"] == recent.json()["results"][0]["id"]
