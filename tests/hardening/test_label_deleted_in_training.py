"""Round 2, item 11: a label deleted while its task trains never reaches a trained head
(classify would answer its id with an empty name): the training fails naming it."""

from __future__ import annotations

import dataclasses

from tests.helpers import images, task_with_images, upload_label
from tests.inprocess import app_client
from tests.jobs.test_deleted_during_training import DeletesOnFirstRead
from tests.jobs.test_restart import _ctx_of
from vize.app import create_app
from vize.config import Settings
from vize.jobs.executor import execute


def test_a_label_deleted_during_training_fails_it_by_name(settings: Settings, alice: dict) -> None:
    h = alice["headers"]
    idle = settings.model_copy(update={"embedded_worker": False})
    with app_client(create_app(idle)) as client:
        t = task_with_images(client, h, n=5)
        task_id = t["task"]["id"]
        frog = upload_label(client, h, task_id, "frog", images("frog", 0, 5))

        def delete_frog() -> None:
            assert client.delete(f"/v2/label/{frog}/", headers=h).status_code == 204

        job_id = client.post(f"/v2/task/{task_id}/train/", headers=h).json()["job_id"]
        ctx = client.call(_ctx_of, client)
        execute(dataclasses.replace(ctx, blobs=DeletesOnFirstRead(ctx.blobs, delete_frog)), job_id)
        status = client.get(f"/v2/task/{task_id}/training/", headers=h).json()
        assert status["state"] == "failed", status
        assert "'frog'" in status["error"], status
        model = client.get(f"/v2/model/?task={task_id}", headers=h).json()["results"][0]
        assert model["train_state"] == "failed"
        models_dir = settings.blob_dir / "models"
        assert not models_dir.exists() or not any(p.is_file() for p in models_dir.rglob("*"))
        # Trained again without it: two labels, each answered by name.
        assert client.post(f"/v2/task/{task_id}/train/", headers=h).status_code == 202
