"""/v2/model/ — trained versions of a task and their evaluation."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from vize.api.deps import DB, CurrentUser, PagingDep
from vize.api.routing import SlashRouter
from vize.api.schemas import model_out, page_out
from vize.services import models as models_service
from vize.services import tasks as tasks_service

router = SlashRouter(prefix="/model", tags=["models"])


@router.get("/", summary="List model versions (?task=)")
def list_models(
    request: Request, db: DB, user: CurrentUser, paging: PagingDep, task: str | None = None
) -> dict[str, Any]:
    of_task = tasks_service.get_task(db, user, task) if task else None
    page = models_service.list_models(db, user, paging.offset, paging.page_size, of_task)
    return page_out(
        request, page, paging.page, paging.page_size, [model_out(m) for m in page.items]
    )


@router.get("/{model_id}/", summary="A model version with its metrics")
def get_model(model_id: str, db: DB, user: CurrentUser) -> dict[str, Any]:
    return model_out(models_service.get_model(db, user, model_id))
