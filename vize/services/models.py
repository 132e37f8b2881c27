"""Trained model versions: listing, lookup by id or version, the deployed one per task."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from vize.db.states import TrainStatus
from vize.db.tables import Model, Task
from vize.errors import Conflict, InvalidInput, NotFound
from vize.services.common import Page, id_or_404, in_workspace, paginate
from vize.services.workspaces import Caller


def list_models(
    db: Session, caller: Caller, offset: int, limit: int, task: Task | None = None
) -> Page[Model]:
    stmt = (
        select(Model)
        .join(Task, Task.id == Model.task_id)
        .where(in_workspace(Task, caller.workspace_id))
        .options(selectinload(Model.task))
        .order_by(Model.created.desc(), Model.version.desc())
    )
    if task is not None:
        stmt = stmt.where(Model.task_id == task.id)
    return paginate(db, stmt, offset, limit)


def get_model(db: Session, caller: Caller, model_id: object) -> Model:
    """404 alike for a missing model and another workspace's (models belong to tasks)."""
    model = db.get(Model, id_or_404(model_id, "Model"))
    task = db.get(Task, model.task_id) if model else None
    if model is None or task is None or task.workspace_id != caller.workspace_id:
        raise NotFound("Model not found.")
    return model


def task_models(db: Session, task: Task) -> list[Model]:
    """Every version of the task, newest first."""
    stmt = select(Model).where(Model.task_id == task.id).order_by(Model.version.desc())
    return list(db.scalars(stmt))


def trained_version(db: Session, task: Task, version: int) -> Model:
    """The task's model ``version``, which must have trained: else a 400 naming it."""
    model = db.scalar(select(Model).where(Model.task_id == task.id, Model.version == version))
    if model is None or model.train_status != TrainStatus.TRAINED:
        raise InvalidInput(
            f"Version {version} of this task is not a trained model.", code="invalid_version"
        )
    return model


def deployed_models(db: Session, tasks: list[Task]) -> dict[str, Model]:
    """Task id -> its production model, for the tasks that have one."""
    wanted = {t.id: t.production_version for t in tasks if t.production_version >= 0}
    if not wanted:
        return {}
    rows = db.scalars(select(Model).where(Model.task_id.in_(list(wanted))))
    return {m.task_id: m for m in rows if wanted.get(m.task_id) == m.version}


def delete_model(db: Session, model: Model) -> str:
    """Remove a model version; returns its artifact key, to delete after the commit. The
    deployed version and one still training are refused (409): a task must not lose the
    model it serves without its owner choosing another, nor a training its row."""
    task = db.get(Task, model.task_id)
    if model.train_status in ("queued", "training"):
        raise Conflict(
            "This model version is still training; remove it once the training has ended.",
            code="model_in_training",
        )
    if task is not None and task.production_version == model.version:
        raise Conflict(
            "This is the task's production version; deploy another version first "
            "(production_version on the task) or delete the task.",
            code="model_in_production",
        )
    key = model.artifact_key
    db.delete(model)
    db.flush()
    return key
