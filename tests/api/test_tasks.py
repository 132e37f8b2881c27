"""/v2/task/: create (form and JSON), retrieve, list, PATCH/PUT, DELETE, labels."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import select

from tests.api.helpers import assert_error, create_label, create_task
from tests.inprocess import AppClient
from vize.config import Settings
from vize.db.engine import make_engine, make_sessionmaker, session_scope
from vize.db.tables import Label, Model

TASK_FIELDS = {
    "id", "name", "description", "type", "production_version", "last_train_status",
    "negative_label", "webhook_url", "labels", "created",
}  # fmt: skip


def test_create_with_form_fields_like_the_docs(client: AppClient, alice: dict) -> None:
    r = client.post(
        "/v2/task/", headers=alice["headers"],
        data={"name": "My new task", "description": "Demo task"},
    )  # fmt: skip
    assert r.status_code == 201, r.text
    task = r.json()
    assert set(task) >= TASK_FIELDS
    assert task["name"] == "My new task" and task["description"] == "Demo task"
    assert task["type"] == "multi_class"
    assert task["production_version"] == -1
    assert task["labels"] == [] and task["negative_label"] is None
    assert datetime.fromisoformat(task["created"])


def test_create_with_json_and_retrieve(client: AppClient, alice: dict) -> None:
    h = alice["headers"]
    r = client.post("/v2/task/", headers=h, json={"name": " Fruit ", "description": "d"})
    assert r.status_code == 201, r.text
    got = client.get(f"/v2/task/{r.json()['id']}/", headers=h)
    assert got.status_code == 200
    assert got.json()["name"] == "Fruit"  # surrounding blanks are trimmed
    assert got.json()["id"] == r.json()["id"]


def test_created_timestamp_is_utc_on_every_database(client: AppClient, alice: dict) -> None:
    # SQLite drops the timezone of stored datetimes; the API must not show the difference.
    task = create_task(client, alice["headers"])
    got = client.get(f"/v2/task/{task['id']}", headers=alice["headers"]).json()
    assert datetime.fromisoformat(task["created"]).utcoffset() is not None
    assert datetime.fromisoformat(got["created"]).utcoffset() is not None
    assert datetime.fromisoformat(got["created"]) == datetime.fromisoformat(task["created"])


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({}, "required"),
        ({"name": ""}, "required"),
        ({"name": "   "}, "invalid_name"),
        ({"name": "x" * 256}, "invalid_field"),
        ({"name": "a\u0000b"}, "invalid_field"),
        ({"name": {"nested": 1}}, "invalid_field"),
        ({"name": "t", "description": ["a"]}, "invalid_field"),
        ({"name": "t", "type": "regression"}, "invalid_task_type"),
    ],
)
def test_create_rejects_bad_fields(client: AppClient, alice: dict, body: dict, code: str) -> None:
    r = client.post("/v2/task/", headers=alice["headers"], json=body)
    assert_error(r, 400, code)
    assert client.get("/v2/task/", headers=alice["headers"]).json()["count"] == 0


def test_name_of_255_characters_is_accepted(client: AppClient, alice: dict) -> None:
    task = create_task(client, alice["headers"], name="n" * 255)
    assert len(task["name"]) == 255


def test_list_paginates_newest_first(client: AppClient, alice: dict) -> None:
    h = alice["headers"]
    ids = [create_task(client, h, name=f"task {i}")["id"] for i in range(5)]
    first = client.get("/v2/task/?page_size=2", headers=h).json()
    assert first["count"] == 5 and len(first["results"]) == 2
    assert first["previous"] is None and "page=2" in first["next"]
    second = client.get(first["next"], headers=h).json()
    assert "page=1" in second["previous"] and "page=3" in second["next"]
    third = client.get(second["next"], headers=h).json()
    assert third["next"] is None and len(third["results"]) == 1
    seen = [t["id"] for p in (first, second, third) for t in p["results"]]
    assert seen == list(reversed(ids))
    beyond = client.get("/v2/task/?page=9&page_size=2", headers=h).json()
    assert beyond["count"] == 5 and beyond["results"] == [] and beyond["next"] is None


def test_default_page_size_and_cap(client: AppClient, alice: dict) -> None:
    h = alice["headers"]
    for i in range(26):
        create_task(client, h, name=f"t{i}")
    page = client.get("/v2/task/", headers=h).json()
    assert len(page["results"]) == 25 and page["count"] == 26
    assert len(client.get("/v2/task/?page_size=1000", headers=h).json()["results"]) == 26
    assert_error(client.get("/v2/task/?page_size=1001", headers=h), 422, "invalid")
    assert_error(client.get("/v2/task/?page=0", headers=h), 422, "invalid")


def test_search_matches_names_and_treats_wildcards_literally(
    client: AppClient, alice: dict
) -> None:
    h = alice["headers"]
    for name in ("Apples", "pineapple", "Cars", "100% cats", "a_b"):
        create_task(client, h, name=name)

    def names(q: str) -> set[str]:
        return {t["name"] for t in client.get("/v2/task/", headers=h, params=q).json()["results"]}

    assert names("search=APPLE") == {"Apples", "pineapple"}
    assert names("search=%") == {"100% cats"}
    assert names("search=_") == {"a_b"}
    assert names("search=_%00") == {"a_b"}  # a NUL is dropped, never sent to the database


def test_patch_and_put_update_fields(client: AppClient, alice: dict) -> None:
    h = alice["headers"]
    task = create_task(client, h, name="old", description="old d")
    r = client.patch(f"/v2/task/{task['id']}/", headers=h, json={"name": "new"})
    assert r.status_code == 200 and r.json()["name"] == "new"
    assert r.json()["description"] == "old d"
    r = client.put(
        f"/v2/task/{task['id']}", headers=h,
        data={"description": "form d", "webhook_url": "https://hooks.example.com/x"},
    )  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.json()["description"] == "form d"
    assert r.json()["webhook_url"] == "https://hooks.example.com/x"
    stored = client.get(f"/v2/task/{task['id']}", headers=h).json()
    assert (stored["name"], stored["description"]) == ("new", "form d")


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"name": ""}, "invalid_name"),
        ({"name": "x" * 256}, "invalid_field"),
        ({"description": {"a": 1}}, "invalid_field"),
        ({"webhook_url": "ftp://example.com"}, "invalid_webhook_url"),
        ({"webhook_url": 5}, "invalid_webhook_url"),
        ({"type": "multi_label"}, "type_fixed"),
        ({"production_version": "abc"}, "invalid_field"),
        ({"production_version": 1}, "invalid_version"),
        ({"production_version": -1}, "invalid_version"),
    ],
)
def test_patch_rejects_bad_fields(client: AppClient, alice: dict, body: dict, code: str) -> None:
    task = create_task(client, alice["headers"], name="keep")
    r = client.patch(f"/v2/task/{task['id']}", headers=alice["headers"], json=body)
    assert_error(r, 400, code)
    after = client.get(f"/v2/task/{task['id']}", headers=alice["headers"]).json()
    assert {k: after[k] for k in TASK_FIELDS - {"created"}} == {
        k: task[k] for k in TASK_FIELDS - {"created"}
    }


def _add_model(settings: Settings, task_id: str, version: int, status: str) -> None:
    engine = make_engine(settings)
    with session_scope(make_sessionmaker(engine)) as db:
        db.add(Model(task_id=task_id, version=version, train_status=status))
    engine.dispose()


def test_production_version_only_accepts_trained_versions(
    client: AppClient, alice: dict, settings: Settings
) -> None:
    h = alice["headers"]
    task = create_task(client, h)
    _add_model(settings, task["id"], 1, "trained")
    _add_model(settings, task["id"], 2, "failed")
    _add_model(settings, task["id"], 3, "training")
    for version in (2, 3, 4):
        r = client.patch(f"/v2/task/{task['id']}", headers=h, json={"production_version": version})
        assert_error(r, 400, "invalid_version")
    r = client.patch(f"/v2/task/{task['id']}", headers=h, data={"production_version": "1"})
    assert r.status_code == 200 and r.json()["production_version"] == 1


def test_delete_task(client: AppClient, alice: dict) -> None:
    h = alice["headers"]
    task = create_task(client, h)
    label = create_label(client, h, task=task["id"])
    r = client.delete(f"/v2/task/{task['id']}/", headers=h)
    assert r.status_code == 204 and r.content == b""
    assert_error(client.get(f"/v2/task/{task['id']}", headers=h), 404, "not_found")
    assert_error(client.delete(f"/v2/task/{task['id']}", headers=h), 404, "not_found")
    # Labels are the user's own: they outlive the task.
    survivor = client.get(f"/v2/label/{label['id']}", headers=h).json()
    assert survivor["tasks_count"] == 0


def test_add_and_remove_label(client: AppClient, alice: dict) -> None:
    h = alice["headers"]
    task = create_task(client, h)
    a, b = create_label(client, h, name="b-second"), create_label(client, h, name="a-first")
    r = client.post(f"/v2/task/{task['id']}/add-label/", headers=h, data={"label_id": a["id"]})
    assert r.status_code == 200, r.text
    r = client.post(f"/v2/task/{task['id']}/add-label", headers=h, json={"label_id": b["id"]})
    assert [lbl["name"] for lbl in r.json()["labels"]] == ["a-first", "b-second"]
    again = client.post(f"/v2/task/{task['id']}/add-label", headers=h, json={"label": b["id"]})
    assert len(again.json()["labels"]) == 2  # adding twice is harmless
    r = client.post(f"/v2/task/{task['id']}/remove-label/", headers=h, data={"label_id": a["id"]})
    assert r.status_code == 200 and [lbl["id"] for lbl in r.json()["labels"]] == [b["id"]]
    r = client.post(f"/v2/task/{task['id']}/remove-label/", headers=h, data={"label_id": a["id"]})
    assert r.status_code == 200  # removing an unattached label is harmless too
    assert_error(client.post(f"/v2/task/{task['id']}/add-label", headers=h, json={}), 400)
    unknown = "0a8c8186-aee8-47c8-9eaf-348103feb14d"
    r = client.post(f"/v2/task/{task['id']}/add-label", headers=h, json={"label_id": unknown})
    assert_error(r, 404, "not_found")
    labels = client.get(f"/v2/task/{task['id']}/labels/", headers=h).json()
    assert [lbl["id"] for lbl in labels] == [b["id"]]


def test_tagging_task_gets_a_negative_label_that_stays(client: AppClient, alice: dict) -> None:
    h = alice["headers"]
    task = create_task(client, h, type="multi_label")
    assert task["type"] == "multi_label"
    [negative] = task["labels"]
    assert negative["name"] == "negative" and negative["type"] == "tag"
    assert task["negative_label"] == negative["id"]
    r = client.post(
        f"/v2/task/{task['id']}/remove-label/", headers=h, data={"label_id": negative["id"]}
    )
    assert_error(r, 400, "negative_label")
    r = client.post(f"/v2/label/{negative['id']}/remove-task/", headers=h,
                    json={"task_id": task["id"]})  # fmt: skip
    assert_error(r, 400, "negative_label")
    assert_error(client.delete(f"/v2/label/{negative['id']}", headers=h), 400, "negative_label")
    after = client.get(f"/v2/task/{task['id']}", headers=h).json()
    assert [lbl["id"] for lbl in after["labels"]] == [negative["id"]]
    # A tag created with the task is a tag; on a categorization task it is a category.
    tag = create_label(client, h, name="red", task=task["id"])
    assert tag["type"] == "tag"
    assert create_label(client, h, task=create_task(client, h)["id"])["type"] == "category"


def test_deleting_a_tagging_task_removes_its_negative_label(
    client: AppClient, alice: dict, settings: Settings
) -> None:
    h = alice["headers"]
    task = create_task(client, h, type="multi_label")
    kept = create_task(client, h, type="multi_label")
    assert client.delete(f"/v2/task/{task['id']}", headers=h).status_code == 204
    engine = make_engine(settings)
    with session_scope(make_sessionmaker(engine)) as db:
        names = db.scalars(select(Label.id).where(Label.name == "negative")).all()
    engine.dispose()
    assert names == [kept["negative_label"]]


def test_images_and_tasks_counts_on_task_labels(client: AppClient, alice: dict) -> None:
    from tests.api.helpers import upload_ok

    h = alice["headers"]
    t1, t2 = create_task(client, h), create_task(client, h)
    label = create_label(client, h, task=t1["id"])
    client.post(f"/v2/task/{t2['id']}/add-label", headers=h, json={"label_id": label["id"]})
    for seed in range(3):
        upload_ok(client, h, seed, labels=label["id"])
    got: dict[str, Any] = client.get(f"/v2/task/{t1['id']}", headers=h).json()
    assert got["labels"][0]["images_count"] == 3
    assert got["labels"][0]["tasks_count"] == 2
    listed = client.get("/v2/task/", headers=h).json()["results"]
    assert {t["labels"][0]["images_count"] for t in listed} == {3}


def test_commit_happens_before_the_response_is_sent(
    client: AppClient, alice: dict, settings: Settings, app: Any
) -> None:
    """A client that reads a 201 and asks again at once must find the row (real HTTP)."""
    from vize.db.tables import Task

    seen: list[bool] = []
    engine = make_engine(settings)
    factory = make_sessionmaker(engine)
    stack = app.build_middleware_stack()

    async def probing(scope: Any, receive: Any, send: Any) -> None:
        async def probing_send(message: dict) -> None:
            # The moment the body leaves: is the new row visible to another connection?
            if message["type"] == "http.response.body" and message.get("body"):
                task_id = json.loads(message["body"]).get("id")
                with factory() as db:
                    seen.append(db.get(Task, task_id) is not None)
            await send(message)

        await stack(scope, receive, probing_send)

    app.middleware_stack = probing
    try:
        create_task(client, alice["headers"])
    finally:
        app.middleware_stack = None  # rebuilt on the next request
        engine.dispose()
    assert seen == [True]
