"""Issue 15, bugs 1 and 2: one label per image in a categorization task (409
``label_conflict`` unless ``move``), and label names unique per task whatever the case."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from tests.api.helpers import create_label, create_task, upload, upload_ok
from tests.helpers import png_bytes
from tests.inprocess import AppClient
from vize.db.tables import ImageLabel


def _labels_of(client: AppClient, h: dict, image_id: str) -> list[str]:
    r = client.get(f"/v2/training-image/{image_id}/", headers=h)
    return sorted(lbl["name"] for lbl in r.json()["labels"])


def _task_with(client: AppClient, h: dict, *names: str, kind: str = "multi_class") -> Any:
    task = create_task(client, h, type=kind)
    return task, {n: create_label(client, h, name=n, task=task["id"])["id"] for n in names}


def _conflict(r: Any, *names: str) -> dict[str, Any]:
    assert r.status_code == 409, r.text
    body = r.json()
    assert body["code"] == "label_conflict", body
    for name in names:
        assert f"'{name}'" in body["detail"], body["detail"]
    return dict(body)


def test_same_file_again_with_another_label_is_refused_then_moved(
    client: AppClient, alice: dict
) -> None:
    h = alice["headers"]
    _, ids = _task_with(client, h, "airplane", "cat")
    first = upload_ok(client, h, 1, labels=ids["airplane"])
    body = _conflict(upload(client, h, png_bytes(1), labels=ids["cat"]), "airplane", "cat")
    assert body["image_id"] == first["id"]
    assert [c["name"] for c in body["conflicting_labels"]] == ["airplane"]
    assert _labels_of(client, h, first["id"]) == ["airplane"]  # nothing changed

    r = upload(client, h, png_bytes(1), labels=ids["cat"], move="true")
    assert r.status_code == 200 and r.json()["code"] == "already_exists", r.text
    assert (r.json()["labels_added"], r.json()["labels_removed"]) == (
        [ids["cat"]],
        [ids["airplane"]],
    )
    assert _labels_of(client, h, first["id"]) == ["cat"]


def test_same_file_again_with_the_same_label_says_nothing_changed(
    client: AppClient, alice: dict
) -> None:
    h = alice["headers"]
    _, ids = _task_with(client, h, "airplane", "cat")
    upload_ok(client, h, 2, labels=ids["airplane"])
    r = upload(client, h, png_bytes(2), labels=ids["airplane"])
    assert r.status_code == 200, r.text
    assert (r.json()["labels_added"], r.json()["labels_removed"]) == ([], [])


def test_add_label_refuses_a_second_category_unless_moved(client: AppClient, alice: dict) -> None:
    h = alice["headers"]
    _, ids = _task_with(client, h, "airplane", "cat")
    image = upload_ok(client, h, 3, labels=ids["airplane"])
    url = f"/v2/training-image/{image['id']}/add-label/"
    _conflict(client.post(url, headers=h, json={"label_id": ids["cat"]}), "airplane", "cat")
    assert _labels_of(client, h, image["id"]) == ["airplane"]
    r = client.post(url, headers=h, json={"label_id": ids["cat"], "move": True})
    assert r.status_code == 200, r.text
    assert [lbl["name"] for lbl in r.json()["labels"]] == ["cat"]


def test_new_image_with_two_categories_of_one_task_is_refused(
    client: AppClient, alice: dict
) -> None:
    h = alice["headers"]
    _, ids = _task_with(client, h, "airplane", "cat")
    both = f"{ids['airplane']},{ids['cat']}"
    _conflict(upload(client, h, png_bytes(4), labels=both), "airplane", "cat")
    assert client.get("/v2/training-image/", headers=h).json()["count"] == 0


def test_bulk_update_refuses_a_second_category(client: AppClient, alice: dict) -> None:
    h = alice["headers"]
    _, ids = _task_with(client, h, "airplane", "cat")
    image = upload_ok(client, h, 5, labels=ids["airplane"])
    body = {"images": [image["id"]], "labels-add": [ids["cat"]]}
    _conflict(client.post("/v2/training-image/update/", headers=h, json=body), "cat")
    r = client.post("/v2/training-image/update/", headers=h, json={**body, "move": True})
    assert r.status_code == 200, r.text
    assert _labels_of(client, h, image["id"]) == ["cat"]


def test_tagging_tasks_and_unrelated_tasks_allow_many_labels(
    client: AppClient, alice: dict
) -> None:
    h = alice["headers"]
    _, tags = _task_with(client, h, "red", "round", kind="multi_label")
    image = upload_ok(client, h, 6, labels=f"{tags['red']},{tags['round']}")
    assert _labels_of(client, h, image["id"]) == ["red", "round"]
    # Two categorization tasks: one label in each is fine.
    _, a = _task_with(client, h, "airplane")
    _, b = _task_with(client, h, "indoor")
    other = upload_ok(client, h, 7, labels=f"{a['airplane']},{b['indoor']}")
    assert _labels_of(client, h, other["id"]) == ["airplane", "indoor"]


def test_attaching_a_label_that_would_double_images_is_refused(
    client: AppClient, alice: dict
) -> None:
    h = alice["headers"]
    task, ids = _task_with(client, h, "airplane")
    loose = create_label(client, h, name="cat")  # not in the task yet
    image = upload_ok(client, h, 8, labels=f"{ids['airplane']},{loose['id']}")
    r = client.post(f"/v2/label/{loose['id']}/add-task/", headers=h, json={"task_id": task["id"]})
    body = _conflict(r, "airplane", "cat")
    assert image["file_name"] in body["detail"]
    assert body["images"][0]["id"] == image["id"] and body["images_count"] == 1
    labels = client.get(f"/v2/task/{task['id']}/", headers=h).json()["labels"]
    assert [lbl["name"] for lbl in labels] == ["airplane"]


def test_training_refuses_images_with_two_labels_by_name(
    client: AppClient, alice: dict, settings: Any, app: FastAPI
) -> None:
    """Data from before the rule: a label attached while the check did not exist."""
    h = alice["headers"]
    task, ids = _task_with(client, h, "airplane", "cat")
    for seed in range(10, 10 + settings.min_images_per_label):
        upload_ok(client, h, seed, labels=ids["airplane"])
        upload_ok(client, h, seed + 100, labels=ids["cat"])
    doubled = upload_ok(client, h, 999, labels=ids["airplane"])
    with app.state.vize.sessions.begin() as db:  # as older versions let it happen
        db.add(ImageLabel(image_id=doubled["id"], label_id=ids["cat"]))
    r = client.post(f"/v2/task/{task['id']}/train/", headers=h)
    body = _conflict(r, "airplane", "cat")
    assert "img999.png" in body["detail"]
    assert body["images"][0]["labels"] == ["airplane", "cat"]


def test_label_names_are_unique_per_task_whatever_the_case(client: AppClient, alice: dict) -> None:
    h = alice["headers"]
    task, ids = _task_with(client, h, "cat")
    for name in ("cat", "Cat", " CAT "):
        r = client.post("/v2/label/", headers=h, json={"name": name, "task": task["id"]})
        assert r.status_code == 409, r.text
        assert r.json()["code"] == "label_exists"
        assert "already has a label named 'cat'" in r.json()["detail"]
    # Renaming another label of the task to the same name, or attaching a namesake.
    dog = create_label(client, h, name="dog", task=task["id"])
    r = client.patch(f"/v2/label/{dog['id']}/", headers=h, json={"name": "CAT"})
    assert r.status_code == 409 and r.json()["code"] == "label_exists", r.text
    namesake = create_label(client, h, name="Cat")  # fine outside the task
    r = client.post(
        f"/v2/label/{namesake['id']}/add-task/", headers=h, json={"task_id": task["id"]}
    )
    assert r.status_code == 409 and r.json()["code"] == "label_exists", r.text
    # A label may change its own case.
    r = client.patch(f"/v2/label/{ids['cat']}/", headers=h, json={"name": "Cat"})
    assert r.status_code == 200, r.text
    names = [
        lbl["name"] for lbl in client.get(f"/v2/task/{task['id']}/", headers=h).json()["labels"]
    ]
    assert sorted(names) == ["Cat", "dog"]
