"""/v2/label/: the user's labels, their counts and their tasks."""

from __future__ import annotations

import pytest

from tests.api.helpers import assert_error, create_label, create_task, upload_ok
from tests.inprocess import AppClient

LABEL_FIELDS = {
    "id", "name", "description", "output_name", "type", "images_count", "tasks_count", "created",
}  # fmt: skip


def test_create_with_form_and_json(client: AppClient, alice: dict) -> None:
    h = alice["headers"]
    r = client.post("/v2/label/", headers=h, data={"name": "New label"})
    assert r.status_code == 201, r.text
    label = r.json()
    assert set(label) >= LABEL_FIELDS
    assert (label["name"], label["type"], label["images_count"], label["tasks_count"]) == (
        "New label", "category", 0, 0,
    )  # fmt: skip
    r = client.post(
        "/v2/label/", headers=h,
        json={"name": "Cat", "description": "d", "output_name": "cat", "type": "tag"},
    )  # fmt: skip
    assert r.status_code == 201, r.text
    got = client.get(f"/v2/label/{r.json()['id']}/", headers=h).json()
    assert (got["description"], got["output_name"], got["type"]) == ("d", "cat", "tag")


@pytest.mark.parametrize("key", ["task", "task_id"])
def test_create_attached_to_a_task(client: AppClient, alice: dict, key: str) -> None:
    h = alice["headers"]
    task = create_task(client, h)
    label = create_label(client, h, **{key: task["id"]})
    assert label["tasks_count"] == 1
    assert [
        lbl["id"] for lbl in client.get(f"/v2/task/{task['id']}", headers=h).json()["labels"]
    ] == [label["id"]]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({}, 400, "required"),
        ({"name": " "}, 400, "invalid_name"),
        ({"name": "x" * 256}, 400, "invalid_field"),
        ({"name": "ok", "output_name": "o" * 256}, 400, "invalid_field"),
        ({"name": "ok", "description": "\u0000"}, 400, "invalid_field"),
        ({"name": "ok", "type": "blob"}, 400, "invalid_label_type"),
        ({"name": "ok", "task": "not-a-uuid"}, 404, "not_found"),
        ({"name": "ok", "task": "0a8c8186-aee8-47c8-9eaf-348103feb14d"}, 404, "not_found"),
    ],
)
def test_create_rejects_bad_fields(
    client: AppClient, alice: dict, body: dict, status: int, code: str
) -> None:
    assert_error(client.post("/v2/label/", headers=alice["headers"], json=body), status, code)
    assert client.get("/v2/label/", headers=alice["headers"]).json()["count"] == 0


def test_list_filters_and_paginates(client: AppClient, alice: dict) -> None:
    h = alice["headers"]
    task = create_task(client, h)
    names = ["delta", "alpha", "charlie", "bravo"]
    labels = {n: create_label(client, h, name=n) for n in names}
    for n in ("alpha", "delta"):
        client.post(
            f"/v2/task/{task['id']}/add-label", headers=h, json={"label_id": labels[n]["id"]}
        )
    page = client.get("/v2/label/?page_size=3", headers=h).json()
    assert page["count"] == 4 and [lbl["name"] for lbl in page["results"]] == names_sorted()[:3]
    rest = client.get(page["next"], headers=h).json()
    assert [lbl["name"] for lbl in rest["results"]] == ["delta"] and rest["next"] is None
    in_task = client.get(f"/v2/label/?task={task['id']}", headers=h).json()
    assert [lbl["name"] for lbl in in_task["results"]] == ["alpha", "delta"]
    assert all(lbl["tasks_count"] == 1 for lbl in in_task["results"])
    found = client.get("/v2/label/?search=RAV", headers=h).json()
    assert [lbl["name"] for lbl in found["results"]] == ["bravo"]
    assert client.get("/v2/label/?search=%25", headers=h).json()["count"] == 0


def names_sorted() -> list[str]:
    return ["alpha", "bravo", "charlie", "delta"]


def test_patch_put_and_delete(client: AppClient, alice: dict) -> None:
    h = alice["headers"]
    label = create_label(client, h, name="old")
    r = client.patch(f"/v2/label/{label['id']}", headers=h, json={"name": "new", "type": "tag"})
    assert r.status_code == 200 and (r.json()["name"], r.json()["type"]) == ("new", "tag")
    r = client.put(f"/v2/label/{label['id']}/", headers=h, data={"output_name": "out"})
    assert r.status_code == 200 and r.json()["output_name"] == "out" and r.json()["name"] == "new"
    assert_error(client.patch(f"/v2/label/{label['id']}", headers=h, json={"name": ""}), 400)
    assert_error(
        client.patch(f"/v2/label/{label['id']}", headers=h, json={"type": "x"}), 400,
        "invalid_label_type",
    )  # fmt: skip
    assert client.get(f"/v2/label/{label['id']}", headers=h).json()["name"] == "new"
    assert client.delete(f"/v2/label/{label['id']}/", headers=h).status_code == 204
    assert_error(client.get(f"/v2/label/{label['id']}", headers=h), 404, "not_found")


def test_delete_detaches_from_tasks_and_images(client: AppClient, alice: dict) -> None:
    h = alice["headers"]
    task = create_task(client, h)
    label = create_label(client, h, task=task["id"])
    image = upload_ok(client, h, 1, labels=label["id"])
    assert client.delete(f"/v2/label/{label['id']}", headers=h).status_code == 204
    assert client.get(f"/v2/task/{task['id']}", headers=h).json()["labels"] == []
    assert client.get(f"/v2/training-image/{image['id']}", headers=h).json()["labels"] == []


def test_add_task_and_remove_task(client: AppClient, alice: dict) -> None:
    h = alice["headers"]
    t1, t2 = create_task(client, h), create_task(client, h)
    label = create_label(client, h)
    r = client.post(f"/v2/label/{label['id']}/add-task/", headers=h, data={"task_id": t1["id"]})
    assert r.status_code == 200 and r.json()["tasks_count"] == 1
    r = client.post(f"/v2/label/{label['id']}/add-task", headers=h, json={"task": t2["id"]})
    assert r.json()["tasks_count"] == 2
    r = client.post(f"/v2/label/{label['id']}/remove-task/", headers=h, json={"task_id": t1["id"]})
    assert r.status_code == 200 and r.json()["tasks_count"] == 1
    assert client.get(f"/v2/task/{t1['id']}", headers=h).json()["labels"] == []
    assert_error(client.post(f"/v2/label/{label['id']}/add-task", headers=h, json={}), 400,
                 "required")  # fmt: skip


def test_images_count_follows_labelling(client: AppClient, alice: dict) -> None:
    h = alice["headers"]
    label = create_label(client, h)
    images = [upload_ok(client, h, seed) for seed in range(3)]
    for img in images[:2]:
        client.post(f"/v2/training-image/{img['id']}/add-label", headers=h,
                    json={"label_id": label["id"]})  # fmt: skip
    assert client.get(f"/v2/label/{label['id']}", headers=h).json()["images_count"] == 2
    client.delete(f"/v2/training-image/{images[0]['id']}", headers=h)
    listed = client.get("/v2/label/", headers=h).json()["results"]
    assert listed[0]["images_count"] == 1
