"""Data health of a task: near-duplicate groups, suspected mislabels, test images leaked
from the training set (``GET /v2/task/{id}/insights/``, the web "Data health" tab).

A training stores each image's cross-validated prediction (the head that scored an image never
saw it); the report is then computed from that and from the image descriptors of
``vize.services.similarity``, after each training and on request, and stored. Reading it
drops what changed since: deleted images, images relabelled or kept by the owner."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from vize.db.states import TrainStatus
from vize.db.tables import (
    Image,
    ImageLabel,
    Job,
    Label,
    Model,
    Task,
    TaskInsight,
    TaskLabel,
)
from vize.errors import NotFound
from vize.ml import noise
from vize.services import similarity as sim
from vize.services.common import get_owned
from vize.services.recognition import Recognizer
from vize.services.tasks import get_task
from vize.services.workspaces import Caller
from vize.storage import BlobStore

log = logging.getLogger("vize.insights")
NEIGHBOURS = 5
SMOOTHING = 0.2  # tags: weight of the neighbours' predictions (the best of 0.2/0.35/0.5)
MAX_SUSPECTS = 200
MAX_GROUPS = 500


# -- stored by the training ------------------------------------------------------------------
def predictions_of(
    image_ids: list[str],
    label_ids: list[str],
    y: Any,
    kind: str,
    probs: np.ndarray,
    cleaned: np.ndarray | None = None,
) -> dict[str, Any]:
    """Per image: its given label ids, the probabilities suspicion is computed from (the
    cleaned cross-validation's when there is one, ``vize.ml.noise``; those >= 0.001,
    rounded: a few entries per image whatever the number of labels) and, for single-label
    images, ``plain``: the training's own cross-validated probability of the given label."""
    out: dict[str, Any] = {}
    for r, image_id in enumerate(image_ids):
        if kind == "multi_class":
            given = [y[r]]
        else:
            given = [label_ids[j] for j in np.flatnonzero(np.asarray(y[r]))]
        scored = probs[r] if cleaned is None else cleaned[r]
        p = {label_ids[j]: round(float(v), 4) for j, v in enumerate(scored) if v >= 1e-3}
        out[image_id] = {"given": given, "probs": p}
        if kind == "multi_class":
            out[image_id]["plain"] = round(float(probs[r][label_ids.index(given[0])]), 6)
    return out


def after_training(
    sessions: sessionmaker[Session],
    blobs: BlobStore,
    recognizer: Recognizer,
    job: Job,
    ts: Any,
    kind: str,
    report: dict[str, Any],
    features: tuple[np.ndarray, list[int]] | None = None,
) -> None:
    """The training job's hook, called once its model is committed (``ts`` its training
    set, ``report`` its evaluation, ``features`` its embeddings and their block widths):
    store the cross-validated predictions, recompute the data health report. A failure here
    is logged, never the training's."""
    task_id, model_id = job.task_id, job.model_id
    if task_id is None or model_id is None:
        return
    try:
        probs = report.get("cv_probs")
        predictions: dict[str, Any] = {}
        if probs is not None:
            labels = [lbl.id for lbl in ts.labels]
            first = np.asarray(probs)
            cleaned = None
            if kind == "multi_class" and features is not None:
                x, dims = features
                cleaned = noise.cleaned_cv_probs(x, ts.y, labels, ts.image_ids, first, dims)
            predictions = predictions_of(ts.image_ids, labels, ts.y, kind, first, cleaned)
        with sessions.begin() as db:
            model = db.get(Model, model_id)
            if model is None or model.train_status != TrainStatus.TRAINED:
                return  # not committed: the report stays that of the model before
            row = _row(db, task_id, lock=True)
            if row is None:
                return
            row.model_id, row.predictions = model_id, predictions
        recompute(sessions, blobs, recognizer, task_id)
    except Exception:
        log.exception("data-health report of task %s after its training failed", task_id)


def _row(db: Session, task_id: str, lock: bool = False) -> TaskInsight | None:
    """The task's row, created on first use (None: the task is gone)."""
    if db.get(Task, task_id) is None:
        return None
    row = db.get(TaskInsight, task_id, with_for_update=lock)
    if row is None:
        row = TaskInsight(task_id=task_id, predictions={}, report={}, kept={})
        db.add(row)
        db.flush()
    return row


# -- computing the report --------------------------------------------------------------------
def recompute(
    sessions: sessionmaker[Session], blobs: BlobStore, recognizer: Recognizer, task_id: str
) -> dict[str, Any]:
    with sessions() as db:
        task = db.get(Task, task_id)
        if task is None:
            raise NotFound("Task not found.")
        space, kind = task.workspace_id, task.type
        rows = sim.task_image_rows(db, space, task_id)
        info = _image_info(db, task_id, [i for i, _, _ in rows])
        stored = db.get(TaskInsight, task_id)
        predictions = dict(stored.predictions) if stored is not None else {}
    vectors = sim.load_vectors(sessions, blobs, recognizer, rows, space)
    report = build_report(vectors, info, predictions, kind)
    with sessions.begin() as db:
        row = _row(db, task_id, lock=True)
        if row is not None:
            row.report, row.computed = report, datetime.now(UTC)
            report = {**report, "computed": row.computed.isoformat()}
    return report


