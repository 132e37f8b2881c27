"""Request documentation models and the JSON shapes of responses."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import Request
from pydantic import BaseModel, Field

from vize.config import Settings
from vize.db.tables import Image, Label, Model, Task
from vize.services.common import Page


class TaskIn(BaseModel):
    name: str = Field(..., description="Task name")
    description: str = ""
    type: str = Field("multi_class", description="multi_class (categorization) or multi_label")


class TaskPatch(BaseModel):
    name: str | None = None
    description: str | None = None
    production_version: int | None = Field(None, description="Deploy this trained version")
    webhook_url: str | None = Field(None, description="POSTed to when a training ends")


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


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def base_url(request: Request, settings: Settings) -> str:
    return (settings.public_url or str(request.base_url)).rstrip("/")


def label_out(label: Label, counts: dict[str, tuple[int, int]] | None = None) -> dict[str, Any]:
    images, tasks = (counts or {}).get(label.id, (None, None))
    out: dict[str, Any] = {
        "id": label.id,
        "name": label.name,
        "description": label.description,
        "output_name": label.output_name,
        "type": label.type,
        "created": iso(label.created),
    }
    if images is not None:
        out["images_count"] = images
        out["tasks_count"] = tasks
    return out


def task_out(task: Task, counts: dict[str, tuple[int, int]] | None = None) -> dict[str, Any]:
    return {
        "id": task.id,
        "name": task.name,
        "description": task.description,
        "type": task.type,
        "production_version": task.production_version,
        "last_train_status": task.last_train_status,
        "negative_label": task.negative_label_id,
        "webhook_url": task.webhook_url,
        "webhook_secret": task.webhook_secret,
        "labels": [label_out(lbl, counts) for lbl in task.labels],
        "created": iso(task.created),
    }


def image_out(image: Image, root: str, prefix: str = "/v2") -> dict[str, Any]:
    url = f"{root}{prefix}/training-image/{image.id}"
    return {
        "id": image.id,
        "img_path": f"{url}/file",
        "thumb_img_path": f"{url}/thumb",
        "img_width": image.width,
        "img_height": image.height,
        "file_name": image.file_name,
        "sha256": image.sha256,
        "content_type": image.content_type,
        "labels": [label_out(lbl) for lbl in image.labels],
        "meta_data": image.meta_data,
        "test_image": image.test_image,
        "created": iso(image.created),
    }


def model_out(model: Model) -> dict[str, Any]:
    return {
        "id": model.id,
        "task": model.task_id,
        "version": model.version,
        "train_status": model.train_status,
        "progress": model.progress,
        "images_count": model.images_count,
        "accuracy": model.metrics.get("accuracy"),
        "cv_accuracy": model.metrics.get("cv_accuracy"),
        "metrics": model.metrics,
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
