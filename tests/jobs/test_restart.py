"""A server restart never leaves a training queued or 'running' forever."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import update

from tests.helpers import task_with_images, wait_training
from tests.inprocess import app_client
from vize.app import create_app
from vize.config import Settings
from vize.db.engine import make_engine, make_sessionmaker
from vize.db.tables import Job


def _queue_training(settings: Settings, h: dict) -> tuple[str, str]:
    """Queue a training with the worker off; returns (task id, job id)."""
    idle = settings.model_copy(update={"embedded_worker": False})
    with app_client(create_app(idle)) as client:
        t = task_with_images(client, h)
        r = client.post(f"/v2/task/{t['task']['id']}/train/", headers=h)
        assert r.status_code == 202
        return t["task"]["id"], r.json()["job_id"]


def _worker_died(settings: Settings, job_id: str, attempts: int) -> None:
    """The job as a worker that claimed it and died a minute ago leaves it."""
    engine = make_engine(settings)
    with make_sessionmaker(engine).begin() as db:
        db.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(
                state="running",
                attempts=attempts,
                worker="dead:1:1",
                heartbeat=datetime.now(UTC) - timedelta(minutes=1),
            )
        )
    engine.dispose()


def test_queued_training_runs_after_restart(settings: Settings, alice: dict) -> None:
    h = alice["headers"]
    idle = settings.model_copy(update={"embedded_worker": False})
    with app_client(create_app(idle)) as client:
        t = task_with_images(client, h)
        r = client.post(f"/v2/task/{t['task']['id']}/train/", headers=h)
        assert r.status_code == 202
        assert (
            client.get(f"/v2/task/{t['task']['id']}/training/", headers=h).json()["state"]
            == "queued"
        )
    with app_client(create_app(settings)) as client:
        st = wait_training(client, h, t["task"]["id"])
        assert st["state"] == "succeeded" and st["model_version"] == 1


def test_interrupted_training_is_retried_once_stale(settings: Settings, alice: dict) -> None:
    h = alice["headers"]
    task_id, job_id = _queue_training(settings, h)
    _worker_died(settings, job_id, attempts=1)
    with app_client(create_app(settings)) as client:
        st = wait_training(client, h, task_id)
        assert st["state"] == "succeeded"
        job = client.get(f"/v2/job/{job_id}/", headers=h).json()
        assert job["attempts"] == 2
        models = client.get(f"/v2/model/?task={task_id}", headers=h).json()
        assert models["count"] == 1  # the retry reused version 1, no duplicate


def test_out_of_attempts_fails_with_reason(settings: Settings, alice: dict) -> None:
    h = alice["headers"]
    task_id, job_id = _queue_training(settings, h)
    _worker_died(settings, job_id, attempts=3)
    with app_client(create_app(settings)) as client:
        st = wait_training(client, h, task_id)
        assert st["state"] == "failed" and "Worker stopped responding" in st["error"]
        task = client.get(f"/v2/task/{task_id}/", headers=h).json()
        assert task["production_version"] == -1 and task["last_train_state"] == "failed"


def test_duplicate_delivery_is_skipped(settings: Settings, alice: dict) -> None:
    from vize.jobs.executor import execute

    h = alice["headers"]
    idle = settings.model_copy(update={"embedded_worker": False})
    with app_client(create_app(idle)) as client:
        t = task_with_images(client, h)
        job_id = client.post(f"/v2/task/{t['task']['id']}/train/", headers=h).json()["job_id"]
        ctx = client.call(_ctx_of, client)
        assert execute(ctx, job_id) == "succeeded"
        assert execute(ctx, job_id) == "skipped"
        models = client.get(f"/v2/model/?task={t['task']['id']}", headers=h).json()
        assert models["count"] == 1 and models["results"][0]["train_state"] == "trained"


async def _ctx_of(client: object) -> object:
    return client._client._transport.app.state.vize.services.jobs  # type: ignore[attr-defined]
