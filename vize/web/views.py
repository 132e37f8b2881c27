"""View models: the data of the pages, gathered from the services and shaped for templates."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from vize.api.schemas import model_out
from vize.db.states import DeployPolicy, TrainStatus
from vize.db.tables import Label, Task
from vize.errors import NotFound
from vize.services import images as images_service
from vize.services import labels as labels_service
from vize.services import models as models_service
from vize.services.workspaces import Caller

HEAT_STEPS = 10
DEPLOY_POLICIES = [
    (
        DeployPolicy.IF_BETTER.value,
        "Deploy only if better",
        "The new version replaces the deployed one only if its cross-validated accuracy is "
        "higher (recommended).",
    ),
    (DeployPolicy.ALWAYS.value, "Always deploy", "Every newly trained version is deployed."),
    (DeployPolicy.NEVER.value, "Never deploy automatically", "You choose the version by hand."),
]


def policy_title(policy: str) -> str:
    return next((title for value, title, _ in DEPLOY_POLICIES if value == policy), policy)


@dataclass(frozen=True)
class Pager:
    page: int
    page_size: int
    count: int

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.count / self.page_size))

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.page_size

    @property
    def first_item(self) -> int:
        return min(self.count, self.offset + 1)

    @property
    def last_item(self) -> int:
        return min(self.count, self.offset + self.page_size)


def clamp_page(page: int) -> int:
    return max(1, min(page, 1_000_000))


@dataclass(frozen=True)
class LabelRow:
    id: str
    name: str
    images: int
    required: int
    is_negative: bool

    @property
    def ready(self) -> bool:
        return self.images >= self.required

    @property
    def missing(self) -> int:
        return max(0, self.required - self.images)


def label_rows(db: Session, task: Task, required: int) -> list[LabelRow]:
    counts = labels_service.counts(db, [lbl.id for lbl in task.labels])
    return [
        LabelRow(lbl.id, lbl.name, counts[lbl.id][0], required, lbl.id == task.negative_label_id)
        for lbl in task.labels
    ]


def task_label(task: Task, label_id: str) -> Label:
    """A label of this task (404 for anything else, including another user's label)."""
    for label in task.labels:
        if label.id == label_id:
            return label
    raise NotFound("Label not found in this task.")


def other_labels(db: Session, caller: Caller, task: Task) -> list[Label]:
    """The workspace's labels not yet attached to ``task`` (for 'attach existing')."""
    attached = {lbl.id for lbl in task.labels}
    page = labels_service.list_labels(db, caller, 0, 1000)
    return [lbl for lbl in page.items if lbl.id not in attached]


def task_models(db: Session, task: Task) -> list[dict[str, Any]]:
    """Every model version of the task, newest first, in the API's JSON shape."""
    return [model_out(m) for m in models_service.task_models(db, task)]


def task_summaries(db: Session, caller: Caller, tasks: list[Task]) -> list[dict[str, Any]]:
    """One row per task for the task list: counts, deployed version and its accuracy."""
    deployed = models_service.deployed_models(db, tasks)
    rows = []
    for task in tasks:
        images = images_service.list_images(db, caller, 0, 0, task_id=task.id).count
        model = deployed.get(task.id)
        rows.append(
            {
                "task": task,
                "labels": [lbl.name for lbl in task.labels],
                "images": images,
                "accuracy": model.metrics.get("accuracy") if model else None,
            }
        )
    return rows


def pick_model(models: list[dict[str, Any]], version: int | None, deployed: int) -> Any:
    """The version asked for, else the deployed one, else the newest trained one."""
    trained = [m for m in models if m["train_state"] == TrainStatus.TRAINED]
    for wanted in (version, deployed):
        for model in models:
            if wanted is not None and model["version"] == wanted:
                return model
    return trained[0] if trained else None


def heatmap(confusion: dict[str, Any] | None) -> dict[str, Any] | None:
    """The confusion matrix as rows of cells with a row-normalised intensity step (0..10)."""
    if not confusion or not confusion.get("matrix"):
        return None
    names = list(confusion.get("names") or confusion.get("labels") or [])
    rows = []
    for i, counts in enumerate(confusion["matrix"]):
        total = sum(counts) or 1
        cells = [
            {
                "count": n,
                "share": n / total,
                "step": round(HEAT_STEPS * n / total),
                "hit": i == j,
                "predicted": names[j] if j < len(names) else str(j),
            }
            for j, n in enumerate(counts)
        ]
        rows.append({"name": names[i] if i < len(names) else str(i), "cells": cells})
    return {"names": names, "rows": rows}


def misclassified(db: Session, caller: Caller, metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """Wrong test predictions, with label names instead of ids, and the image as it is now
    (its file name and test flag; None once deleted) for the larger view and its actions."""
    names = _label_names(metrics)
    wrong = [p for p in metrics.get("test_predictions") or [] if not p.get("correct")]
    found = images_service.images_by_id(db, caller, [str(p.get("image_id")) for p in wrong])
    out = []
    for pred in wrong:
        predicted = pred.get("predicted")
        if isinstance(predicted, list):  # tagging: the tags predicted
            predicted_text = ", ".join(names.get(t, str(t)) for t in predicted) or "no tag"
            predicted_id = predicted[0] if predicted else ""
        else:
            predicted_text, predicted_id = names.get(predicted, str(predicted)), predicted
        out.append(
            {
                "image_id": pred.get("image_id"),
                "image": found.get(str(pred.get("image_id"))),
                "true": ", ".join(names.get(t, str(t)) for t in pred.get("true") or []),
                "predicted": predicted_text,
                "predicted_id": predicted_id,
                "prob": pred.get("prob"),
            }
        )
    return out


def threshold_data(metrics: dict[str, Any], task_type: str) -> dict[str, Any] | None:
    """The stored test predictions, compact, for the threshold slider (recomputed in the
    browser): per test image its true label ids and the predicted id with its probability
    (categorization) or every tag's probability (tagging). None when there is nothing."""
    preds = metrics.get("test_predictions") or []
    labels = [
        {"id": row.get("label_id"), "name": row.get("name")}
        for row in metrics.get("per_label") or []
    ]
    rows: list[dict[str, Any]] = []
    for p in preds:
        if task_type == "multi_label":
            if not isinstance(p.get("scores"), dict):
                return None  # trained before the scores were kept
            rows.append({"t": p.get("true") or [], "s": p["scores"]})
        elif isinstance(p.get("prob"), float | int):
            rows.append({"t": p.get("true") or [], "p": p.get("predicted"), "s": p["prob"]})
    if not rows or not labels:
        return None
    return {"kind": task_type, "labels": labels, "rows": rows}


def _label_names(metrics: dict[str, Any]) -> dict[Any, str]:
    names: dict[Any, str] = {}
    cm = metrics.get("confusion_matrix") or {}
    names.update(zip(cm.get("labels") or [], cm.get("names") or [], strict=False))
    for row in metrics.get("per_label") or []:
        names[row.get("label_id")] = row.get("name", "")
    return names
