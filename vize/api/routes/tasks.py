"""/v2/task/ — tasks and the labels attached to them."""

from __future__ import annotations

from typing import Any

from fastapi import Request, Response

from vize.api.deps import DB, CurrentCaller, Fields, PagingDep, State
from vize.api.routing import SlashRouter, body_doc
from vize.api.schemas import LabelIdIn, TaskIn, TaskPatch, page_out, task_out
from vize.errors import InvalidInput
from vize.services import labels as labels_service
from vize.services import tasks as tasks_service

router = SlashRouter(prefix="/task", tags=["tasks"])


def _out(db: DB, task: Any) -> dict[str, Any]:
    return task_out(task, labels_service.counts(db, [lbl.id for lbl in task.labels]))


@router.get("/", summary="List your tasks")
def list_tasks(
    request: Request, db: DB, caller: CurrentCaller, paging: PagingDep, search: str | None = None
) -> dict[str, Any]:
    page = tasks_service.list_tasks(db, caller, paging.offset, paging.page_size, search)
    ids = [lbl.id for t in page.items for lbl in t.labels]
    counts = labels_service.counts(db, ids)
    items = [task_out(t, counts) for t in page.items]
    return page_out(request, page, paging.page, paging.page_size, items)


@router.post("/", status_code=201, summary="Create a task", openapi_extra=body_doc(TaskIn))
def create_task(db: DB, caller: CurrentCaller, fields: Fields) -> dict[str, Any]:
    if not fields.get("name"):
        raise InvalidInput("Field 'name' is required.", code="required")
    task = tasks_service.create_task(
        db,
        caller,
        fields["name"],
        fields.get("description") or "",
        fields.get("type") or "multi_class",
    )
    return _out(db, task)


@router.get("/{task_id}/", summary="Retrieve a task")
def get_task(task_id: str, db: DB, caller: CurrentCaller) -> dict[str, Any]:
    return _out(db, tasks_service.get_task(db, caller, task_id))


@router.api_route(
    "/{task_id}/",
    methods=["PATCH", "PUT"],
    summary="Update a task",
    openapi_extra=body_doc(TaskPatch),
)
def update_task(task_id: str, db: DB, caller: CurrentCaller, fields: Fields) -> dict[str, Any]:
    task = tasks_service.get_task(db, caller, task_id)
    return _out(db, tasks_service.update_task(db, task, fields))


@router.delete("/{task_id}/", status_code=204, summary="Delete a task")
def delete_task(task_id: str, state: State, caller: CurrentCaller) -> Response:
    with state.sessions.begin() as db:  # committed before its files go
        keys = tasks_service.delete_task(db, tasks_service.get_task(db, caller, task_id))
    tasks_service.purge_model_files(state.sessions, state.blobs, keys)
    return Response(status_code=204)


def _label_from(db: DB, caller: CurrentCaller, fields: dict[str, Any]) -> Any:
    label_id = fields.get("label_id") or fields.get("label")
    if not label_id:
        raise InvalidInput("Field 'label_id' is required.", code="required")
    return labels_service.get_label(db, caller, label_id)


@router.post("/{task_id}/add-label/", summary="Attach a label", openapi_extra=body_doc(LabelIdIn))
def add_label(task_id: str, db: DB, caller: CurrentCaller, fields: Fields) -> dict[str, Any]:
    task = tasks_service.get_task(db, caller, task_id)
    task = tasks_service.add_label(db, task, _label_from(db, caller, fields))
    return _out(db, task)


@router.post(
    "/{task_id}/remove-label/", summary="Detach a label", openapi_extra=body_doc(LabelIdIn)
)
def remove_label(task_id: str, db: DB, caller: CurrentCaller, fields: Fields) -> dict[str, Any]:
    task = tasks_service.get_task(db, caller, task_id)
    task = tasks_service.remove_label(db, task, _label_from(db, caller, fields))
    return _out(db, task)


@router.get("/{task_id}/labels/", summary="Labels of a task with image counts (?search=)")
def task_labels(
    task_id: str, db: DB, caller: CurrentCaller, search: str | None = None
) -> list[dict[str, Any]]:
    task = tasks_service.get_task(db, caller, task_id)
    labels: list[dict[str, Any]] = _out(db, task)["labels"]
    if search:  # the name contains it, case aside (like ?search= of the label list)
        wanted = search.casefold()
        labels = [lbl for lbl in labels if wanted in str(lbl["name"]).casefold()]
    return labels
