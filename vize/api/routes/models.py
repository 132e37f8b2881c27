"""/v2/model/ — trained versions of a task and their evaluation."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import Request, Response

from vize.api.deps import DB, CurrentCaller, PagingDep, ServicesDep, State
from vize.api.routing import SlashRouter
from vize.api.schemas import model_out, page_out
from vize.services import export as export_service
from vize.services import models as models_service
from vize.services import tasks as tasks_service

router = SlashRouter(prefix="/model", tags=["models"])


@router.get("/", summary="List model versions (?task=)")
def list_models(
    request: Request, db: DB, caller: CurrentCaller, paging: PagingDep, task: str | None = None
) -> dict[str, Any]:
    of_task = tasks_service.get_task(db, caller, task) if task else None
    page = models_service.list_models(db, caller, paging.offset, paging.page_size, of_task)
    return page_out(
        request, page, paging.page, paging.page_size, [model_out(m) for m in page.items]
    )


@router.get("/{model_id}/", summary="A model version with its metrics")
def get_model(model_id: str, db: DB, caller: CurrentCaller) -> dict[str, Any]:
    return model_out(models_service.get_model(db, caller, model_id))


@router.delete("/{model_id}/", status_code=204, summary="Remove a model version")
def delete_model(model_id: str, state: State, caller: CurrentCaller) -> Response:
    with state.sessions.begin() as db:
        key = models_service.delete_model(db, models_service.get_model(db, caller, model_id))
    if key:
        try:
            state.blobs.delete(key)
        except Exception:  # the orphan sweep removes what is left
            logging.getLogger("vize.storage").exception("could not remove %s", key)
    return Response(status_code=204)


@router.get(
    "/{model_id}/export/",
    summary="Download the model as a zip (ONNX, labels, preprocessing, thresholds)",
    response_class=Response,
    responses={200: {"content": {"application/zip": {}}}},
)
def export_model(
    model_id: str, state: State, services: ServicesDep, caller: CurrentCaller
) -> Response:
    with state.sessions() as db:
        model = models_service.get_model(db, caller, model_id)
        name, data = export_service.export_zip(db, services.recognizer, state.blobs, model)
    return Response(
        data,
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
