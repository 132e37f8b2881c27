"""Issue 12, item 12: deleting a task removes its model files with it (not an hour later at
the next start-up sweep), through the safe-removal protocol of ``BlobStore.delete_unless``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.inprocess import AppClient
from tests.web.helpers import create_task, post_form, sign_up
from vize.config import Settings
from vize.db.tables import Model


def model_files(settings: Settings, task_id: str) -> list[Path]:
    folder = settings.blob_dir / "models" / task_id
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def test_api_task_delete_removes_its_model_files(trained: Any, settings: Settings) -> None:
    client, alice, task_id = trained
    h = alice["headers"]
    assert len(model_files(settings, task_id)) == 1  # the trained version's head
    other = client.post("/v2/task/", headers=h, json={"name": "other"}).json()["id"]
    assert client.delete(f"/v2/task/{task_id}/", headers=h).status_code == 204
    assert model_files(settings, task_id) == []
    assert client.get(f"/v2/task/{task_id}/", headers=h).status_code == 404
    assert client.get(f"/v2/task/{other}/", headers=h).status_code == 200


def test_web_task_delete_removes_its_model_files(client: AppClient, settings: Settings) -> None:
    assert sign_up(client, "erin").status_code == 303
    keep, gone = create_task(client, "keep"), create_task(client, "gone")
    state = client.transport.app.state.vize  # type: ignore[attr-defined]
    for task_id in (keep, gone):
        key = f"models/{task_id}/head.npz"
        state.blobs.put(key, b"head of " + task_id.encode())
        with state.sessions.begin() as db:
            db.add(Model(task_id=task_id, version=1, train_status="trained", artifact_key=key))
    r = post_form(client, f"/tasks/{gone}/delete", {})
    assert r.status_code == 303, r.text
    assert model_files(settings, gone) == []
    assert len(model_files(settings, keep)) == 1  # another task's file is untouched
