"""Tasks, labels, models, the user and workspaces as Ximilar's client uses them."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from tests.api.helpers import assert_error
from tests.compat.ximilar import P, Ximilar
from tests.helpers import png_bytes
from tests.inprocess import AppClient
from vize.config import Settings
from vize.db.engine import make_engine, make_sessionmaker, session_scope
from vize.db.tables import Model, Task

TASK_READS = {"id", "name", "type", "production_version", "workspace", "description",
              "last_train_status"}  # fmt: skip
LABEL_READS = {"id", "name", "type", "tasks_count", "negative_for_task", "workspace",
               "images_count", "description", "output_name", "recognition_tasks"}  # fmt: skip
MODEL_READS = {"id", "task", "task_name", "version", "train_status"}


@pytest.fixture
def x(client: AppClient, alice: dict) -> Ximilar:
    return Ximilar(client, alice["token"])


def create_task(x: Ximilar, name: str, task_type: str = "multi_class") -> dict[str, Any]:
    r = x.post(f"{P}/task/", {"name": name, "type": task_type, "description": None})
    assert r.status_code == 201, r.text
    return dict(r.json())


def create_label(x: Ximilar, name: str, label_type: str = "category") -> dict[str, Any]:
    body = {"name": name, "type": label_type, "description": None, "output_name": None}
    r = x.post(f"{P}/label/", body)
    assert r.status_code == 201, r.text
    return dict(r.json())


def add_model(settings: Settings, task_id: str, version: int, status: str) -> str:
    engine = make_engine(settings)
    with session_scope(make_sessionmaker(engine)) as db:
        model = Model(task_id=task_id, version=version, train_status=status)
        db.add(model)
        db.flush()
        model_id = model.id
        if status == "trained":
            db.get(Task, task_id).production_version = version  # type: ignore[union-attr]
    engine.dispose()
    return model_id


def test_task_and_label_objects_carry_what_the_client_reads(x: Ximilar) -> None:
    task = create_task(x, "pets", "multi_label")
    assert set(task) >= TASK_READS and task["last_train_status"] == ""
    cat = create_label(x, "cat", "tag")
    r = x.post(f"{P}/task/{task['id']}/add-label/", {"label_id": cat["id"]})
    assert r.status_code == 200
    # task.get_labels(): GET label/?task=<id>, all pages
    labels = x.all_pages(f"{P}/label/?task={task['id']}")
    assert {lbl["name"] for lbl in labels} == {"cat", "negative"}
    for lbl in labels:
        assert set(lbl) >= LABEL_READS
    # task.get_negative_label(): the label whose negative_for_task is set
    negative = [lbl for lbl in labels if lbl["negative_for_task"]]
    assert [(n["name"], n["negative_for_task"]) for n in negative] == [("negative", task["id"])]
    # label.get_annotate_tasks(): GET label/<id>, then get_task for each recognition_tasks id
    got = x.get(f"{P}/label/{cat['id']}").json()
    assert got["recognition_tasks"] == [{"id": task["id"], "name": "pets"}]
    assert got["negative_for_task"] is None and got["images_count"] == 0
    assert x.get(f"{P}/task/{got['recognition_tasks'][0]['id']}").json()["name"] == "pets"
    # label.add_annotate_task / detach_annotate_task
    other = create_task(x, "other")
    r = x.post(f"{P}/label/{cat['id']}/add-task/", {"task_id": other["id"]})
    assert r.status_code == 200 and len(r.json()["recognition_tasks"]) == 2
    r = x.post(f"{P}/label/{cat['id']}/remove-task/", {"task_id": other["id"]})
    assert r.status_code == 200 and len(r.json()["recognition_tasks"]) == 1
    # get_labels_by_substring / get_label_by_name: ?search=
    assert [lbl["name"] for lbl in x.all_pages(f"{P}/label/?search=ca")] == ["cat"]


def test_model_objects_and_ximilar_train_status(x: Ximilar, settings: Settings) -> None:
    task = create_task(x, "cars")
    states = ("failed", "training", "queued", "trained")
    ids = {st: add_model(settings, task["id"], v, st) for v, st in enumerate(states, start=1)}
    expect = {"failed": "FAILED", "training": "IN_TRAINING", "queued": "WAITING",
              "trained": "TRAINED"}  # fmt: skip
    for state, model_id in ids.items():
        model = x.get(f"{P}/model/{model_id}").json()  # client.get_model(id)
        assert set(model) >= MODEL_READS and model["task_name"] == "cars"
        assert model["train_status"] == expect[state] and model["train_state"] == state
    got = x.get(f"{P}/task/{task['id']}").json()
    # Nothing changed the task's own status here (the rows were added directly).
    assert got["last_train_status"] == "" and got["last_train_state"] == ""


def test_remove_model(x: Ximilar, settings: Settings) -> None:
    task = create_task(x, "boats")
    old = add_model(settings, task["id"], 1, "trained")
    running = add_model(settings, task["id"], 2, "training")
    deployed = add_model(settings, task["id"], 3, "trained")
    # client.remove_model(id): DELETE model/<id>/
    assert_error(x.delete(f"{P}/model/{deployed}/"), 409, "model_in_production")
    assert_error(x.delete(f"{P}/model/{running}/"), 409, "model_in_training")
    r = x.delete(f"{P}/model/{old}/")
    assert r.status_code == 204
    assert_error(x.get(f"{P}/model/{old}"), 404, "not_found")
    versions = [m["version"] for m in x.get(f"{P}/model/?task={task['id']}").json()["results"]]
    assert sorted(versions) == [2, 3]


def test_remove_model_of_another_user_is_404(
    client: AppClient, x: Ximilar, bob: dict, settings: Settings
) -> None:
    task = create_task(x, "mine")
    model = add_model(settings, task["id"], 1, "failed")
    assert_error(Ximilar(client, bob["token"]).delete(f"{P}/model/{model}/"), 404, "not_found")
    assert x.get(f"{P}/model/{model}").status_code == 200


def test_label_wipe_deletes_label_and_its_images(x: Ximilar) -> None:
    doomed, keep = create_label(x, "doomed"), create_label(x, "keep")
    imgs = []
    for seed in (1, 2, 3):
        r = x.upload(base64.b64encode(png_bytes(seed)).decode())
        imgs.append(r.json()["id"])
    for img in imgs[:2]:
        x.post(f"{P}/training-image/{img}/add-label/", {"label_id": doomed["id"]})
    x.post(f"{P}/training-image/{imgs[1]}/add-label/", {"label_id": keep["id"]})
    # label.wipe(): DELETE label/<id>/wipe (no trailing slash)
    r = x.delete(f"{P}/label/{doomed['id']}/wipe")
    assert r.status_code == 204
    assert_error(x.get(f"{P}/label/{doomed['id']}"), 404)
    left = [i["id"] for i in x.get(f"{P}/training-image/").json()["results"]]
    assert left == [imgs[2]]
    assert x.get(f"{P}/label/{keep['id']}").json()["images_count"] == 0


def test_wipe_refuses_a_negative_label_and_deletes_nothing(x: Ximilar) -> None:
    task = create_task(x, "tags", "multi_label")
    negative = next(lbl for lbl in task["labels"] if lbl["name"] == "negative")
    img = x.upload(base64.b64encode(png_bytes(4)).decode()).json()
    x.post(f"{P}/training-image/{img['id']}/add-label/", {"label_id": negative["id"]})
    assert_error(x.delete(f"{P}/label/{negative['id']}/wipe"), 400, "negative_label")
    assert x.get(f"{P}/training-image/{img['id']}").status_code == 200


def test_user_details_and_workspaces(client: AppClient, x: Ximilar, bob: dict) -> None:
    r = x.get("/account/v2/user/")  # client.get_user_details()
    assert r.status_code == 200
    me = r.json()
    assert me["username"] == "alice" and me["default_workspace"]
    assert me["workspaces"] == [{"id": me["default_workspace"], "name": "Default", "default": True}]
    assert x.get("/account/v2/user").status_code == 200
    assert_error(client.get("/account/v2/user/"), 401, "not_authenticated")
    task = create_task(x, "ws")
    assert task["workspace"] == me["default_workspace"]
    # A client made with workspace=<own default> works, query and body alike.
    own = Ximilar(client, x.headers["Authorization"].split()[1], me["default_workspace"])
    assert own.get(f"{P}/task/{task['id']}").status_code == 200
    assert own.post(f"{P}/label/", {"name": "in ws"}).status_code == 201
    # Any other workspace, including another user's default, is refused: never ignored.
    bobs = Ximilar(client, bob["token"]).get("/account/v2/user/").json()["default_workspace"]
    for ws in (bobs, "0b0c0d0e-0000-4000-8000-000000000000", "nonsense"):
        other = Ximilar(client, x.headers["Authorization"].split()[1], ws)
        assert_error(other.get(f"{P}/task/"), 404, "workspace_not_found")
        assert_error(other.post(f"{P}/task/", {"name": "lost"}), 404, "workspace_not_found")
        assert_error(other.delete(f"{P}/task/{task['id']}/"), 404, "workspace_not_found")
        assert_error(other.get("/account/v2/user/"), 404, "workspace_not_found")
    names = [t["name"] for t in x.all_pages(f"{P}/task/")]
    assert names == ["ws"] and x.get(f"{P}/task/{task['id']}").status_code == 200


def test_client_with_a_shared_workspace_lists_exactly_its_tasks(
    client: AppClient, x: Ximilar, bob: dict
) -> None:
    """Workspaces (issue 18): ``RecognitionClient(token, workspace=<id>)`` of a member sees
    the workspace's tasks and only those; its uploads land there; unknown ids are refused."""
    alice_token = x.headers["Authorization"].split()[1]
    create_task(x, "alice's own")
    bob_h = {"Authorization": f"Token {bob['token']}"}
    ws = client.post(f"{P}/workspace/", headers=bob_h, json={"name": "lab"}).json()["id"]
    joined = client.post(
        f"{P}/workspace/{ws}/member/", headers=bob_h, json={"username": "alice", "role": "editor"}
    )
    assert joined.status_code == 201, joined.text
    bob_in_ws = Ximilar(client, bob["token"], ws)
    for name in ("shared b", "shared a"):
        create_task(bob_in_ws, name)
    create_task(Ximilar(client, bob["token"]), "bob's own")
    alice_in_ws = Ximilar(client, alice_token, ws)
    tasks = alice_in_ws.all_pages(f"{P}/task/")
    assert sorted(t["name"] for t in tasks) == ["shared a", "shared b"]
    assert {t["workspace"] for t in tasks} == {ws}
    made = create_task(alice_in_ws, "by alice")
    assert made["workspace"] == ws and bob_in_ws.get(f"{P}/task/{made['id']}").status_code == 200
    img = alice_in_ws.upload(base64.b64encode(png_bytes(31)).decode()).json()
    assert img["workspace"] == ws
    me = alice_in_ws.get("/account/v2/user/").json()
    assert [(w["name"], w["default"]) for w in me["workspaces"]] == [
        ("Default", True),
        ("lab", False),
    ]
    assert [t["name"] for t in x.all_pages(f"{P}/task/")] == ["alice's own"]
    unknown = Ximilar(client, alice_token, "0b0c0d0e-0000-4000-8000-000000000000")
    assert_error(unknown.get(f"{P}/task/"), 404, "workspace_not_found")
    assert_error(unknown.post(f"{P}/task/", {"name": "lost"}), 404, "workspace_not_found")


