"""The Review tab: predictions kept by ``store_images``, most uncertain first, reviewed with
the keyboard (accept / correct / dismiss through the API), and the "unknown" setting."""

from __future__ import annotations

from fastapi import Request, Response

from vize.api.deps import DB
from vize.db.tables import Task
from vize.services import review as review_service
from vize.services import tasks as tasks_service
from vize.web.pages_tasks import task_context
from vize.web.render import redirect, render
from vize.web.routing import page_router
from vize.web.session import Form, PageCaller

router = page_router()
REVIEW_PAGE = 60  # cards per page: the JS fetches the next ones as the grid empties


@router.get("/tasks/{task_id}/review")
def review_page(task_id: str, request: Request, db: DB, caller: PageCaller) -> Response:
    task = tasks_service.get_task(db, caller, task_id)
    page = review_service.list_predictions(db, task, "uncertain", "pending", 0, REVIEW_PAGE)
    names = {lbl.id: lbl.name for lbl in task.labels}
    context = {
        **task_context(request, task, caller, "review"),
        "predictions": [review_service.prediction_out(p, names, "/v2") for p in page.items],
        "pending": page.count,
        "choices": _choices(task),
    }
    return render(request, "tasks/review.html", context)


def _choices(task: Task) -> list[dict[str, str]]:
    """The labels a prediction can be corrected to, keys 1-9 in this order."""
    return [
        {"id": lbl.id, "name": lbl.name} for lbl in task.labels if lbl.id != task.negative_label_id
    ]


@router.post("/tasks/{task_id}/unknown")
def save_unknown(
    task_id: str, request: Request, db: DB, caller: PageCaller, form: Form
) -> Response:
    task = tasks_service.get_task(db, caller, task_id)
    choice = form.get("unknown", "off")
    value = form.get("threshold", "") if choice == "number" else choice
    tasks_service.update_task(db, task, {"unknown": value})
    return redirect(request, f"/tasks/{task.id}/review", "The 'unknown' answer is saved.")
