"""Tasks and their labels."""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload, sessionmaker

from vize.db.tables import Label, Model, Task, TaskLabel
from vize.errors import InvalidInput
from vize.services.common import (
    LONG_TEXT,
    Page,
    append_link,
    get_owned,
    in_workspace,
    int_field,
    like_pattern,
    name_field,
    paginate,
    text_field,
)
from vize.services.conflicts import check_attach
from vize.services.deploy import check_policy
from vize.services.models import trained_version
from vize.services.unknown import INVALID, parse_setting
from vize.services.workspaces import Caller
from vize.storage import BlobStore

log = logging.getLogger("vize.storage")

TASK_TYPES = ("multi_class", "multi_label")
NEGATIVE_LABEL_NAME = "negative"


def list_tasks(
    db: Session, caller: Caller, offset: int, limit: int, search: str | None = None
) -> Page[Task]:
    stmt = (
        select(Task)
        .where(in_workspace(Task, caller.workspace_id))
        .options(selectinload(Task.labels))
        .order_by(Task.created.desc(), Task.id)
    )
    if search:
        stmt = stmt.where(Task.name.ilike(like_pattern(search), escape="\\"))
    return paginate(db, stmt, offset, limit)


def get_task(db: Session, caller: Caller, task_id: object) -> Task:
    return get_owned(db, Task, task_id, caller.workspace_id, "Task")


def _check_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """The writable fields, validated; keys the client did not send stay absent."""
    out: dict[str, Any] = {}
    if "name" in fields:
        out["name"] = name_field(fields["name"], "name")
        if not out["name"]:
            raise InvalidInput("Task name must not be empty.", code="invalid_name")
    if "description" in fields:
        out["description"] = text_field(fields["description"], "description", LONG_TEXT)
    if "webhook_url" in fields:
        out["webhook_url"] = _webhook_url(fields["webhook_url"])
    if "unknown" in fields:
        setting = parse_setting(fields["unknown"], "unknown")
        if setting is None:
            raise InvalidInput(INVALID.format(field="unknown"), code="invalid_threshold")
        out["unknown"] = setting
    if "deploy_policy" in fields:
        out["deploy_policy"] = check_policy(fields["deploy_policy"])
    if "type" in fields and fields["type"] not in TASK_TYPES:
        raise InvalidInput(
            f"Task type must be one of {', '.join(TASK_TYPES)}.", code="invalid_task_type"
        )
    return out


def _webhook_url(value: object) -> str:
    url = text_field(value, "webhook_url", 2000, strip=True)
    if url and not url.lower().startswith(("http://", "https://")):
        raise InvalidInput("webhook_url must be an http(s) URL.", code="invalid_webhook_url")
    return url


def create_task(
    db: Session, caller: Caller, name: str, description: str = "", type: str = "multi_class"
) -> Task:
    clean = _check_fields({"name": name, "description": description, "type": type})
    task = Task(owner_id=caller.user_id, workspace_id=caller.workspace_id, type=type, **clean)
    db.add(task)
    db.flush()
    if type == "multi_label":
        _attach_negative_label(db, caller, task)
    return task


def _attach_negative_label(db: Session, caller: Caller, task: Task) -> None:
    """Tagging tasks get one automatic label for images that carry none of the tags."""
    label = Label(
        owner_id=caller.user_id,
        workspace_id=caller.workspace_id,
        name=NEGATIVE_LABEL_NAME,
        description=f"Images with none of the tags of task {task.name!r}.",
        type="tag",
    )
    db.add(label)
    db.flush()
    task.labels.append(label)
    task.negative_label_id = label.id


def update_task(db: Session, task: Task, fields: dict[str, Any]) -> Task:
    # None means "not sent" for PATCH and PUT alike (forms cannot send null).
    clean = _check_fields({k: v for k, v in fields.items() if v is not None})
    if "type" in fields and fields["type"] is not None and fields["type"] != task.type:
        raise InvalidInput("A task's type cannot change; create a new task.", code="type_fixed")
    for key, value in clean.items():
        setattr(task, key, value)
    if fields.get("production_version") is not None:
        version = int_field(fields["production_version"], "production_version")
        set_production_version(db, task, version)
    db.flush()
    return task


def set_production_version(db: Session, task: Task, version: int) -> None:
    trained_version(db, task, version)
    task.production_version = version
    task.production_pinned = True


def delete_task(db: Session, task: Task) -> list[str]:
    """Remove the task (its models cascade); returns their files' keys, to pass to
    ``purge_model_files`` after the commit."""
    keys = [k for k in db.scalars(select(Model.artifact_key).where(Model.task_id == task.id)) if k]
    negative = db.get(Label, task.negative_label_id) if task.negative_label_id else None
    db.delete(task)
    db.flush()
    # The automatic negative label belongs to its task: it goes too, unless the owner has
    # attached it to another task since.
    if negative is not None and not _attached_anywhere(db, negative.id):
        db.delete(negative)
        db.flush()
    return keys


def model_file_in_use(sessions: sessionmaker[Session], key: str) -> bool:
    """Whether a committed model row references ``key`` (a transaction begun now)."""
    with sessions() as db:
        stmt = select(Model.id).where(Model.artifact_key == key).limit(1)
        return db.scalar(stmt) is not None


def purge_model_files(sessions: sessionmaker[Session], blobs: BlobStore, keys: list[str]) -> None:
    """After the task's delete is committed: its model files go now, not at the next start's
    sweep, through the same protocol as image files (asked once the file is out of the way).
    The delete is committed already, so a failure is logged; the sweep takes what is left."""
    for key in keys:
        try:
            blobs.delete_unless(key, partial(model_file_in_use, sessions, key))
        except Exception:
            log.exception("could not remove %s after its task was deleted", key)


def _attached_anywhere(db: Session, label_id: str) -> bool:
    return bool(db.scalar(select(func.count()).where(TaskLabel.label_id == label_id)))


def add_label(db: Session, task: Task, label: Label) -> Task:
    """Attach ``label``: refused (409) if the task has a label of that name, or if in a
    categorization task some image would then carry two of its labels."""
    if label not in task.labels:
        check_attach(db, task, label)
    append_link(db, task, "labels", label)
    return task


def remove_label(db: Session, task: Task, label: Label) -> Task:
    if label.id == task.negative_label_id:
        raise InvalidInput(
            "The automatic negative label of a tagging task cannot be removed.",
            code="negative_label",
        )
    if label in task.labels:
        task.labels.remove(label)
        db.flush()
    return task
