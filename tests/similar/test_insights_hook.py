"""The data-health hook of the training job (vize/services/training.py): it runs once the
model is committed, and its failure is logged, never the training's."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

import pytest

from tests.helpers import images, task_with_images, upload_label
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


class LabelLeavesAtModelWrite:
    """The real blob store; writing the trained model first runs ``action`` (a user deleting
    a label through the API between the fit and the commit of the model)."""

    def __init__(self, blobs: Any, action: Callable[[], None]) -> None:
        self._blobs, self._action = blobs, action

    def put(self, key: str, data: bytes) -> None:
        if key.startswith("models/"):
            self._action()
        self._blobs.put(key, data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._blobs, name)


def _insights(client: Any, h: dict, task_id: str) -> dict[str, Any]:
    r = client.get(f"/v2/task/{task_id}/insights/?recompute=true", headers=h)
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_the_report_comes_from_the_model_each_training_committed(
    settings: Settings, alice: dict
) -> None:
    h = alice["headers"]
    idle = settings.model_copy(update={"embedded_worker": False})
    with app_client(create_app(idle)) as client:
        task_id = task_with_images(client, h, n=5)["task"]["id"]
        frog = upload_label(client, h, task_id, "frog", images("frog", 0, 5))
        ctx = client.call(_ctx_of, client)
        job_id = client.post(f"/v2/task/{task_id}/train/", headers=h).json()["job_id"]
        assert execute(ctx, job_id) == "succeeded"
        first = _insights(client, h, task_id)
        assert first["model_version"] == 1
        seen_by_v1 = {s["id"] for s in first["suspected_mislabels"]}
        assert len(seen_by_v1) == 15  # every image has its cross-validated prediction
        late = upload_label(client, h, task_id, "late", images("frog", 5, 10))

        def delete_frog() -> None:
            assert client.delete(f"/v2/label/{frog}/", headers=h).status_code == 204

        # Version 2 fits (with the late images), then fails at its commit: frog left the
        # task. Its cross-validation must not become the report's.
        job_id = client.post(f"/v2/task/{task_id}/train/", headers=h).json()["job_id"]
        execute(
            dataclasses.replace(ctx, blobs=LabelLeavesAtModelWrite(ctx.blobs, delete_frog)), job_id
        )
        assert client.get(f"/v2/task/{task_id}/training/", headers=h).json()["state"] == "failed"
        after_failure = _insights(client, h, task_id)
        assert after_failure["model_version"] == 1
        suspects = {s["id"] for s in after_failure["suspected_mislabels"]}
        assert suspects and suspects <= seen_by_v1  # none of the late images: v1 never saw them

        # Version 3 commits: the report is its own, computed by the time the job succeeded.
        job_id = client.post(f"/v2/task/{task_id}/train/", headers=h).json()["job_id"]
        assert execute(ctx, job_id) == "succeeded"
        stored = client.get(f"/v2/task/{task_id}/insights/", headers=h).json()
        assert stored["model_version"] == 3
        late_ids = {
            i["id"]
            for i in client.get(f"/v2/training-image/?label={late}", headers=h).json()["results"]
        }
        assert late_ids <= {s["id"] for s in stored["suspected_mislabels"]}