def test_bad_token_before_workspace(client: AppClient) -> None:
    bad = Ximilar(client, "nope", "0b0c0d0e-0000-4000-8000-000000000000")
    assert_error(bad.get(f"{P}/task/"), 401, "invalid_token")


def test_tasks_as_the_client_lists_and_removes_them(x: Ximilar) -> None:
    for n in range(3):
        create_task(x, f"t{n}")
    tasks = x.all_pages(f"{P}/task/?page_size=2")
    assert sorted(t["name"] for t in tasks) == ["t0", "t1", "t2"]
    # task.remove(): DELETE task/<id>/ with the JSON content type and no body
    r = x.delete(f"{P}/task/{tasks[0]['id']}/")
    assert r.status_code == 204
    assert len(x.all_pages(f"{P}/task/")) == 2
    # remove_label(id): DELETE label/<id> (no slash)
    lbl = create_label(x, "gone")
    assert x.delete(f"{P}/label/{lbl['id']}").status_code == 204


def test_train_without_a_body(x: Ximilar) -> None:
    task = create_task(x, "empty")
    # task.train(): POST task/<id>/train/ with no body; too few images: a reason, not a crash.
    r = x.post(f"{P}/task/{task['id']}/train/")
    assert 400 <= r.status_code < 500 and r.json()["detail"]
