"""The curl and Python samples of vize-api-docs.txt, translated request for request."""

from __future__ import annotations

from tests.api.helpers import image_bytes
from tests.inprocess import AppClient

TOKEN_HEADER = "Token {}"


def test_documented_flow(client: AppClient, alice: dict) -> None:
    h = {"Authorization": TOKEN_HEADER.format(alice["token"])}
    # curl -XGET -H 'Authorization: Token __API_TOKEN__' https://api.vize.ai/v2/task/
    r = client.get("/v2/task/", headers=h)
    assert r.status_code == 200 and r.json()["results"] == []
    # curl -XPOST ... -F 'name=My new task' -F 'description=Demo task' .../v2/task/
    r = client.post(
        "/v2/task/",
        headers=h,
        files={"name": (None, "My new task"), "description": (None, "Demo task")},
    )
    assert r.status_code == 201, r.text
    task = r.json()
    assert task["production_version"] == -1
    # requests.post(url, data={"name": "New label", "task": "__TASK_ID__"}) to /v2/label/
    r = client.post("/v2/label/", headers=h, data={"name": "New label", "task": task["id"]})
    assert r.status_code == 201, r.text
    attached = r.json()
    # curl -XPOST ... -F 'name=New label' .../v2/label/  (a free label ...)
    r = client.post("/v2/label/", headers=h, files={"name": (None, "Other label")})
    assert r.status_code == 201, r.text
    free = r.json()
    # ... connected with: curl -F 'label_id=__LABEL_ID__' .../v2/task/__TASK_ID__/add-label/
    r = client.post(
        f"/v2/task/{task['id']}/add-label/", headers=h, files={"label_id": (None, free["id"])}
    )
    assert r.status_code == 200, r.text
    assert {lbl["id"] for lbl in r.json()["labels"]} == {attached["id"], free["id"]}
    # curl -F 'img_path=@__FILE__;type=image/jpeg' https://api.vize.ai/v2/training-image/
    photo = image_bytes("JPEG", size=(64, 48))
    r = client.post(
        "/v2/training-image/", headers=h, files={"img_path": ("photo.jpg", photo, "image/jpeg")}
    )
    assert r.status_code == 201, r.text
    image = r.json()
    # curl -F 'label_id=__LABEL_ID__' .../v2/training-image/__IMAGE_ID__/add-label
    r = client.post(
        f"/v2/training-image/{image['id']}/add-label",
        headers=h, files={"label_id": (None, attached["id"])},
    )  # fmt: skip
    assert r.status_code == 200 and [lbl["id"] for lbl in r.json()["labels"]] == [attached["id"]]
    # The Python sample sends that same add-label with requests.delete(url, data=...). The
    # task is a categorization: a second label of it is refused unless the image is moved.
    r = client.request(
        "DELETE", f"/v2/training-image/{image['id']}/add-label",
        headers=h, data={"label_id": free["id"]},
    )  # fmt: skip
    assert r.status_code == 409 and r.json()["code"] == "label_conflict", r.text
    r = client.request(
        "DELETE", f"/v2/training-image/{image['id']}/add-label",
        headers=h, data={"label_id": free["id"], "move": "true"},
    )  # fmt: skip
    assert r.status_code == 200, r.text
    assert [lbl["id"] for lbl in r.json()["labels"]] == [free["id"]]
    # img_path is a URL the owner fetches the image from.
    assert client.get(image["img_path"], headers=h).content == photo
    # requests.get(url) for the labels list, then the task's images.
    labels = client.get("/v2/label/", headers=h).json()
    counts = {lbl["id"]: lbl["images_count"] for lbl in labels["results"]}
    assert counts == {attached["id"]: 0, free["id"]: 1}
    r = client.get(f"/v2/training-image/?task={task['id']}", headers=h)
    assert [img["id"] for img in r.json()["results"]] == [image["id"]]
    # curl -XDELETE .../v2/task/__TASK_ID__/
    assert client.delete(f"/v2/task/{task['id']}/", headers=h).status_code == 204
    assert client.get("/v2/task/", headers=h).json()["count"] == 0


def test_ximilar_prefix_and_lowercase_header(client: AppClient, alice: dict) -> None:
    # The /v2/classify sample sends "authorization: Token ..." in lower case.
    h = {"authorization": f"Token {alice['token']}"}
    r = client.post("/recognition/v2/task", headers=h, data={"name": "x"})
    assert r.status_code == 201, r.text
    assert client.get(f"/recognition/v2/task/{r.json()['id']}/", headers=h).status_code == 200
