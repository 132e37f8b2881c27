from tests.inprocess import AppClient


def test_task_label_image_flow(client: AppClient, alice: dict) -> None:
    from tests.helpers import png_bytes

    h = alice["headers"]
    r = client.post("/v2/task/", headers=h, data={"name": "My new task", "description": "Demo"})
    assert r.status_code == 201, r.text
    task = r.json()
    assert task["production_version"] == -1
    r = client.post("/v2/label/", headers=h, data={"name": "cat", "task": task["id"]})
    assert r.status_code == 201, r.text
    label = r.json()
    r = client.post(
        "/recognition/v2/training-image",
        headers=h,
        files={"img_path": ("a.png", png_bytes(1), "image/png")},
    )
    assert r.status_code == 201, r.text
    img = r.json()
    r = client.post(
        f"/v2/training-image/{img['id']}/add-label", headers=h, data={"label_id": label["id"]}
    )
    assert r.status_code == 200, r.text
    r = client.get(f"/v2/training-image/?task={task['id']}", headers=h)
    assert r.json()["count"] == 1
    r = client.get(img["img_path"], headers=h)
    assert r.status_code == 200 and r.content == png_bytes(1)
    r = client.post(
        "/v2/training-image/", headers=h, files={"img_path": ("b.png", png_bytes(1), "image/png")}
    )
    assert r.status_code == 200 and "already exists" in r.json()["detail"]
    r = client.get(f"/v2/task/{task['id']}", headers=h)
    assert r.json()["labels"][0]["images_count"] == 1