def _image_info(db: Session, task_id: str, ids: list[str]) -> dict[str, tuple[list[str], bool]]:
    """Image id -> (its label ids in the task, sorted; test image)."""
    task_labels = select(TaskLabel.label_id).where(TaskLabel.task_id == task_id)
    rows = db.execute(
        select(Image.id, Image.test_image, ImageLabel.label_id)
        .join(ImageLabel, ImageLabel.image_id == Image.id)
        .where(Image.id.in_(ids), ImageLabel.label_id.in_(task_labels))
    ).all()
    out: dict[str, tuple[list[str], bool]] = {}
    for image_id, test, label_id in rows:
        out.setdefault(image_id, ([], bool(test)))[0].append(label_id)
    for labels, _ in out.values():
        labels.sort()
    return out


def build_report(
    vectors: sim.Vectors,
    info: dict[str, tuple[list[str], bool]],
    predictions: dict[str, Any],
    kind: str = "multi_class",
) -> dict[str, Any]:
    hood = sim.neighbourhood(vectors, NEIGHBOURS)
    return {
        "near_duplicates": _groups(vectors.ids, hood.pairs, info),
        "suspected_mislabels": suspects(vectors.ids, hood, info, predictions, kind),
        "test_leaks": _leaks(vectors.ids, hood.pairs, info),
    }


