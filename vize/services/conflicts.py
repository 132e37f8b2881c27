"""The two rules that keep a task's labels trustworthy:

- in a categorization (``multi_class``) task an image carries at most one of the task's
  labels: a second one is refused (409 ``label_conflict``, naming both) unless the caller
  asks to move the image (``move``), and training refuses images that carry two;
- label names are unique per task, case-insensitively (409 ``label_exists``).

Labels belong to a user and may be attached to several tasks, so both rules are checked
wherever a link is made: a label put on an image, a label attached to a task, a rename.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session, aliased

from vize.db.tables import Image, ImageLabel, Label, Task, TaskLabel
from vize.errors import Conflict
from vize.services.common import append_link

SHOWN = 5  # images named in a message; the rest are counted


class LabelConflict(Conflict):
    code = "label_conflict"


class LabelExists(Conflict):
    code = "label_exists"


@dataclass(frozen=True)
class Rival:
    """A label the image already carries that shares a categorization task with another."""

    label: Label
    task: Task


def _image_name(image: Image) -> str:
    return image.file_name or image.id


def _lock(db: Session, model: type[Image] | type[Task], ids: Iterable[str]) -> None:
    """Row locks (PostgreSQL) so that two requests cannot both pass a check and then both
    write; SQLite serialises writers already."""
    wanted = sorted(set(ids))
    if wanted and db.get_bind().dialect.name != "sqlite":
        db.execute(select(model.id).where(model.id.in_(wanted)).with_for_update())


def rivals(db: Session, carried: Iterable[Label], label: Label) -> list[Rival]:
    """Which of ``carried`` share a categorization task with ``label`` (each once)."""
    carried_ids = {lbl.id: lbl for lbl in carried if lbl.id != label.id}
    if not carried_ids:
        return []
    mine, other = aliased(TaskLabel), aliased(TaskLabel)
    rows = db.execute(
        select(other.label_id, Task)
        .join(mine, and_(mine.task_id == other.task_id, mine.label_id == label.id))
        .join(Task, Task.id == other.task_id)
        .where(Task.type == "multi_class", other.label_id.in_(list(carried_ids)))
        .order_by(Task.name, Task.id)
    ).all()
    found: dict[str, Rival] = {}
    for label_id, task in rows:
        found.setdefault(label_id, Rival(carried_ids[label_id], task))
    return list(found.values())


def conflict_error(image: Image, label: Label, found: list[Rival]) -> LabelConflict:
    first = found[0]
    names = " and ".join(f"'{r.label.name}'" for r in found)
    return LabelConflict(
        f"Image '{_image_name(image)}' is already labelled {names} in the categorization task "
        f"'{first.task.name}', where an image has one label; it cannot also be "
        f"'{label.name}'. Send \"move\": true to move it from {names} to '{label.name}'.",
        extra={
            "image_id": image.id,
            "label": {"id": label.id, "name": label.name},
            "conflicting_labels": [
                {"id": r.label.id, "name": r.label.name, "task_id": r.task.id, "task": r.task.name}
                for r in found
            ],
        },
    )


def place_label(db: Session, image: Image, label: Label, *, move: bool = False) -> list[Label]:
    """Put ``label`` on ``image``. A label it carries in a shared categorization task is a
    409 ``label_conflict``, or with ``move`` is taken off; returns the labels taken off."""
    _lock(db, Image, [image.id])
    found = rivals(db, image.labels, label)
    if found and not move:
        raise conflict_error(image, label, found)
    for rival in found:
        if rival.label in image.labels:
            image.labels.remove(rival.label)
    if found:
        db.flush()
    append_link(db, image, "labels", label)
    return [r.label for r in found]


def check_new_image(db: Session, labels: list[Label], file_name: str) -> None:
    """A new image sent with two labels of one categorization task: refused, naming both."""
    for i, label in enumerate(labels):
        found = rivals(db, labels[:i], label)
        if found:
            names = " and ".join(f"'{lbl.name}'" for lbl in [found[0].label, label])
            raise LabelConflict(
                f"Image '{file_name or 'upload'}' cannot be labelled both {names}: they belong "
                f"to the categorization task '{found[0].task.name}', where an image has one "
                "label.",
                extra={
                    "label": {"id": label.id, "name": label.name},
                    "conflicting_labels": [{"id": found[0].label.id, "name": found[0].label.name}],
                },
            )


def task_conflicts(
    db: Session, task: Task, extra: Label | None = None
) -> list[tuple[Image, list[str]]]:
    """Images carrying two or more of the labels of categorization task ``task`` (plus
    ``extra``, a label about to be attached), with those labels' names; [] for tagging."""
    if task.type != "multi_class":
        return []
    labels = {lbl.id: lbl.name for lbl in task.labels}
    if extra is not None:
        labels[extra.id] = extra.name
    doubled = (
        select(ImageLabel.image_id)
        .where(ImageLabel.label_id.in_(list(labels)))
        .group_by(ImageLabel.image_id)
        .having(func.count() > 1)
    )
    if extra is not None:  # only the conflicts the new label would bring
        with_extra = select(ImageLabel.image_id).where(ImageLabel.label_id == extra.id)
        doubled = doubled.where(ImageLabel.image_id.in_(with_extra))
    images = db.scalars(
        select(Image)
        .where(Image.owner_id == task.owner_id, Image.id.in_(doubled))
        .order_by(Image.file_name, Image.id)
    ).all()
    return [
        (img, sorted(labels[lbl.id] for lbl in img.labels if lbl.id in labels)) for img in images
    ]


def describe(conflicts: list[tuple[Image, list[str]]]) -> str:
    shown = "; ".join(
        f"'{_image_name(img)}' (" + " and ".join(f"'{n}'" for n in names) + ")"
        for img, names in conflicts[:SHOWN]
    )
    more = len(conflicts) - SHOWN
    return shown + (f"; and {more} more" if more > 0 else "")


def conflicts_extra(conflicts: list[tuple[Image, list[str]]]) -> dict[str, object]:
    return {
        "images": [
            {"id": img.id, "file_name": img.file_name, "labels": names}
            for img, names in conflicts[:100]
        ],
        "images_count": len(conflicts),
    }


def check_attach(db: Session, task: Task, label: Label) -> None:
    """Attaching ``label`` to ``task``: its name must be free there, and in a categorization
    task no image may then carry two of the task's labels."""
    check_name_free(db, [task], label.name, label)
    found = task_conflicts(db, task, extra=label)
    if found:
        raise LabelConflict(
            f"{len(found)} image(s) would carry two labels of the categorization task "
            f"'{task.name}': {describe(found)}. Remove one label from each (or move them), "
            "then attach it.",
            extra=conflicts_extra(found),
        )


def check_name_free(db: Session, tasks: Iterable[Task], name: str, label: Label | None) -> None:
    """409 ``label_exists`` if another label of one of ``tasks`` has ``name`` (any case)."""
    tasks = list(tasks)
    _lock(db, Task, [t.id for t in tasks])
    key = name.casefold()
    for task in tasks:
        for other in task.labels:
            if (label is None or other.id != label.id) and other.name.casefold() == key:
                raise LabelExists(
                    f"The task '{task.name}' already has a label named '{other.name}'; "
                    "label names are unique per task (whatever the case).",
                    extra={"label_id": other.id, "task_id": task.id},
                )
