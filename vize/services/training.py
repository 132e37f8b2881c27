"""Training: checks, model versions, the embedding cache, and the training job itself."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from vize.db.engine import savepoint
from vize.db.tables import Embedding, Image, ImageLabel, Job, Label, Model, Task, User
from vize.errors import Conflict, InvalidInput, NotFound
from vize.jobs import store
from vize.ml.predictor import HeadKind
from vize.ml.trainer import TrainParams, evaluate, train_head
from vize.observability.metrics import observe_embeddings
from vize.services.recognition import Recognizer, cached_embeddings
from vize.storage import BlobStore

EMBED_BATCH = 8
ProgressFn = Callable[[float, str | None], None]


# -- starting a training ---------------------------------------------------------------------
def label_counts(db: Session, task: Task) -> dict[str, int]:
    ids = [lbl.id for lbl in task.labels]
    rows = db.execute(
        select(ImageLabel.label_id, func.count())
        .where(ImageLabel.label_id.in_(ids))
        .group_by(ImageLabel.label_id)
    ).all()
    counts = dict.fromkeys(ids, 0)
    counts.update({lid: n for lid, n in rows})
    return counts


def check_trainable(db: Session, task: Task, min_images: int) -> None:
    trainable = [lbl for lbl in task.labels if lbl.id != task.negative_label_id]
    if len(trainable) < 2 and task.type == "multi_class":
        raise InvalidInput(
            "A task needs at least 2 labels to train; add labels first.", code="not_enough_labels"
        )
    if not trainable:
        raise InvalidInput(
            "A tagging task needs at least 1 tag to train.", code="not_enough_labels"
        )
    counts = label_counts(db, task)
    short = [lbl for lbl in trainable if counts[lbl.id] < min_images]
    if short:
        names = ", ".join(f"'{lbl.name}' has {counts[lbl.id]}" for lbl in short)
        raise InvalidInput(
            f"Every label needs at least {min_images} images: {names}.",
            code="not_enough_images",
            extra={
                "labels": [
                    {
                        "id": lbl.id,
                        "name": lbl.name,
                        "images_count": counts[lbl.id],
                        "required": min_images,
                    }
                    for lbl in short
                ]
            },
        )


def active_training(db: Session, task_id: str) -> Job | None:
    return db.scalar(
        select(Job).where(Job.task_id == task_id, Job.kind == "train", Job.state.in_(store.ACTIVE))
    )


def start_training(db: Session, user: User, task: Task, min_images: int) -> tuple[Model, Job]:
    """Reserve version n+1 and queue its job in one transaction (so a retry reuses both)."""
    check_trainable(db, task, min_images)
    if active_training(db, task.id) is not None:
        raise Conflict(
            "This task is already training; wait for it to finish.", code="training_in_progress"
        )
    latest = db.scalar(select(func.max(Model.version)).where(Model.task_id == task.id)) or 0
    model = Model(task_id=task.id, version=latest + 1, train_status="queued")
    try:
        with savepoint(db):
            db.add(model)
            db.flush()
    except IntegrityError:
        raise Conflict(
            "Another training of this task just started.", code="training_in_progress"
        ) from None
    job = store.create_job(db, "train", user.id, task_id=task.id, model_id=model.id)
    task.last_train_status = "queued"
    return model, job


def latest_training(db: Session, task: Task) -> dict[str, Any]:
    job = db.scalar(
        select(Job)
        .where(Job.task_id == task.id, Job.kind == "train")
        .order_by(Job.created.desc())
        .limit(1)
    )
    if job is None:
        raise NotFound("This task has never been trained.", code="no_training")
    model = db.get(Model, job.model_id) if job.model_id else None
    return {
        "job_id": job.id,
        "state": job.state,
        "progress": job.progress,
        "message": job.message,
        "error": job.error or (model.error if model else ""),
        "model_id": job.model_id,
        "model_version": model.version if model else None,
    }


# -- the embedding cache ---------------------------------------------------------------------
@dataclass
class EmbeddingSet:
    """Embeddings for a list of images: per backbone, per view, rows in ``image_ids`` order."""

    image_ids: list[str]
    vectors: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)
    gone: list[str] = field(default_factory=list)  # deleted meanwhile: no file to embed


def ensure_embeddings(
    sessions: Any,
    blobs: BlobStore,
    recognizer: Recognizer,
    images: list[tuple[str, str]],
    views: tuple[str, ...],
    progress: ProgressFn | None = None,
) -> EmbeddingSet:
    """Embed every (image id, blob key) not cached yet, in batches; return all vectors."""
    ids = [image_id for image_id, _ in images]
    keys = dict(images)
    with sessions() as db:
        have = {
            (bb, view): cached_embeddings(db, ids, bb, view)
            for bb in recognizer.backbones
            for view in views
        }
    missing = [i for i in ids if any(i not in have[k] for k in have)]
    chunks = [missing[s : s + EMBED_BATCH] for s in range(0, len(missing), EMBED_BATCH)]
    # Chunks run in the recognizer's bounded pool: every core works on a training, and a
    # classification request waits for at most one chunk, not for the whole training.
    futures = [
        recognizer.pool.submit(_embed_chunk, blobs, recognizer, [(i, keys[i]) for i in c], views)
        for c in chunks
    ]
    done = 0
    try:
        for chunk, future in zip(chunks, futures, strict=True):
            new = future.result()
            _store_vectors(sessions, new)
            for (image_id, bb, view), vec in new.items():
                have[(bb, view)][image_id] = vec
            done += len(chunk)
            if progress:
                progress(done / len(missing), f"Embedded {done} of {len(missing)} new images")
    finally:
        for future in futures:
            future.cancel()
    gone = [i for i in missing if any(i not in cache for cache in have.values())]
    if gone:
        dropped = set(gone)
        ids = [i for i in ids if i not in dropped]
    observe_embeddings(recognizer, len(images) - len(missing), len(missing))  # metrics hook
    out = EmbeddingSet(ids, gone=gone)
    for key, cache in have.items():
        out.vectors[key] = np.stack([cache[i] for i in ids]) if ids else np.zeros((0, 0))
    return out


def _embed_chunk(
    blobs: BlobStore, recognizer: Recognizer, chunk: list[tuple[str, str]], views: tuple[str, ...]
) -> dict[tuple[str, str, str], np.ndarray]:
    present, prepared = [], []
    for image_id, key in chunk:
        try:
            data = blobs.get(key)
        except KeyError:  # the image was deleted after the training collected it
            continue
        present.append(image_id)
        prepared.append(recognizer.prepare(data))
    out: dict[tuple[str, str, str], np.ndarray] = {}
    if not prepared:
        return out
    for view in views:
        emb = recognizer.embed_prepared(prepared, flip=view == "flip")
        for bb, matrix in emb.items():
            for image_id, vec in zip(present, matrix, strict=True):
                out[(image_id, bb, view)] = vec.astype(np.float32)
    return out


def _store_vectors(sessions: Any, new: dict[tuple[str, str, str], np.ndarray]) -> None:
    """One multi-row INSERT; rows another worker stored meanwhile are kept as they are."""
    rows = [
        {"image_id": i, "backbone": bb, "view": view, "vector": vec.tobytes()}
        for (i, bb, view), vec in new.items()
    ]
    with sessions() as db:
        insert = pg_insert if db.bind.dialect.name == "postgresql" else sqlite_insert
        stmt = insert(Embedding).values(rows).on_conflict_do_nothing()
        try:
            db.execute(stmt)
            db.commit()
        except IntegrityError:  # an image deleted meanwhile: its vectors are not needed
            db.rollback()


# -- the training set --------------------------------------------------------------------------
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
        .where(ImageLabel.label_id.in_(label_ids), Image.owner_id == task.owner_id)
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


def now() -> datetime:
    return datetime.now(UTC)


def fit(
    ts: TrainingSet, emb: EmbeddingSet, kind: str, backbones: list[str], views: tuple[str, ...]
) -> tuple[dict[str, Any], bytes]:
    """Evaluate on the held-out split, then fit the deployed head on every image."""
    X = np.concatenate([emb.vectors[(bb, "orig")] for bb in backbones], axis=1)
    aug = (
        np.concatenate([emb.vectors[(bb, "flip")] for bb in backbones], axis=1)
        if "flip" in views
        else None
    )
    dims = [emb.vectors[(bb, "orig")].shape[1] for bb in backbones]
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
    return report, head.to_bytes()


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
        tests.append(
            {
                "image_id": row["id"],
                "true": true,
                "predicted": predicted,
                "prob": row.get("score"),
                "correct": row["correct"],
            }
        )
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
        "backbone": "+".join(backbones),
        "train_seconds": round(seconds, 3),
    }
