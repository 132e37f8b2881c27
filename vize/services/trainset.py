"""The training set of a task (images, labels, held-out flags) and fitting a head on it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from vize.db.tables import Image, ImageLabel, Label, Task
from vize.ml import openset
from vize.ml.predictor import HeadKind
from vize.ml.trainer import TrainParams, evaluate, train_head
from vize.services.embeddings import EmbeddingSet


@dataclass
class TrainingSet:
    image_ids: list[str]
    blob_keys: list[str]
    labels: list[Label]
    y: Any  # list of label ids (multi_class) or 0/1 matrix (multi_label)
    pinned: list[bool]
    skipped: int


def collect(db: Session, task: Task) -> TrainingSet:
    labels = list(task.labels)
    label_ids = {lbl.id for lbl in labels}
    rows = db.execute(
        select(Image.id, Image.blob_key, Image.test_image, ImageLabel.label_id)
        .join(ImageLabel, ImageLabel.image_id == Image.id)
        .where(ImageLabel.label_id.in_(label_ids), Image.workspace_id == task.workspace_id)
        .order_by(Image.id)
    ).all()
    per_image: dict[str, tuple[str, bool, set[str]]] = {}
    for image_id, key, test, label_id in rows:
        per_image.setdefault(image_id, (key, bool(test), set()))[2].add(label_id)
    if task.type == "multi_class":
        return _collect_single(per_image, labels)
    return _collect_multi(per_image, labels, task.negative_label_id)


def _collect_single(per_image: dict[str, Any], labels: list[Label]) -> TrainingSet:
    ids, keys, y, pinned, skipped = [], [], [], [], 0
    for image_id, (key, test, lset) in per_image.items():
        if len(lset) != 1:  # one image under two categories: ambiguous, left out
            skipped += 1
            continue
        ids.append(image_id)
        keys.append(key)
        y.append(next(iter(lset)))
        pinned.append(test)
    used = [lbl for lbl in labels if lbl.id in set(y)]
    return TrainingSet(ids, keys, used, y, pinned, skipped)


def _collect_multi(
    per_image: dict[str, Any], labels: list[Label], negative: str | None
) -> TrainingSet:
    has_negative = any(negative in lset for _, _, lset in per_image.values())
    used = [lbl for lbl in labels if lbl.id != negative or has_negative]
    col = {lbl.id: j for j, lbl in enumerate(used)}
    ids, keys, pinned = [], [], []
    y = np.zeros((len(per_image), len(used)), dtype=np.float64)
    for r, (image_id, (key, test, lset)) in enumerate(per_image.items()):
        tags = lset - {negative}
        for lid in tags:
            y[r, col[lid]] = 1.0
        if not tags and negative in col:  # the negative label means "none of the tags"
            y[r, col[negative]] = 1.0
        ids.append(image_id)
        keys.append(key)
        pinned.append(test)
    return TrainingSet(ids, keys, used, y, pinned, 0)


def without(ts: TrainingSet, gone: list[str]) -> TrainingSet:
    """The training set minus images deleted while it was being embedded."""
    drop = set(gone)
    keep = [r for r, image_id in enumerate(ts.image_ids) if image_id not in drop]
    y = ts.y[keep] if isinstance(ts.y, np.ndarray) else [ts.y[r] for r in keep]
    return TrainingSet(
        [ts.image_ids[r] for r in keep],
        [ts.blob_keys[r] for r in keep],
        ts.labels,
        y,
        [ts.pinned[r] for r in keep],
        ts.skipped,
    )


def features(emb: EmbeddingSet, backbones: list[str]) -> tuple[np.ndarray, list[int]]:
    """The images' embeddings side by side (rows in ``emb.image_ids`` order), block widths."""
    X = np.concatenate([emb.vectors[(bb, "orig")] for bb in backbones], axis=1)
    return X, [emb.vectors[(bb, "orig")].shape[1] for bb in backbones]


def fit(
    ts: TrainingSet, emb: EmbeddingSet, kind: str, backbones: list[str], views: tuple[str, ...]
) -> tuple[dict[str, Any], bytes]:
    """Evaluate on the held-out split, then fit the deployed head on every image."""
    X, dims = features(emb, backbones)
    aug = (
        np.concatenate([emb.vectors[(bb, "flip")] for bb in backbones], axis=1)
        if "flip" in views
        else None
    )
    label_ids = [lbl.id for lbl in ts.labels]
    params = TrainParams()
    head_kind = cast(HeadKind, kind)
    report = evaluate(
        X,
        ts.y,
        label_ids,
        head_kind,
        ts.image_ids,
        params,
        pinned_test=ts.pinned,
        block_dims=dims,
        augment=aug,
    )
    head = train_head(
        X,
        ts.y,
        label_ids,
        head_kind,
        params,
        backbones=backbones,
        block_dims=dims,
        augment=aug,
    )
    # Unknown answers: thresholds from the cross-validated predictions, kept in the artifact.
    cv_logits, cv_fold = report.pop("cv_logits", None), report.pop("cv_fold", None)
    calibration = openset.calibrate(
        head,
        X,
        openset.target_matrix(head, ts.y),
        None if cv_logits is None else np.asarray(cv_logits, dtype=np.float64),
        None if cv_fold is None else np.asarray(cv_fold, dtype=np.int64),
    )
    names = [lbl.name for lbl in ts.labels]
    report["thresholds"] = openset.summary(calibration, names, label_ids)
    return report, openset.bundle(head, calibration)


def shape_metrics(
    report: dict[str, Any],
    labels: list[Label],
    ts: TrainingSet,
    backbones: list[str],
    seconds: float,
) -> dict[str, Any]:
    names = {lbl.id: lbl.name for lbl in labels}
    per_label = [
        {"label_id": lid, "name": names.get(lid, lid), **vals}
        for lid, vals in report.get("per_label", {}).items()
    ]
    tests = []
    for row in report.get("test", []):
        true = row["true"] if isinstance(row["true"], list) else [row["true"]]
        predicted = row["predicted"]
        test = {
            "image_id": row["id"],
            "true": true,
            "predicted": predicted,
            "prob": row.get("score"),
            "correct": row["correct"],
        }
        if "scores" in row:  # tagging: every tag's probability (the threshold slider)
            test["scores"] = {lid: round(p, 6) for lid, p in row["scores"].items()}
        tests.append(test)
    return {
        "accuracy": report.get("accuracy"),
        "cv_accuracy": report.get("cv_accuracy"),
        "cv_folds": report.get("cv_folds"),
        "per_label": per_label,
        "confusion_matrix": {
            "labels": [lbl.id for lbl in labels],
            "names": [lbl.name for lbl in labels],
            "matrix": report.get("confusion_matrix", []),
        },
        "test_predictions": tests,
        "train_images": report.get("n_train"),
        "test_images": report.get("n_test"),
        "skipped_images": ts.skipped,
        "thresholds": report.get("thresholds"),
        "backbone": "+".join(backbones),
        "train_seconds": round(seconds, 3),
    }
