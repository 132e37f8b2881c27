"""Request documentation models and the JSON shapes of responses."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from fastapi import Request
from pydantic import BaseModel, Field

from vize.api.signing import ImageLinks
from vize.config import Settings
from vize.db.tables import Image, Label, Model, Task
from vize.services.common import Page


class XimilarTrainStatus(StrEnum):
    """What Ximilar answers in ``train_status`` / ``last_train_status`` (tools built on its
    client compare with these); Vize's own words stay in ``train_state`` / ``last_train_state``."""

    WAITING = "WAITING"
    IN_TRAINING = "IN_TRAINING"
    TRAINED = "TRAINED"
    FAILED = "FAILED"


XIMILAR_STATUS = {
    "queued": XimilarTrainStatus.WAITING,
    "training": XimilarTrainStatus.IN_TRAINING,
    "trained": XimilarTrainStatus.TRAINED,
    "failed": XimilarTrainStatus.FAILED,
}


def ximilar_status(state: str) -> str:
    return str(XIMILAR_STATUS.get(state, state.upper()))


class TaskIn(BaseModel):
    name: str = Field(..., description="Task name")
    description: str = ""
    type: str = Field("multi_class", description="multi_class (categorization) or multi_label")


class TaskPatch(BaseModel):
    name: str | None = None
    description: str | None = None
    production_version: int | None = Field(None, description="Deploy this trained version")
    deploy_policy: str | None = Field(
        None,
        description="What a finished training does: always (deploy it), if_better (only if "
        "its cross-validated accuracy beats the deployed version's; the default) or never",
    )
    webhook_url: str | None = Field(None, description="POSTed to when a training ends")
    unknown: str | None = Field(
        None, description="When to answer 'unknown': off, auto (calibrated) or a probability"
    )


class LabelIn(BaseModel):
    name: str
    description: str = ""
    output_name: str = ""
    type: str | None = Field(None, description="category or tag")
    task: str | None = Field(None, description="Attach to this task at once")


class LabelIdIn(BaseModel):
    label_id: str


class TaskIdIn(BaseModel):
    task_id: str


class ImagePatch(BaseModel):
    meta_data: dict[str, Any] | None = None
    test_image: bool | None = None
    real: bool | None = Field(None, description="Ximilar's 'real' flag")


class ImageJsonIn(BaseModel):
    """One image as JSON (what Ximilar's client sends): base64, optional data: URI prefix."""

    base64: str = Field(..., description="base64 image (a data:image/...;base64, prefix is ok)")
    noresize: bool = Field(False, description="Accepted; Vize never resizes what it stores")
    test_image: bool = False
    meta_data: dict[str, Any] = Field(default_factory=dict)
    labels: list[str] = Field(default_factory=list, description="Label ids to add at once")


class LabelValueIn(BaseModel):
    label_id: str
    value: float | None = Field(None, description="The label's value on this image")
    move: bool = Field(
        False,
        description="Categorization tasks give an image one label: with true, a label the "
        "image has in such a task is replaced by this one (else 409 label_conflict)",
    )


class ImagesUpdateIn(BaseModel):
    """``training-image/update``: which images (ids, or every image carrying any of
    ``labels``) and what to change."""

    images: list[str] = Field(default_factory=list)
    labels: list[str] = Field(default_factory=list)
    labels_add: list[str] = Field(default_factory=list, alias="labels-add")
    labels_remove: list[str] = Field(default_factory=list, alias="labels-remove")
    mark_test: bool = Field(False, alias="mark-test")
    unmark_test: bool = Field(False, alias="unmark-test")
    mark_real: bool = Field(False, alias="mark-real")
    unmark_real: bool = Field(False, alias="unmark-real")
    move: bool = Field(
        False, description="labels-add replaces the image's label in a categorization task"
    )


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def base_url(request: Request, settings: Settings) -> str:
    return (settings.public_url or str(request.base_url)).rstrip("/")


