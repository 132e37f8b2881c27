"""Two users: each sees only their own objects, and another user's ids answer 404 (never
403, which would confirm that the id exists)."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from tests.api.helpers import assert_error, create_label, create_task, upload, upload_ok
from tests.helpers import png_bytes
from tests.inprocess import AppClient


@pytest.fixture
def alice_world(client: AppClient, alice: dict) -> dict[str, Any]:
    h = alice["headers"]
    task = create_task(client, h, name="alice task", type="multi_label")
    label = create_label(client, h, name="alice label", task=task["id"])
    image = upload_ok(client, h, 1, labels=label["id"])
    return {"task": task, "label": label, "image": image}


def _by_id_requests(w: dict[str, Any], mine: dict[str, str]) -> list[tuple[str, str, dict]]:
    t, lb, im = (f"/v2/task/{w['task']['id']}", f"/v2/label/{w['label']['id']}",
                 f"/v2/training-image/{w['image']['id']}")  # fmt: skip
    return [
        ("GET", t, {}), ("PATCH", t, {"json": {"name": "x"}}), ("PUT", t, {"json": {"name": "x"}}),
        ("DELETE", t, {}), ("GET", f"{t}/labels", {}),
        ("POST", f"{t}/add-label", {"json": {"label_id": mine["label"]}}),
        ("POST", f"{t}/remove-label", {"json": {"label_id": mine["label"]}}),
        ("GET", lb, {}), ("PATCH", lb, {"json": {"name": "x"}}), ("PUT", lb, {"json": {}}),
        ("DELETE", lb, {}),
        ("POST", f"{lb}/add-task", {"json": {"task_id": mine["task"]}}),
        ("POST", f"{lb}/remove-task", {"json": {"task_id": mine["task"]}}),
        ("GET", im, {}), ("PATCH", im, {"json": {"test_image": True}}),
        ("PUT", im, {"json": {"test_image": True}}), ("DELETE", im, {}),
        # Without their signature (the signed links work for anyone holding them).
        ("GET", f"{im}/file", {}), ("GET", f"{im}/thumb", {}),
        ("GET", f"{im}/file?sig=forged", {}), ("GET", f"{im}/thumb?sig=forged", {}),
        ("POST", f"{im}/add-label", {"json": {"label_id": mine["label"]}}),
        ("POST", f"{im}/remove-label", {"json": {"label_id": mine["label"]}}),
        ("POST", f"{im}/update-label", {"json": {"label_id": mine["label"], "value": 1}}),
        ("POST", "/v2/training-image/update", {"json": {"images": [w["image"]["id"]]}}),
        ("DELETE", f"{lb}/wipe", {}),
    ]  # fmt: skip


def test_other_users_objects_are_404_by_id(
    client: AppClient, alice: dict, bob: dict, alice_world: dict
) -> None:
    hb = bob["headers"]
    mine = {"task": create_task(client, hb)["id"], "label": create_label(client, hb)["id"]}
    for method, url, kw in _by_id_requests(alice_world, mine):
        r = client.request(method, url, headers=hb, **kw)
        assert_error(r, 404, "not_found")
    # Nothing of alice's changed.
    ha = alice["headers"]
    task = client.get(f"/v2/task/{alice_world['task']['id']}", headers=ha).json()
    assert task["name"] == "alice task" and len(task["labels"]) == 2
    image = client.get(f"/v2/training-image/{alice_world['image']['id']}", headers=ha).json()
    assert image["test_image"] is False and len(image["labels"]) == 1
    assert client.get(alice_world["image"]["img_path"], headers=ha).content == png_bytes(1)


def test_other_users_ids_inside_requests_are_404(
    client: AppClient, bob: dict, alice_world: dict
) -> None:
    hb = bob["headers"]
    task, label = create_task(client, hb), create_label(client, hb)
    image = upload_ok(client, hb, 2)
    a_task, a_label = alice_world["task"]["id"], alice_world["label"]["id"]
    attempts = [
        ("POST", f"/v2/task/{task['id']}/add-label", {"json": {"label_id": a_label}}),
        ("POST", f"/v2/label/{label['id']}/add-task", {"json": {"task_id": a_task}}),
        ("POST", f"/v2/training-image/{image['id']}/add-label", {"json": {"label_id": a_label}}),
        ("POST", "/v2/label/", {"json": {"name": "x", "task": a_task}}),
        ("POST", "/v2/label/", {"json": {"name": "x", "task_id": a_task}}),
    ]
    for method, url, kw in attempts:
        assert_error(client.request(method, url, headers=hb, **kw), 404, "not_found")
    assert_error(upload(client, hb, png_bytes(3), labels=a_label), 404, "not_found")
    record = {"_base64": base64.b64encode(png_bytes(4)).decode(), "labels": [a_label]}
    batch = client.post("/v2/training-image/", headers=hb, json={"records": [record]})
    assert batch.json()["records"][0]["_status"]["code"] == 404
    assert client.get(f"/v2/task/{task['id']}", headers=hb).json()["labels"] == []
    assert client.get(f"/v2/training-image/{image['id']}", headers=hb).json()["labels"] == []
    assert client.get("/v2/label/", headers=hb).json()["count"] == 1


@pytest.mark.parametrize(
    "query",
    [
        "/v2/label/?task={task}",
        "/v2/training-image/?task={task}",
        "/v2/training-image/?label={label}",
        "/v2/training-image/?labels={label}",
    ],
)
def test_list_filters_with_other_users_ids_are_404(
    client: AppClient, bob: dict, alice_world: dict, query: str
) -> None:
    url = query.format(task=alice_world["task"]["id"], label=alice_world["label"]["id"])
    assert_error(client.get(url, headers=bob["headers"]), 404, "not_found")


def test_lists_show_only_own_objects(
    client: AppClient, alice: dict, bob: dict, alice_world: dict
) -> None:
    hb = bob["headers"]
    for path in ("task", "label", "training-image"):
        assert client.get(f"/v2/{path}/", headers=hb).json() == {
            "count": 0, "next": None, "previous": None, "results": [],
        }  # fmt: skip
    # The same bytes uploaded by bob are a new image of his, not alice's duplicate.
    r = upload(client, hb, png_bytes(1))
    assert r.status_code == 201 and r.json()["id"] != alice_world["image"]["id"]
    assert r.json()["labels"] == []
    assert client.get("/v2/training-image/", headers=alice["headers"]).json()["count"] == 1
    search = client.get("/v2/task/?search=alice", headers=hb).json()
    assert search["count"] == 0
    me = client.get("/v2/account/", headers=hb).json()
    assert me["username"] == "bob" and me["id"] == bob["id"]
