"""Tasks and their labels."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from vize.db.tables import Label, Model, Task, User
from vize.errors import InvalidInput
from vize.services.common import Page, get_owned, paginate

TASK_TYPES = ("multi_class", "multi_label")
NEGATIVE_LABEL_NAME = "negative"


def list_tasks(
    db: Session, user: User, offset: int, limit: int, search: str | None = None
) -> Page[Task]:
    stmt = (
        select(Task)
        .where(Task.owner_id == user.id)
        .options(selectinload(Task.labels))
        .order_by(Task.created.desc(), Task.id)
    )
    if search:
        stmt = stmt.where(Task.name.ilike(f"%{search}%"))
    return paginate(db, stmt, offset, limit)


def get_task(db: Session, user: User, task_id: object) -> Task:
    return get_owned(db, Task, task_id, user.id, "Task")


def _check_fields(fields: dict[str, Any]) -> None:
    if "name" in fields and not str(fields["name"] or "").strip():
        raise InvalidInput("Task name must not be empty.", code="invalid_name")
    if "type" in fields and fields["type"] not in TASK_TYPES:
        raise InvalidInput(
            f"Task type must be one of {', '.join(TASK_TYPES)}.", code="invalid_task_type"
        )


def create_task(
    db: Session, user: User, name: str, description: str = "", type: str = "multi_class"
) -> Task:
    _check_fields({"name": name, "type": type})
    task = Task(owner_id=user.id, name=name.strip(), description=description or "", type=type)
    db.add(task)
    db.flush()
    if type == "multi_label":
        _attach_negative_label(db, user, task)
    return task


def _attach_negative_label(db: Session, user: User, task: Task) -> None:
    """Tagging tasks get one automatic label for images that carry none of the tags."""
    label = Label(
        owner_id=user.id,
        name=NEGATIVE_LABEL_NAME,
        description=f"Images with none of the tags of task {task.name!r}.",
        type="tag",
    )
    db.add(label)
    db.flush()
    task.labels.append(label)
    task.negative_label_id = label.id


def update_task(db: Session, user: User, task: Task, fields: dict[str, Any]) -> Task:
    _check_fields(fields)
    if "type" in fields and fields["type"] != task.type:
        raise InvalidInput("A task's type cannot change; create a new task.", code="type_fixed")
    for key in ("name", "description", "webhook_url"):
        if key in fields and fields[key] is not None:
            setattr(task, key, str(fields[key]).strip() if key == "name" else fields[key])
    if fields.get("production_version") is not None:
        set_production_version(db, task, int(fields["production_version"]))
    db.flush()
    return task


def set_production_version(db: Session, task: Task, version: int) -> None:
    model = db.scalar(select(Model).where(Model.task_id == task.id, Model.version == version))
    if model is None or model.train_status != "trained":
        raise InvalidInput(
            f"Version {version} of this task is not a trained model.", code="invalid_version"
        )
    task.production_version = version
    task.production_pinned = True


def delete_task(db: Session, task: Task) -> None:
    db.delete(task)
    db.flush()


def add_label(db: Session, user: User, task: Task, label: Label) -> Task:
    if label not in task.labels:
        task.labels.append(label)
        db.flush()
    return task


def remove_label(db: Session, user: User, task: Task, label: Label) -> Task:
    if label.id == task.negative_label_id:
        raise InvalidInput(
            "The automatic negative label of a tagging task cannot be removed.",
            code="negative_label",
        )
    if label in task.labels:
        task.labels.remove(label)
        db.flush()
    return task