def _groups(
    ids: list[str], pairs: list[tuple[int, int, float]], info: dict[str, Any]
) -> list[dict[str, Any]]:
    """Connected groups of near pairs (union-find), most similar first."""
    parent = list(range(len(ids)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    best: dict[int, float] = {}
    for i, j, _ in pairs:
        parent[find(i)] = find(j)
    for i, _, s in pairs:
        root = find(i)
        best[root] = max(best.get(root, 0.0), s)
    members: dict[int, list[str]] = {}
    for i in range(len(ids)):
        if find(i) in best:
            members.setdefault(find(i), []).append(ids[i])
    groups: list[dict[str, Any]] = [
        {
            "images": m,
            "similarity": round(best[root], 6),
            "labels_differ": len({tuple(info.get(i, ([], False))[0]) for i in m}) > 1,
        }
        for root, m in members.items()
    ]
    groups.sort(key=lambda g: (-g["labels_differ"], -g["similarity"]))
    return groups[:MAX_GROUPS]


def _leaks(
    ids: list[str], pairs: list[tuple[int, int, float]], info: dict[str, Any]
) -> list[dict[str, Any]]:
    """Test images with a near copy among the training images: their score is not a test."""
    out: list[dict[str, Any]] = []
    for i, j, s in pairs:
        ti, tj = info.get(ids[i], ([], False))[1], info.get(ids[j], ([], False))[1]
        if ti != tj:
            test, train = (ids[i], ids[j]) if ti else (ids[j], ids[i])
            out.append({"test_image": test, "train_image": train, "similarity": round(s, 6)})
    out.sort(key=lambda leak: -float(leak["similarity"]))
    return out


def suspects(
    all_ids: list[str],
    hood: sim.Neighbourhood,
    info: dict[str, tuple[list[str], bool]],
    predictions: dict[str, Any],
    kind: str = "multi_class",
) -> list[dict[str, Any]]:
    """Images whose label the rest of the data disagrees with, most suspicious first.

    Single-label images: suspicion is one minus the probability of the given label in the
    cleaned cross-validation (``vize.ml.noise``: heads that never saw the image nor the
    images the training's own cross-validation found least likely); without one, in the
    training's own. Tags: each image's cross-validated probabilities are smoothed with
    those of its nearest neighbours by content, ``(1 - a) p + a * mean(neighbours' p)``
    (their predictions, not their labels, which may be wrong too), and suspicion is the
    largest disagreement between a tag and its smoothed probability. BENCHMARKS.md has the
    measurements (cifar10-dev, 10 % of labels flipped)."""
    rows = []
    for r, image_id in enumerate(all_ids):
        pred = predictions.get(image_id)
        if pred is None or image_id not in info:
            continue
        if sorted(pred["given"]) != info[image_id][0]:  # relabelled since the training
            continue
        own = pred["probs"]
        if kind == "multi_class":
            rows.append(_suspect(image_id, pred["given"], own, own, kind, pred.get("plain")))
            continue
        near = [all_ids[j] for j in hood.near[r] if all_ids[j] in predictions]
        weights = [
            max(float(w), 0.0)
            for j, w in zip(hood.near[r], hood.sims[r], strict=True)
            if all_ids[j] in predictions
        ]
        smooth = _smoothed(own, [predictions[i]["probs"] for i in near], weights)
        rows.append(_suspect(image_id, pred["given"], own, smooth, kind))
    rows.sort(key=lambda row: -float(row["suspicion"]))
    return rows[:MAX_SUSPECTS]


def _smoothed(
    own: dict[str, float], others: list[dict[str, float]], weights: list[float]
) -> dict[str, float]:
    total = sum(weights)
    if not others or total <= 0:
        return dict(own)
    keys = set(own).union(*others)
    mean = {
        k: sum(w * o.get(k, 0.0) for o, w in zip(others, weights, strict=True)) / total
        for k in keys
    }
    return {k: (1 - SMOOTHING) * own.get(k, 0.0) + SMOOTHING * mean[k] for k in keys}


def _suspect(
    image_id: str,
    given: list[str],
    own: dict[str, float],
    smooth: dict[str, float],
    kind: str,
    plain: float | None = None,
) -> dict[str, Any]:
    if kind == "multi_class":
        label = given[0]
        suspicion = 1.0 - smooth.get(label, 0.0)
        others = {k: v for k, v in own.items() if k != label}
        predicted = max(others, key=lambda k: others[k]) if others else label
        # The training's own cross-validated probability (stored before: the same).
        given_prob = own.get(label, 0.0) if plain is None else plain
    else:  # the tag whose smoothed probability disagrees most with the image's tags
        gaps = {k: abs((k in given) - v) for k, v in smooth.items()}
        gaps.update({k: 1.0 - smooth.get(k, 0.0) for k in given if k not in smooth})
        predicted = max(gaps, key=lambda k: gaps[k])
        suspicion = gaps[predicted]
        given_prob = 1.0 - abs((predicted in given) - own.get(predicted, 0.0))
    return {
        "id": image_id,
        "labels": given,
        "given_prob": round(given_prob, 6),
        "predicted": {"id": predicted, "prob": round(own.get(predicted, 0.0), 6)},
        "suspicion": round(suspicion, 6),
    }


# -- reading it ------------------------------------------------------------------------------
def get_insights(
    sessions: sessionmaker[Session],
    blobs: BlobStore,
    recognizer: Recognizer,
    caller: Caller,
    task_id: str,
    recompute_now: bool = False,
) -> dict[str, Any]:
    """The stored report (computed now if there is none yet, or if asked), as of now."""
    with sessions() as db:
        task = get_task(db, caller, task_id)
        stored = db.get(TaskInsight, task.id)
        report = dict(stored.report) if stored is not None and stored.computed else None
        if report is not None and stored is not None and stored.computed is not None:
            report["computed"] = stored.computed.isoformat()
    if report is None or recompute_now:
        report = recompute(sessions, blobs, recognizer, task.id)
    with sessions() as db:
        return current(db, task.id, report)


def current(db: Session, task_id: str, report: dict[str, Any]) -> dict[str, Any]:
    """The report minus what changed since it was computed, with label names."""
    row = db.get(TaskInsight, task_id)
    kept = set((row.kept if row is not None else {}) or {})
    ids = {i for g in report.get("near_duplicates", []) for i in g["images"]}
    ids |= {s["id"] for s in report.get("suspected_mislabels", [])}
    ids |= {leak["test_image"] for leak in report.get("test_leaks", [])}
    ids |= {leak["train_image"] for leak in report.get("test_leaks", [])}
    info = _image_info(db, task_id, list(ids))
    names: dict[str, str] = {
        lid: name
        for lid, name in db.execute(
            select(Label.id, Label.name).join(TaskLabel).where(TaskLabel.task_id == task_id)
        ).all()
    }
    groups = []
    for g in report.get("near_duplicates", []):
        alive = [i for i in g["images"] if i in info]
        if len(alive) > 1:
            differ = len({tuple(info[i][0]) for i in alive}) > 1
            groups.append({**g, "images": alive, "labels_differ": differ})
    mislabels = []
    for s in report.get("suspected_mislabels", []):
        if s["id"] in kept or s["id"] not in info or info[s["id"]][0] != sorted(s["labels"]):
            continue
        mislabels.append(
            {
                **s,
                "labels": [{"id": lid, "name": names.get(lid, "")} for lid in s["labels"]],
                "predicted": {**s["predicted"], "name": names.get(s["predicted"]["id"], "")},
            }
        )
    leaks = [
        leak
        for leak in report.get("test_leaks", [])
        if leak["train_image"] in info and info.get(leak["test_image"], ([], False))[1]
    ]
    model = db.get(Model, row.model_id) if row is not None and row.model_id else None
    return {
        "task_id": task_id,
        # The training whose cross-validation the suspects come from (None: never trained).
        "model_version": model.version if model is not None else None,
        "near_duplicates": groups,
        "suspected_mislabels": mislabels,
        "test_leaks": leaks,
        "computed": report.get("computed"),
    }


def keep(sessions: sessionmaker[Session], caller: Caller, task_id: str, image_id: str) -> None:
    """The owner says this image's label is right: it is no longer suspected."""
    with sessions.begin() as db:
        task = get_task(db, caller, task_id)
        image = get_owned(db, Image, image_id, caller.workspace_id, "Image")
        row = _row(db, task.id, lock=True)
        if row is not None:
            row.kept = {**(row.kept or {}), image.id: datetime.now(UTC).isoformat()}
