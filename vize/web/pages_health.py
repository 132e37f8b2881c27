"""The task's "Data health" tab (near-duplicates, suspected mislabels with one-click fixes,
test leaks) and the "find similar" page of a training image."""

from __future__ import annotations

from fastapi import Request, Response
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from vize.api.deps import DB, AppState, get_state
from vize.db.tables import Image, Label, Task, TaskInsight
from vize.errors import NotFound
from vize.services import images as images_service
from vize.services import insights as insights_service
from vize.services import search as search_service
from vize.services.common import get_owned
from vize.services.fairpool import Priority
from vize.services.tasks import get_task
from vize.services.workspaces import Caller
from vize.web.pages_tasks import task_context
from vize.web.render import redirect, render
from vize.web.routing import page_router
from vize.web.session import Form, PageCaller

router = page_router()
SIMILAR_SHOWN = 24
SHOWN_SUSPICION = 0.5  # the cross-validated probability of the given label is below 1/2


def _images(db: Session, ids: set[str]) -> dict[str, Image]:
    rows = db.scalars(select(Image).where(Image.id.in_(ids)).options(selectinload(Image.labels)))
    return {im.id: im for im in rows}


@router.get("/tasks/{task_id}/health")
def health_page(task_id: str, request: Request, db: DB, caller: PageCaller) -> Response:
    task = get_task(db, caller, task_id)
    state = get_state(request)
    db.commit()  # the report may take a while to compute: give the connection back
    report = insights_service.get_insights(
        state.sessions, state.blobs, state.services.recognizer, caller, task.id
    )
    ids = {i for g in report["near_duplicates"] for i in g["images"]}
    ids |= {s["id"] for s in report["suspected_mislabels"]}
    ids |= {x["test_image"] for x in report["test_leaks"]} | {
        x["train_image"] for x in report["test_leaks"]
    }
    context = {
        **task_context(request, task, caller, "health"),
        "report": report,
        # The API lists every image ranked; the page only those the data says are wrong.
        "suspects": [s for s in report["suspected_mislabels"] if _shown(task.type, s)],
        "images": _images(db, ids),
        "trained": task.production_version >= 1,
    }
    return render(request, "tasks/health.html", context)


def _shown(kind: str, suspect: dict) -> bool:
    """Worth a look: the given label is unlikely and, for a single label, another label is
    likelier (with few images per label many images are merely uncertain)."""
    if suspect["suspicion"] < SHOWN_SUSPICION:
        return False
    return kind != "multi_class" or suspect["predicted"]["prob"] > 1 - suspect["suspicion"]


@router.post("/tasks/{task_id}/health/recompute")
def recompute(task_id: str, request: Request, db: DB, caller: PageCaller, form: Form) -> Response:
    task = get_task(db, caller, task_id)
    state = get_state(request)
    db.commit()
    insights_service.get_insights(
        state.sessions, state.blobs, state.services.recognizer, caller, task.id, True
    )
    return redirect(request, f"/tasks/{task.id}/health", "Data health recomputed.")


@router.post("/tasks/{task_id}/health/{image_id}/keep")
def keep(
    task_id: str, image_id: str, request: Request, db: DB, caller: PageCaller, form: Form
) -> Response:
    db.commit()
    insights_service.keep(get_state(request).sessions, caller, task_id, image_id)
    return redirect(request, f"/tasks/{task_id}/health", "Kept: it will not be suspected again.")


@router.post("/tasks/{task_id}/health/{image_id}/relabel")
def relabel(
    task_id: str, image_id: str, request: Request, db: DB, caller: PageCaller, form: Form
) -> Response:
    task = get_task(db, caller, task_id)
    image = get_owned(db, Image, image_id, caller.workspace_id, "Image")
    target = get_owned(db, Label, form.get("label", ""), caller.workspace_id, "Label")
    in_task = {lbl.id for lbl in task.labels}
    if target.id not in in_task:
        raise NotFound("Label not found in this task.")
    if task.type == "multi_class":
        for lbl in list(image.labels):
            if lbl.id in in_task and lbl.id != target.id:
                images_service.remove_label(db, image, lbl)
        images_service.add_label(db, image, target)
    elif target in image.labels:  # a tag the data says is wrong
        images_service.remove_label(db, image, target)
    else:
        images_service.add_label(db, image, target)
    return redirect(request, f"/tasks/{task.id}/health", f"Label changed ({target.name}).")


@router.post("/tasks/{task_id}/health/{image_id}/delete")
def delete(
    task_id: str, image_id: str, request: Request, db: DB, caller: PageCaller, form: Form
) -> Response:
    get_task(db, caller, task_id)
    image = get_owned(db, Image, image_id, caller.workspace_id, "Image")
    keys = images_service.delete_image(db, image)
    db.commit()
    state = get_state(request)
    images_service.purge_unused_blobs(state.sessions, state.blobs, keys)
    return redirect(request, f"/tasks/{task_id}/health", "Image deleted.")


@router.get("/tasks/{task_id}/similar/{image_id}")
def similar_page(
    task_id: str, image_id: str, request: Request, db: DB, caller: PageCaller
) -> Response:
    task = get_task(db, caller, task_id)
    image = get_owned(db, Image, image_id, caller.workspace_id, "Image")
    db.commit()
    hits = _similar(get_state(request), caller, task, image)
    context = {
        **task_context(request, task, caller, "images"),
        "image": image,
        "hits": [(im, s) for i, s in hits if (im := _images(db, {i}).get(i)) is not None],
    }
    return render(request, "tasks/similar.html", context)


def _similar(state: AppState, caller: Caller, task: Task, image: Image) -> list[tuple[str, float]]:
    """The API's search by image id, with its limits (by id only: no URL is fetched)."""
    fields = {"task_id": task.id, "k": SIMILAR_SHOWN, "records": [{"_id": image.id}]}
    services = state.services
    budget = services.fetcher.budget(state.settings, caller.actor)
    job = search_service.admit(
        state.sessions,
        state.blobs,
        services.recognizer,
        state.settings,
        caller,
        fields,
        budget,
        limiter=services.limiter,
        on_pending=services.after_upload,
    )
    pool = services.recognizer.pool
    queries = pool.submit_for(
        caller.actor,
        Priority.INTERACTIVE,
        search_service.answer,
        state.sessions,
        state.blobs,
        services.recognizer,
        state.settings,
        job,
        capped=job.costly,
    ).result()
    return queries[0].hits or []


def leaked_test_images(db: Session, task: Task) -> set[str]:
    """Test images of the stored report that have a near copy among the training images
    (the evaluation page marks them: their score measures memory, not recognition)."""
    row = db.get(TaskInsight, task.id)
    if row is None or not row.computed:
        return set()
    current = insights_service.current(db, task.id, dict(row.report))
    return {leak["test_image"] for leak in current["test_leaks"]}
