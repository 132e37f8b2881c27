"""Labels: the user's own, attached to any number of their tasks."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from vize.db.tables import Image, ImageLabel, Label, Task, TaskLabel
from vize.errors import InvalidInput
from vize.services.common import (
    LONG_TEXT,
    Page,
    get_owned,
    in_workspace,
    like_pattern,
    name_field,
    paginate,
    text_field,
)
from vize.services.conflicts import check_name_free
from vize.services.images import delete_image
from vize.services.workspaces import Caller

LABEL_TYPES = ("category", "tag")


def list_labels(
    db: Session,
    caller: Caller,
    offset: int,
    limit: int,
    task: Task | None = None,
    search: str | None = None,
) -> Page[Label]:
    stmt = (
        select(Label)
        .where(in_workspace(Label, caller.workspace_id))
        .options(selectinload(Label.tasks))
        .order_by(Label.name, Label.id)
    )
    if task is not None:
        stmt = stmt.join(TaskLabel, TaskLabel.label_id == Label.id).where(
            TaskLabel.task_id == task.id
        )
    if search:
        stmt = stmt.where(Label.name.ilike(like_pattern(search), escape="\\"))
    return paginate(db, stmt, offset, limit)


def get_label(db: Session, caller: Caller, label_id: object) -> Label:
    return get_owned(db, Label, label_id, caller.workspace_id, "Label")


def _check(fields: dict[str, Any]) -> dict[str, Any]:
    """The writable fields that were sent (None = not sent), validated."""
    out: dict[str, Any] = {}
    if "name" in fields:
        out["name"] = name_field(fields.get("name"), "name")
        if not out["name"]:
            raise InvalidInput("Label name must not be empty.", code="invalid_name")
    for key, limit in (("description", LONG_TEXT), ("output_name", 255)):
        if fields.get(key) is not None:
            out[key] = text_field(fields[key], key, limit)
    if fields.get("type") not in (None, ""):
        if fields["type"] not in LABEL_TYPES:
            raise InvalidInput("Label type must be 'category' or 'tag'.", code="invalid_label_type")
        out["type"] = fields["type"]
    return out


def create_label(db: Session, caller: Caller, fields: dict[str, Any], task: Task | None) -> Label:
    clean = _check({**fields, "name": fields.get("name")})
    label_type = clean.pop("type", None) or (
        "tag" if task is not None and task.type == "multi_label" else "category"
    )
    if task is not None:
        check_name_free(db, [task], clean["name"], None)
    label = Label(
        owner_id=caller.user_id, workspace_id=caller.workspace_id, type=label_type, **clean
    )
    db.add(label)
    db.flush()
    if task is not None:
        task.labels.append(label)
        db.flush()
    return label


def update_label(db: Session, label: Label, fields: dict[str, Any]) -> Label:
    clean = _check({k: v for k, v in fields.items() if v is not None})
    if "name" in clean:
        check_name_free(db, label.tasks, clean["name"], label)
    for key, value in clean.items():
        setattr(label, key, value)
    db.flush()
    return label


def delete_label(db: Session, label: Label) -> None:
    negative_of = db.scalar(select(Task.id).where(Task.negative_label_id == label.id))
    if negative_of:
        raise InvalidInput(
            "This is the automatic negative label of a tagging task; delete the task instead.",
            code="negative_label",
        )
    db.delete(label)
    db.flush()


def wipe_label(db: Session, label: Label) -> list[str]:
    """Delete the label and every image carrying it (Ximilar's ``label.wipe()``); returns
    the file keys to pass to ``images.purge_unused_blobs`` after the commit."""
    carrying = select(ImageLabel.image_id).where(ImageLabel.label_id == label.id)
    images = list(db.scalars(select(Image).where(Image.id.in_(carrying))))
    delete_label(db, label)  # first: refuses a tagging task's negative label, deleting nothing
    keys: list[str] = []
    for image in images:
        keys += delete_image(db, image)
    return keys


def counts(db: Session, label_ids: list[str]) -> dict[str, tuple[int, int]]:
    """(images_count, tasks_count) per label id, in two grouped queries."""
    if not label_ids:
        return {}
    images = _count_by_label(db, ImageLabel.label_id, label_ids)
    tasks = _count_by_label(db, TaskLabel.label_id, label_ids)
    return {lid: (images.get(lid, 0), tasks.get(lid, 0)) for lid in label_ids}


def _count_by_label(db: Session, column: Any, label_ids: list[str]) -> dict[str, int]:
    stmt = select(column, func.count()).where(column.in_(label_ids)).group_by(column)
    return {lid: int(n) for lid, n in db.execute(stmt).tuples()}
