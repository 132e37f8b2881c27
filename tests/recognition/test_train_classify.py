"""Train through the API on real images and classify with the deployed model."""

from __future__ import annotations

import base64

from tests.helpers import image, images, task_with_images, upload_label, wait_training
from tests.inprocess import AppClient


def test_train_then_classify(client: AppClient, alice: dict) -> None:
    h = alice["headers"]
    task = client.post("/v2/task/", headers=h, json={"name": "planes vs cars"}).json()
    plane_id = upload_label(client, h, task["id"], "airplane", images("airplane", 0, 8))
    upload_label(client, h, task["id"], "automobile", images("automobile", 0, 8))
    r = client.post(f"/v2/task/{task['id']}/train/", headers=h)
    assert r.status_code == 202, r.text
    assert r.json()["model"]["version"] == 1
    st = wait_training(client, h, task["id"])
    assert st["state"] == "succeeded", st
    task = client.get(f"/v2/task/{task['id']}", headers=h).json()
    assert task["production_version"] == 1
    model = client.get(f"/v2/model/?task={task['id']}", headers=h).json()["results"][0]
    assert model["train_state"] == "trained"
    assert model["metrics"]["confusion_matrix"]["matrix"]
    b64 = base64.b64encode(image("airplane", 50).read_bytes()).decode()
    r = client.post(
        "/v2/classify",
        headers=h,
        json={
            "task_id": task["id"],
            "descriptor": 1,
            "records": [{"_base64": b64, "mine": 7}, {"_base64": "@@notbase64"}],
        },
    )
    assert r.status_code == 200, r.text
    recs = r.json()["records"]
    assert recs[0]["best_label"]["id"] == plane_id and recs[0]["mine"] == 7
    assert recs[0]["_status"]["code"] == 200 and len(recs[0]["_descriptor"]) == 1280
    assert recs[1]["_status"]["code"] == 400 and "_base64" not in recs[1]
    r = client.post(
        "/v1/classify/",
        headers=h,
        data={"task": task["id"]},
        files={"image_file": ("x.png", image("airplane", 51).read_bytes(), "image/png")},
    )
    assert r.status_code == 200, r.text
    assert r.json()["best_label"]["label_name"] == "airplane"
    assert client.get("/v2/usage/", headers=h).json()["today"] == 2


def test_train_refuses_short_labels_naming_each(client: AppClient, alice: dict) -> None:
    h = alice["headers"]
    t = task_with_images(client, h, n=3)
    r = client.post(f"/recognition/v2/task/{t['task']['id']}/train", headers=h)
    assert r.status_code == 400
    body = r.json()
    assert body["code"] == "not_enough_images"
    assert "'cat' has 3" in body["detail"] and "'ship' has 3" in body["detail"]
    one = client.post("/v2/task/", headers=h, json={"name": "one label"}).json()
    r = client.post(f"/v2/task/{one['id']}/train/", headers=h)
    assert r.status_code == 400 and r.json()["code"] == "not_enough_labels"


def test_versions_pinning_and_isolation(client: AppClient, alice: dict, bob: dict) -> None:
    h = alice["headers"]
    t = task_with_images(client, h)
    tid = t["task"]["id"]
    for expected in (1, 2):
        r = client.post(f"/v2/task/{tid}/train/", headers=h)
        assert r.status_code == 202 and r.json()["model"]["version"] == expected
        assert wait_training(client, h, tid)["state"] == "succeeded"
    # The default policy (if_better): v2, trained on the same images, is no better than v1.
    assert client.get(f"/v2/task/{tid}/", headers=h).json()["production_version"] == 1
    r = client.patch(f"/v2/task/{tid}/", headers=h, json={"production_version": 2})
    assert r.status_code == 200 and r.json()["production_version"] == 2
    client.post(f"/v2/task/{tid}/train/", headers=h)
    assert wait_training(client, h, tid)["state"] == "succeeded"
    # Deployed by hand, and v3 is no better: production stays where the owner put it.
    assert client.get(f"/v2/task/{tid}/", headers=h).json()["production_version"] == 2
    models = client.get(f"/v2/model/?task={tid}", headers=h).json()
    assert [m["version"] for m in models["results"]] == [3, 2, 1]
    img = base64.b64encode(image("cat", 90).read_bytes()).decode()
    r = client.post(
        "/v2/classify/", headers=h, json={"task": tid, "version": 3, "records": [{"_base64": img}]}
    )
    assert r.status_code == 200 and r.json()["version"] == 3
    # Bob sees none of it.
    hb = bob["headers"]
    assert client.get(f"/v2/model/{models['results'][0]['id']}/", headers=hb).status_code == 404
    assert client.get(f"/v2/model/?task={tid}", headers=hb).status_code == 404
    assert client.get("/v2/model/", headers=hb).json()["count"] == 0
    r = client.post(
        "/v2/classify", headers=hb, json={"task_id": tid, "records": [{"_base64": img}]}
    )
    assert r.status_code == 404
    assert client.post(f"/v2/task/{tid}/train/", headers=hb).status_code == 404


