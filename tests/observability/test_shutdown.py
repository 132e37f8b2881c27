"""Graceful shutdown hands a running job back to the queue at once, with its attempt
returned, instead of leaving it 'running' until a reaper notices the silence."""

from __future__ import annotations

import time

from sqlalchemy import select

from tests.helpers import task_with_images, token_user, wait_training
from tests.inprocess import app_client
from vize.app import create_app
from vize.config import Settings
from vize.db.engine import make_engine, make_sessionmaker
from vize.db.tables import Job


def job_row(settings: Settings, job_id: str) -> Job:
    engine = make_engine(settings)
    try:
        with make_sessionmaker(engine)() as db:
            job = db.scalar(select(Job).where(Job.id == job_id))
            assert job is not None
            return job
    finally:
        engine.dispose()


def test_a_running_training_is_handed_back_and_finished_after_restart(
    settings: Settings,
) -> None:
    slow = settings.model_copy(  # embeds every image (twice: flipped) inside the training
        update={"embedded_worker": True, "embed_on_upload": False, "flip_augment": True}
    )
    with app_client(create_app(slow)) as client:
        h = token_user(slow, "alice")["headers"]
        task_id = task_with_images(client, h, n=10)["task"]["id"]
        job_id = client.post(f"/v2/task/{task_id}/train/", headers=h).json()["job_id"]
        deadline = time.monotonic() + 60
        while client.get(f"/v2/job/{job_id}/", headers=h).json()["state"] == "queued":
            assert time.monotonic() < deadline
            time.sleep(0.01)
    job = job_row(slow, job_id)  # the app has shut down mid-training
    assert (job.state, job.worker, job.attempts) == ("queued", "", 0), job.message
    assert "Handed back" in job.message
    with app_client(create_app(slow)) as client:  # the next start runs it to the end
        assert wait_training(client, h, task_id)["state"] == "succeeded"
        job_after = client.get(f"/v2/job/{job_id}/", headers=h).json()
        assert job_after["state"] == "succeeded" and job_after["attempts"] == 1
        models = client.get(f"/v2/model/?task={task_id}", headers=h).json()["results"]
        assert [m["version"] for m in models] == [1]
