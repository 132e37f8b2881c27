"""The review queue: predictions kept by ``store_images``, accepted or dismissed."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from vize.api.deps import DB, CurrentCaller, Fields, PagingDep, SettingsDep, State
from vize.api.routing import SlashRouter, body_doc
from vize.api.schemas import base_url, page_out
from vize.db.tables import Label, Prediction, Task
from vize.errors import NotFound
from vize.services import review as review_service
from vize.services import tasks as tasks_service
from vize.services.review import Review

router = SlashRouter(tags=["review"])


class AcceptIn(BaseModel):
    label_id: str | None = Field(None, description="The image's label (default: the predicted)")


def _prefix(request: Request, settings: SettingsDep) -> str:
    """Links in the same API prefix as the request (``/v2`` or ``/recognition/v2``)."""
    path = request.url.path
    version = "/recognition/v2" if path.startswith("/recognition/") else "/v2"
    return base_url(request, settings) + version


def _names(db: Session, task_id: str) -> dict[str, str]:
    task = db.get(Task, task_id)
    return {lbl.id: lbl.name for lbl in task.labels} if task else {}


def _out(db: Session, pred: Prediction, prefix: str) -> dict[str, Any]:
    names = _names(db, pred.task_id)
    if pred.label_id and pred.label_id not in names:  # a label detached since
        names[pred.label_id] = db.scalar(select(Label.name).where(Label.id == pred.label_id)) or ""
    return review_service.prediction_out(pred, names, prefix)


@router.get("/task/{task_id}/predictions/", summary="Predictions kept for review")
def list_predictions(
    task_id: str,
    request: Request,
    settings: SettingsDep,
    db: DB,
    caller: CurrentCaller,
    paging: PagingDep,
    order: Annotated[str, Query(description="uncertain (first) or recent")] = "uncertain",
    status: Annotated[str, Query(description="pending, accepted, dismissed or all")] = "pending",
) -> dict[str, Any]:
    task = tasks_service.get_task(db, caller, task_id)
    page = review_service.list_predictions(db, task, order, status, paging.offset, paging.page_size)
    names, prefix = _names(db, task.id), _prefix(request, settings)
    items = [review_service.prediction_out(p, names, prefix) for p in page.items]
    return page_out(request, page, paging.page, paging.page_size, items)


@router.get("/prediction/{prediction_id}/", summary="A prediction kept for review")
def get_prediction(
    prediction_id: str, request: Request, settings: SettingsDep, db: DB, caller: CurrentCaller
) -> dict[str, Any]:
    pred = review_service.get_prediction(db, caller, prediction_id)
    return _out(db, pred, _prefix(request, settings))


@router.post(
    "/prediction/{prediction_id}/accept/",
    summary="Make it a training image (of label_id, default the predicted label)",
    openapi_extra=body_doc(AcceptIn),
)
def accept_prediction(
    prediction_id: str,
    request: Request,
    settings: SettingsDep,
    state: State,
    caller: CurrentCaller,
    fields: Fields,
) -> dict[str, Any]:
    review = Review(settings, state.sessions, state.blobs)
    pred, image_id = review.accept(caller, prediction_id, fields.get("label_id"))
    with state.sessions() as db:
        return {**_out(db, pred, _prefix(request, settings)), "image_id": image_id}


@router.delete("/prediction/{prediction_id}/", status_code=204, summary="Dismiss it")
def dismiss_prediction(
    prediction_id: str, settings: SettingsDep, state: State, caller: CurrentCaller
) -> Response:
    Review(settings, state.sessions, state.blobs).dismiss(caller, prediction_id)
    return Response(status_code=204)


def _serve(state: State, db: Session, caller: Any, prediction_id: str, thumb: bool) -> Response:
    pred = review_service.get_prediction(db, caller, prediction_id)
    key = pred.thumb_key if thumb else pred.blob_key
    try:
        data = state.blobs.get(key) if key else None
    except KeyError:
        data = None
    if data is None:
        raise NotFound("This prediction keeps no image (reviewed already).", code="no_image")
    return Response(
        data,
        media_type="image/jpeg" if thumb else _content_type(data),
        headers={"Cache-Control": "private, max-age=86400", "X-Content-Type-Options": "nosniff"},
    )


def _content_type(data: bytes) -> str:
    if data.startswith(b"\x89PNG"):
        return "image/png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return "image/jpeg"


@router.get("/prediction/{prediction_id}/file/", summary="The kept image")
def prediction_file(prediction_id: str, state: State, db: DB, caller: CurrentCaller) -> Response:
    return _serve(state, db, caller, prediction_id, thumb=False)


@router.get("/prediction/{prediction_id}/thumb/", summary="A thumbnail of the kept image")
def prediction_thumb(prediction_id: str, state: State, db: DB, caller: CurrentCaller) -> Response:
    return _serve(state, db, caller, prediction_id, thumb=True)
