"""Training and evaluation, choosing the deployed version, and the preview page."""

from __future__ import annotations

from typing import Any

from fastapi import Request, Response

from vize.api.deps import DB
from vize.api.schemas import base_url
from vize.db.states import TrainStatus
from vize.db.tables import Task
from vize.errors import InvalidInput, NotFound
from vize.services import tasks as tasks_service
from vize.services import training as training_service
from vize.web import views
from vize.web.pages_health import leaked_test_images
from vize.web.pages_tasks import task_context
from vize.web.render import redirect, render
from vize.web.routing import page_router
from vize.web.session import Form, PageCaller

router = page_router()


@router.get("/tasks/{task_id}/training")
def training_page(
    task_id: str, request: Request, db: DB, caller: PageCaller, version: int | None = None
) -> Response:
    task = tasks_service.get_task(db, caller, task_id)
    settings = request.app.state.vize.settings
    models = views.task_models(db, task)
    model = views.pick_model(models, version, task.production_version)
    metrics: dict[str, Any] = (model or {}).get("metrics") or {}
    labels = views.label_rows(db, task, settings.min_images_per_label)
    trainable = [row for row in labels if not row.is_negative]
    min_labels = 2 if task.type == "multi_class" else 1
    trained = [m for m in models if m["train_state"] == TrainStatus.TRAINED]
    context = {
        **task_context(request, task, caller, "training"),
        "trainable": trainable,
        "min_labels": min_labels if len(trainable) < min_labels else 0,
        "short_labels": [row for row in trainable if not row.ready],
        "models": models,
        "model": model,
        "metrics": metrics,
        "heatmap": views.heatmap(metrics.get("confusion_matrix")),
        "misclassified": views.misclassified(db, caller, metrics),
        "thresholds": views.threshold_data(metrics, task.type),
        "task_labels": [row for row in labels if not row.is_negative],
        "training": _latest_training(db, task),
        "leaked": leaked_test_images(db, task),  # data health: marked on the evaluation
        # Deployment: the newest trained version against the deployed one, and the policy.
        "newest": trained[0] if trained else None,
        "deployed_model": next(
            (m for m in trained if m["version"] == task.production_version), None
        ),
        "policy_title": views.policy_title(task.deploy_policy),
    }
    return render(request, "tasks/training.html", context)


def _latest_training(db: DB, task: Task) -> dict[str, Any] | None:
    """The latest training's state (as GET /v2/task/{id}/training/ answers), if any."""
    try:
        return training_service.latest_training(db, task)
    except NotFound:
        return None


@router.post("/tasks/{task_id}/deploy")
def deploy(task_id: str, request: Request, db: DB, caller: PageCaller, form: Form) -> Response:
    task = tasks_service.get_task(db, caller, task_id)
    try:
        version = int(form.get("version", ""))
    except ValueError:
        raise InvalidInput("Choose a version to deploy.", code="invalid_version") from None
    tasks_service.update_task(db, task, {"production_version": version})
    message = f"Version {version} is now deployed: the API answers with it."
    return redirect(request, f"/tasks/{task.id}/training?version={version}", message)


@router.get("/tasks/{task_id}/preview")
def preview_page(task_id: str, request: Request, db: DB, caller: PageCaller) -> Response:
    task = tasks_service.get_task(db, caller, task_id)
    models = [m for m in views.task_models(db, task) if m["train_state"] == TrainStatus.TRAINED]
    context = {
        **task_context(request, task, caller, "preview"),
        "trained": models,
        "api_root": base_url(request, request.app.state.vize.settings),
        "max_upload_bytes": request.app.state.vize.settings.max_upload_bytes,
    }
    return render(request, "tasks/preview.html", context)