def label_out(
    label: Label, counts: dict[str, tuple[int, int]] | None = None, *, full: bool = False
) -> dict[str, Any]:
    """``full``: with its tasks (``recognition_tasks``, ``negative_for_task``), as the label
    endpoints answer; the copies nested in tasks and images leave them out."""
    images, tasks = (counts or {}).get(label.id, (None, None))
    out: dict[str, Any] = {
        "id": label.id,
        "name": label.name,
        "description": label.description,
        "output_name": label.output_name,
        "type": label.type,
        "workspace": label.workspace_id,
        "created": iso(label.created),
    }
    if images is not None:
        out["images_count"] = images
        out["tasks_count"] = tasks
    if full:
        out["recognition_tasks"] = [{"id": t.id, "name": t.name} for t in label.tasks]
        out["negative_for_task"] = next(
            (t.id for t in label.tasks if t.negative_label_id == label.id), None
        )
    return out


def task_out(task: Task, counts: dict[str, tuple[int, int]] | None = None) -> dict[str, Any]:
    return {
        "id": task.id,
        "name": task.name,
        "description": task.description,
        "type": task.type,
        "production_version": task.production_version,
        "deploy_policy": task.deploy_policy,
        "last_train_status": ximilar_status(task.last_train_status),
        "last_train_state": task.last_train_status,
        "workspace": task.workspace_id,
        "negative_label": task.negative_label_id,
        "unknown": task.unknown,
        "webhook_url": task.webhook_url,
        "webhook_secret": task.webhook_secret,
        "labels": [label_out(lbl, counts) for lbl in task.labels],
        "created": iso(task.created),
    }


def image_out(image: Image, root: str, links: ImageLinks, prefix: str = "/v2") -> dict[str, Any]:
    url = f"{root}{prefix}/training-image/{image.id}"
    values = {link.label_id: link.value for link in image.label_links}
    labels = [{**label_out(lbl), "value": values.get(lbl.id)} for lbl in image.labels]
    return {
        "id": image.id,
        # Signed: fetchable by the URL alone until it expires (Ximilar's Image.download).
        "img_path": f"{url}/file?sig={links.sign(image.id, 'file')}",
        "thumb_img_path": f"{url}/thumb?sig={links.sign(image.id, 'thumb')}",
        "img_width": image.width,
        "img_height": image.height,
        "file_name": image.file_name,
        "sha256": image.sha256,
        "content_type": image.content_type,
        "labels": labels,
        "meta_data": image.meta_data,
        "test_image": image.test_image,
        "real": image.real_image,
        "workspace": image.workspace_id,
        "created": iso(image.created),
    }


def model_out(model: Model) -> dict[str, Any]:
    return {
        "id": model.id,
        "task": model.task_id,
        "task_name": model.task.name,
        "version": model.version,
        "train_status": ximilar_status(model.train_status),
        "train_state": model.train_status,
        "progress": model.progress,
        "images_count": model.images_count,
        "accuracy": model.metrics.get("accuracy"),
        "cv_accuracy": model.metrics.get("cv_accuracy"),
        "metrics": model.metrics,
        "deploy_decision": model.deploy_decision,
        "error": model.error,
        "created": iso(model.created),
        "finished": iso(model.finished),
    }


def page_out(request: Request, page: Page[Any], page_no: int, size: int, items: list[Any]) -> dict:
    public = request.app.state.vize.settings.public_url.rstrip("/")

    def link(n: int) -> str:
        url = request.url.include_query_params(page=n, page_size=size)
        if public:  # behind a proxy: link to the public address, not the internal one
            return public + url.path + ("?" + url.query if url.query else "")
        return str(url)

    has_next = page_no * size < page.count
    return {
        "count": page.count,
        "next": link(page_no + 1) if has_next else None,
        "previous": link(page_no - 1) if page_no > 1 else None,
        "results": items,
    }
