"""The data-health hook of the training job (vize/services/training.py): it runs after the
fit, and its failure is logged, never the training's."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import pytest

from tests.helpers import task_with_images
from tests.inprocess import app_client
from tests.jobs.test_restart import _ctx_of
from vize.app import create_app
from vize.config import Settings
from vize.jobs.executor import execute


class BrokenThumbnails:
    """The real blob store, except that reading a thumbnail fails like a broken disk: the
    training reads only the images, the data-health report the thumbnails too."""

    def __init__(self, blobs: Any) -> None:
        self._blobs = blobs

    def get(self, key: str) -> bytes:
        if key.startswith("thumbs/"):
            raise OSError(5, "Input/output error", key)
        return bytes(self._blobs.get(key))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._blobs, name)


def test_a_failing_data_health_hook_does_not_fail_the_training(
    settings: Settings, alice: dict, caplog: pytest.LogCaptureFixture
) -> None:
    h = alice["headers"]
    idle = settings.model_copy(update={"embedded_worker": False})
    with app_client(create_app(idle)) as client:
        task_id = task_with_images(client, h, n=6)["task"]["id"]
        job_id = client.post(f"/v2/task/{task_id}/train/", headers=h).json()["job_id"]
        ctx = client.call(_ctx_of, client)
        with caplog.at_level(logging.ERROR, logger="vize.insights"):
            execute(dataclasses.replace(ctx, blobs=BrokenThumbnails(ctx.blobs)), job_id)
        status = client.get(f"/v2/task/{task_id}/training/", headers=h).json()
        models = client.get(f"/v2/model/?task={task_id}", headers=h).json()["results"]
    assert status["state"] == "succeeded", status
    assert models[0]["train_state"] == "trained"
    # The hook ran (and failed) inside that training: logged with its task.
    failures = [r for r in caplog.records if r.name == "vize.insights" and r.exc_info]
    assert any(task_id in r.getMessage() for r in failures), caplog.text
