"""Images deleted while a training embeds them are left out, never a crash of the job."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from typing import Any

from tests.helpers import task_with_images
from tests.inprocess import app_client
from tests.jobs.test_restart import _ctx_of
from vize.app import create_app
from vize.config import Settings
from vize.jobs.executor import execute


class DeletesOnFirstRead:
    """The real blob store; its first read runs ``action`` first (a user deleting images
    through the API at that very moment, after the training collected its images)."""

    def __init__(self, blobs: Any, action: Callable[[], None]) -> None:
        self._blobs, self._action = blobs, action
        self._lock = threading.Lock()  # chunks read in parallel: none before the action ends

    def get(self, key: str) -> bytes:
        with self._lock:
            action, self._action = self._action, lambda: None
            action()
        return bytes(self._blobs.get(key))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._blobs, name)


def _train_while_deleting(settings: Settings, h: dict, n_deleted: int) -> tuple[dict, dict]:
    idle = settings.model_copy(update={"embedded_worker": False})
    with app_client(create_app(idle)) as client:
        t = task_with_images(client, h, n=7)
        task_id, cat = t["task"]["id"], t["labels"]["cat"]
        cats = client.get(f"/v2/training-image/?label={cat}", headers=h).json()["results"]

        def delete() -> None:
            for image in cats[:n_deleted]:
                r = client.delete(f"/v2/training-image/{image['id']}/", headers=h)
                assert r.status_code == 204, r.text

        job_id = client.post(f"/v2/task/{task_id}/train/", headers=h).json()["job_id"]
        ctx = client.call(_ctx_of, client)
        hooked = dataclasses.replace(ctx, blobs=DeletesOnFirstRead(ctx.blobs, delete))
        execute(hooked, job_id)
        status = client.get(f"/v2/task/{task_id}/training/", headers=h).json()
        models = client.get(f"/v2/model/?task={task_id}", headers=h).json()["results"]
        return status, models[0]


def test_training_leaves_out_images_deleted_meanwhile(settings: Settings, alice: dict) -> None:
    status, model = _train_while_deleting(settings, alice["headers"], n_deleted=1)
    assert status["state"] == "succeeded", status
    assert model["train_state"] == "trained" and model["images_count"] == 13


def test_training_fails_clearly_when_deletions_leave_too_few(
    settings: Settings, alice: dict
) -> None:
    status, model = _train_while_deleting(settings, alice["headers"], n_deleted=3)
    assert status["state"] == "failed"
    assert "'cat' has 4" in status["error"], status
    assert model["train_state"] == "failed"
