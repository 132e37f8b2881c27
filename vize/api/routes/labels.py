"""/v2/label/ — the user's labels."""

from __future__ import annotations

from typing import Any

from fastapi import Request, Response

from vize.api.deps import DB, CurrentCaller, Fields, PagingDep, State
from vize.api.routing import SlashRouter, body_doc
from vize.api.schemas import LabelIn, TaskIdIn, label_out, page_out
from vize.db.tables import Label
from vize.errors import InvalidInput
from vize.services import images as images_service
from vize.services import labels as labels_service
from vize.services import tasks as tasks_service

router = SlashRouter(prefix="/label", tags=["labels"])


def _out(db: DB, label: Label) -> dict[str, Any]:
    return label_out(label, labels_service.counts(db, [label.id]), full=True)


@router.get("/", summary="List your labels (filter with ?task=)")
def list_labels(
    request: Request,
    db: DB,
    caller: CurrentCaller,
    paging: PagingDep,
    task: str | None = None,
    search: str | None = None,
) -> dict[str, Any]:
    task_obj = tasks_service.get_task(db, caller, task) if task else None
    page = labels_service.list_labels(db, caller, paging.offset, paging.page_size, task_obj, search)
    counts = labels_service.counts(db, [lbl.id for lbl in page.items])
    items = [label_out(lbl, counts, full=True) for lbl in page.items]
    return page_out(request, page, paging.page, paging.page_size, items)


@router.post("/", status_code=201, summary="Create a label", openapi_extra=body_doc(LabelIn))
def create_label(db: DB, caller: CurrentCaller, fields: Fields) -> dict[str, Any]:
    if not fields.get("name"):
        raise InvalidInput("Field 'name' is required.", code="required")
    # Vize's docs send "task"; Ximilar clients send "task_id": both are accepted.
    task_ref = fields.get("task") or fields.get("task_id")
    task = tasks_service.get_task(db, caller, task_ref) if task_ref else None
    return _out(db, labels_service.create_label(db, caller, fields, task))


@router.get("/{label_id}/", summary="Retrieve a label")
def get_label(label_id: str, db: DB, caller: CurrentCaller) -> dict[str, Any]:
    return _out(db, labels_service.get_label(db, caller, label_id))


@router.api_route(
    "/{label_id}/",
    methods=["PATCH", "PUT"],
    summary="Update a label",
    openapi_extra=body_doc(LabelIn),
)
def update_label(label_id: str, db: DB, caller: CurrentCaller, fields: Fields) -> dict[str, Any]:
    label = labels_service.get_label(db, caller, label_id)
    return _out(db, labels_service.update_label(db, label, fields))


@router.delete("/{label_id}/", status_code=204, summary="Delete a label")
def delete_label(label_id: str, db: DB, caller: CurrentCaller) -> Response:
    labels_service.delete_label(db, labels_service.get_label(db, caller, label_id))
    return Response(status_code=204)


@router.delete(
    "/{label_id}/wipe/", status_code=204, summary="Delete the label and every image carrying it"
)
def wipe_label(label_id: str, state: State, caller: CurrentCaller) -> Response:
    with state.sessions.begin() as db:
        label = labels_service.get_label(db, caller, label_id)
        keys = labels_service.wipe_label(db, label)
    images_service.purge_unused_blobs(state.sessions, state.blobs, keys)
    return Response(status_code=204)


def _task_from(db: DB, caller: CurrentCaller, fields: dict[str, Any]) -> Any:
    task_id = fields.get("task_id") or fields.get("task")
    if not task_id:
        raise InvalidInput("Field 'task_id' is required.", code="required")
    return tasks_service.get_task(db, caller, task_id)


@router.post("/{label_id}/add-task/", summary="Attach to a task", openapi_extra=body_doc(TaskIdIn))
def add_task(label_id: str, db: DB, caller: CurrentCaller, fields: Fields) -> dict[str, Any]:
    label = labels_service.get_label(db, caller, label_id)
    tasks_service.add_label(db, _task_from(db, caller, fields), label)
    return _out(db, label)


@router.post(
    "/{label_id}/remove-task/", summary="Detach from a task", openapi_extra=body_doc(TaskIdIn)
)
def remove_task(label_id: str, db: DB, caller: CurrentCaller, fields: Fields) -> dict[str, Any]:
    label = labels_service.get_label(db, caller, label_id)
    tasks_service.remove_label(db, _task_from(db, caller, fields), label)
    return _out(db, label)
