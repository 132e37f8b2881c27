"""/v2/model/ — trained versions of a task and their evaluation."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import Request
from sqlalchemy import select

from vize.api.deps import DB, CurrentUser, PagingDep
from vize.api.routing import SlashRouter
from vize.api.schemas import model_out, page_out
from vize.db.tables import Model, Task
from vize.errors import NotFound
from vize.services import tasks as tasks_service
from vize.services.common import paginate

router = SlashRouter(prefix="/model", tags=["models"])


@router.get("/", summary="List model versions (?task=)")
def list_models(
    request: Request, db: DB, user: CurrentUser, paging: PagingDep, task: str | None = None
) -> dict[str, Any]:
    stmt = (
        select(Model)
        .join(Task, Task.id == Model.task_id)
        .where(Task.owner_id == user.id)
        .order_by(Model.created.desc(), Model.version.desc())
    )
    if task:
        stmt = stmt.where(Model.task_id == tasks_service.get_task(db, user, task).id)
    page = paginate(db, stmt, paging.offset, paging.page_size)
    return page_out(
        request, page, paging.page, paging.page_size, [model_out(m) for m in page.items]
    )


@router.get("/{model_id}/", summary="A model version with its metrics")
def get_model(model_id: str, db: DB, user: CurrentUser) -> dict[str, Any]:
    try:
        key = str(uuid.UUID(model_id))
    except ValueError:
        raise NotFound("Model not found.") from None
    model = db.get(Model, key)
    task = db.get(Task, model.task_id) if model else None
    if model is None or task is None or task.owner_id != user.id:
        raise NotFound("Model not found.")
    return model_out(model)
