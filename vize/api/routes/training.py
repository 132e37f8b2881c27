"""Training a task, its progress, and background jobs."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from vize.api.deps import DB, CurrentCaller, RunnerDep, State
from vize.api.routing import SlashRouter
from vize.api.schemas import iso, model_out
from vize.db.tables import Job
from vize.errors import Unauthorized
from vize.services import tasks as tasks_service
from vize.services import training
from vize.services.common import get_owned

router = SlashRouter(tags=["training"])


def job_out(job: Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "kind": job.kind,
        "state": job.state,
        "progress": job.progress,
        "message": job.message,
        "attempts": job.attempts,
        "error": job.error,
        "task_id": job.task_id,
        "model_id": job.model_id,
        "created": iso(job.created),
        "started": iso(job.started),
        "finished": iso(job.finished),
    }


@router.api_route(
    "/task/{task_id}/train/",
    methods=["POST", "GET"],
    status_code=202,
    summary="Start training the task's next model version",
)
def train(
    task_id: str, request: Request, state: State, runner: RunnerDep, caller: CurrentCaller
) -> dict[str, Any]:
    # GET is accepted because the Vize docs' Python sample starts training with GET; only
    # with a token, never a cookie, so a link in another page cannot start a training.
    if request.method == "GET" and not request.headers.get("authorization"):
        raise Unauthorized("Start training with POST, or GET with an API token.")
    with state.sessions.begin() as db:
        task = tasks_service.get_task(db, caller, task_id)
        model, job = training.start_training(db, caller, task, state.settings.min_images_per_label)
        body = {
            "detail": f"Training of version {model.version} queued.",
            "task_id": task.id,
            "job_id": job.id,
            "model": model_out(model),
        }
    runner.submit(job.id)
    return body


@router.get("/task/{task_id}/training/", summary="Progress of the latest training")
def training_status(task_id: str, db: DB, caller: CurrentCaller) -> dict[str, Any]:
    return training.latest_training(db, tasks_service.get_task(db, caller, task_id))


@router.get("/job/{job_id}/", summary="A background job")
def get_job(job_id: str, db: DB, caller: CurrentCaller) -> dict[str, Any]:
    return job_out(get_owned(db, Job, job_id, caller.workspace_id, "Job"))