def test_untrained_task_and_bad_requests(client: AppClient, alice: dict) -> None:
    h = alice["headers"]
    task = client.post("/v2/task/", headers=h, json={"name": "empty"}).json()
    img = base64.b64encode(image("cat", 0).read_bytes()).decode()
    r = client.post(
        "/v2/classify", headers=h, json={"task_id": task["id"], "records": [{"_base64": img}]}
    )
    assert r.status_code == 400 and r.json()["code"] == "not_trained"
    r = client.post(
        "/v2/classify", headers=h, json={"task_id": task["id"], "records": [{"_base64": img}] * 11}
    )
    assert r.status_code == 400 and r.json()["code"] == "too_many_records"
    r = client.post("/v2/classify", headers=h, json={"task_id": task["id"], "records": []})
    assert r.status_code == 400


def test_classify_checks_the_credential_before_the_body(client: AppClient, alice: dict) -> None:
    # Classification authenticates in its inference thread, after the body was read: a wrong
    # token must still answer 401 whatever the body, and a good one the body's own error.
    bad = {"Authorization": "Token " + "0" * 40, "Content-Type": "application/json"}
    good = {**alice["headers"], "Content-Type": "application/json"}
    for path in ("/v2/classify", "/recognition/v2/classify/", "/v1/classify/"):
        for body in (b"{not json", b"[]", b"{}"):
            r = client.post(path, headers=bad, content=body)
            assert r.status_code == 401 and r.json()["code"] == "invalid_token", (path, body)
        r = client.post(path, headers=good, content=b"{not json")
        assert r.status_code == 400 and r.json()["code"] == "invalid_json", path
        r = client.post(path, content=b"{}", headers={"Content-Type": "application/json"})
        assert r.status_code == 401 and r.json()["code"] == "not_authenticated", path


def test_tagging_task_trains_with_negative_label(client: AppClient, alice: dict) -> None:
    h = alice["headers"]
    task = client.post("/v2/task/", headers=h, json={"name": "tags", "type": "multi_label"}).json()
    negative = task["negative_label"]
    animal = client.post(
        "/v2/label/", headers=h, json={"name": "animal", "task": task["id"]}
    ).json()
    for name in ("cat", "dog", "ship", "truck"):
        for f in images(name, 0, 5):
            labels = animal["id"] if name in ("cat", "dog") else negative
            r = client.post(
                "/v2/training-image/",
                headers=h,
                data={"labels": labels},
                files={"img_path": (f.name, f.read_bytes(), "image/png")},
            )
            assert r.status_code == 201
    assert client.post(f"/v2/task/{task['id']}/train/", headers=h).status_code == 202
    assert wait_training(client, h, task["id"])["state"] == "succeeded"
    img = base64.b64encode(image("dog", 80).read_bytes()).decode()
    r = client.post(
        "/v2/classify", headers=h, json={"task_id": task["id"], "records": [{"_base64": img}]}
    )
    rec = r.json()["records"][0]
    assert {lbl["name"] for lbl in rec["labels"]} == {"animal", "negative"}
    assert all(0.0 <= lbl["prob"] <= 1.0 for lbl in rec["labels"])
