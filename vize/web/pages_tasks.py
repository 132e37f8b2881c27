"""Task list, task creation, the task's labels and images page, task settings."""

from __future__ import annotations

from typing import Any

from fastapi import Request, Response

from vize.api.deps import DB, State
from vize.db.tables import Task
from vize.errors import InvalidInput
from vize.services import images as images_service
from vize.services import labels as labels_service
from vize.services import tasks as tasks_service
from vize.services.workspaces import Caller
from vize.web import views
from vize.web.render import redirect, render
from vize.web.routing import page_router
from vize.web.session import Form, PageCaller, api_csrf

router = page_router()
TASKS_PER_PAGE = 25
IMAGES_PER_PAGE = 24


def task_context(request: Request, task: Task, caller: Caller, tab: str) -> dict[str, Any]:
    """What every tab of a task page shares: the header, the tabs, the API CSRF token."""
    return {
        "task": task,
        "user": caller.user,
        "caller": caller,
        "tab": tab,
        "api_csrf": api_csrf(request),
    }


@router.get("/tasks")
def task_list(request: Request, db: DB, caller: PageCaller, page: int = 1) -> Response:
    page = views.clamp_page(page)
    offset = (page - 1) * TASKS_PER_PAGE
    result = tasks_service.list_tasks(db, caller, offset, TASKS_PER_PAGE)
    context = {
        "user": caller.user,
        "caller": caller,
        "rows": views.task_summaries(db, caller, result.items),
        "pager": views.Pager(page, TASKS_PER_PAGE, result.count),
    }
    return render(request, "tasks/list.html", context)


@router.post("/tasks")
def create_task(request: Request, db: DB, caller: PageCaller, form: Form) -> Response:
    name = form.get("name", "")
    if not name.strip():
        raise InvalidInput("Give the task a name.", code="invalid_name")
    kind = "multi_label" if form.get("type") == "multi_label" else "multi_class"
    task = tasks_service.create_task(db, caller, name, form.get("description", ""), kind)
    return redirect(request, f"/tasks/{task.id}", f"Task “{task.name}” created. Add its labels.")


@router.get("/tasks/{task_id}")
def task_page(
    task_id: str, request: Request, db: DB, caller: PageCaller, label: str = "", page: int = 1
) -> Response:
    task = tasks_service.get_task(db, caller, task_id)
    settings = request.app.state.vize.settings
    rows = views.label_rows(db, task, settings.min_images_per_label)
    selected = next((r for r in rows if r.id == label), rows[0] if rows else None)
    pager = views.Pager(views.clamp_page(page), IMAGES_PER_PAGE, 0)
    images: list[Any] = []
    if selected is not None:
        result = images_service.list_images(
            db, caller, pager.offset, IMAGES_PER_PAGE, task_id=task.id, label_ids=[selected.id]
        )
        images, pager = result.items, views.Pager(pager.page, IMAGES_PER_PAGE, result.count)
    context = {
        **task_context(request, task, caller, "images"),
        "labels": rows,
        "selected": selected,
        "images": images,
        "pager": pager,
        "other_labels": views.other_labels(db, caller, task),
        "max_upload_bytes": settings.max_upload_bytes,
        "min_images": settings.min_images_per_label,
    }
    return render(request, "tasks/images.html", context)


@router.post("/tasks/{task_id}/labels")
def create_label(
    task_id: str, request: Request, db: DB, caller: PageCaller, form: Form
) -> Response:
    task = tasks_service.get_task(db, caller, task_id)
    label = labels_service.create_label(db, caller, {"name": form.get("name", "")}, task)
    return redirect(request, f"/tasks/{task.id}?label={label.id}", f"Label “{label.name}” added.")


@router.post("/tasks/{task_id}/labels/attach")
def attach_label(
    task_id: str, request: Request, db: DB, caller: PageCaller, form: Form
) -> Response:
    task = tasks_service.get_task(db, caller, task_id)
    label = labels_service.get_label(db, caller, form.get("label_id", ""))
    tasks_service.add_label(db, task, label)
    return redirect(request, f"/tasks/{task.id}?label={label.id}", f"“{label.name}” attached.")


@router.post("/tasks/{task_id}/labels/{label_id}/rename")
def rename_label(
    task_id: str, label_id: str, request: Request, db: DB, caller: PageCaller, form: Form
) -> Response:
    task = tasks_service.get_task(db, caller, task_id)
    label = views.task_label(task, label_id)
    labels_service.update_label(db, label, {"name": form.get("name", "")})
    return redirect(request, f"/tasks/{task.id}?label={label.id}", "Label renamed.")


@router.post("/tasks/{task_id}/labels/{label_id}/detach")
def detach_label(
    task_id: str, label_id: str, request: Request, db: DB, caller: PageCaller, form: Form
) -> Response:
    task = tasks_service.get_task(db, caller, task_id)
    label = views.task_label(task, label_id)
    tasks_service.remove_label(db, task, label)
    message = f"“{label.name}” removed from this task (the label and its images are kept)."
    return redirect(request, f"/tasks/{task.id}", message)


@router.post("/tasks/{task_id}/labels/{label_id}/delete")
def delete_label(
    task_id: str, label_id: str, request: Request, db: DB, caller: PageCaller, form: Form
) -> Response:
    task = tasks_service.get_task(db, caller, task_id)
    label = views.task_label(task, label_id)
    name = label.name
    labels_service.delete_label(db, label)
    return redirect(request, f"/tasks/{task.id}", f"Label “{name}” deleted.")


@router.get("/tasks/{task_id}/settings")
def settings_page(task_id: str, request: Request, db: DB, caller: PageCaller) -> Response:
    task = tasks_service.get_task(db, caller, task_id)
    context = {
        **task_context(request, task, caller, "settings"),
        "deploy_policies": views.DEPLOY_POLICIES,
    }
    return render(request, "tasks/settings.html", context)


@router.post("/tasks/{task_id}/deploy-policy")
def save_deploy_policy(
    task_id: str, request: Request, db: DB, caller: PageCaller, form: Form
) -> Response:
    task = tasks_service.get_task(db, caller, task_id)
    tasks_service.update_task(db, task, {"deploy_policy": form.get("deploy_policy", "")})
    title = views.policy_title(task.deploy_policy)
    return redirect(request, f"/tasks/{task.id}/settings", f"Deployment: {title}.")


@router.post("/tasks/{task_id}/settings")
def save_settings(
    task_id: str, request: Request, db: DB, caller: PageCaller, form: Form
) -> Response:
    task = tasks_service.get_task(db, caller, task_id)
    fields = {"name": form.get("name", ""), "description": form.get("description", "")}
    tasks_service.update_task(db, task, fields)
    return redirect(request, f"/tasks/{task.id}/settings", "Task saved.")


@router.post("/tasks/{task_id}/delete")
def delete_task(
    task_id: str, request: Request, state: State, caller: PageCaller, form: Form
) -> Response:
    with state.sessions.begin() as db:  # committed before its files go
        task = tasks_service.get_task(db, caller, task_id)
        name = task.name
        keys = tasks_service.delete_task(db, task)
    tasks_service.purge_model_files(state.sessions, state.blobs, keys)
    return redirect(request, "/tasks", f"Task “{name}” deleted.")
