"""Training: the checks and the queueing of a training, its status, and the training job."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from vize.db.engine import savepoint
from vize.db.states import ACTIVE_JOB_STATES, JobKind, TrainStatus
from vize.db.tables import ImageLabel, Job, Model, Task
from vize.errors import Conflict, InvalidInput, NotFound
from vize.ml.backbones import split_feature
from vize.ml.predictor import WHOLE_VIEW
from vize.services import conflicts, deploy, insights, jobstore, trainset
from vize.services.context import JobContext, ProgressFn
from vize.services.embeddings import ensure_embeddings
from vize.services.workspaces import Caller

log = logging.getLogger("vize.jobs")


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
    doubled = conflicts.task_conflicts(db, task)
    if doubled:  # learning from both labels would teach the model two answers for one image
        raise conflicts.LabelConflict(
            f"{len(doubled)} image(s) carry two labels of this categorization task, where an "
            f"image has one: {conflicts.describe(doubled)}. Keep one label on each, then train.",
            extra=conflicts.conflicts_extra(doubled),
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
        select(Job).where(
            Job.task_id == task_id,
            Job.kind == JobKind.TRAIN,
            Job.state.in_(ACTIVE_JOB_STATES),
        )
    )


def start_training(db: Session, caller: Caller, task: Task, min_images: int) -> tuple[Model, Job]:
    """Reserve version n+1 and queue its job in one transaction (so a retry reuses both)."""
    check_trainable(db, task, min_images)
    if active_training(db, task.id) is not None:
        raise Conflict(
            "This task is already training; wait for it to finish.", code="training_in_progress"
        )
    latest = db.scalar(select(func.max(Model.version)).where(Model.task_id == task.id)) or 0
    model = Model(task_id=task.id, version=latest + 1, train_status=TrainStatus.QUEUED)
    try:
        with savepoint(db):
            db.add(model)
            db.flush()
    except IntegrityError:
        raise Conflict(
            "Another training of this task just started.", code="training_in_progress"
        ) from None
    job = jobstore.create_job(
        db, JobKind.TRAIN, caller.user_id, task.workspace_id, task_id=task.id, model_id=model.id
    )
    task.last_train_status = TrainStatus.QUEUED
    return model, job


def latest_training(db: Session, task: Task) -> dict[str, Any]:
    job = db.scalar(
        select(Job)
        .where(Job.task_id == task.id, Job.kind == JobKind.TRAIN)
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
        # Whether the training deployed its version, and why (None until it has trained).
        "deploy": model.deploy_decision if model else None,
    }


def now() -> datetime:
    return datetime.now(UTC)


def model_key(job: Job) -> str:
    """Where the trained head of the job's model version is stored."""
    return f"models/{job.task_id}/{job.model_id}.npz"


# -- the training job ------------------------------------------------------------------------
def run(ctx: JobContext, job: Job, progress: ProgressFn) -> str:
    """The ``train`` job: embed, evaluate and fit, store the head, commit the version."""
    begun = _begin(ctx, job)
    if begun is None:
        return "Nothing to do (model already trained or task deleted)."
    ts, kind = begun
    with _started_notice(ctx, job):
        return _train(ctx, job, ts, kind, progress)


@contextmanager
def _started_notice(ctx: JobContext, job: Job) -> Iterator[None]:
    """The "training started" notification, only for a training still running after
    ``notify_start_after_seconds``: a short one sends a single notice, when it ends."""
    delay = ctx.settings.notify_start_after_seconds
    if delay <= 0:
        _notify(ctx, "training_started", job)
        yield
        return
    if not (job.task_id and job.model_id):
        yield
        return
    # Ids, not the job row: the timer's thread must not touch the caller's ORM objects.
    args = ("training_started", job.task_id, job.model_id)
    timer = threading.Timer(delay, ctx.notifier, args=args)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        timer.join()


def _train(
    ctx: JobContext, job: Job, ts: trainset.TrainingSet, kind: str, progress: ProgressFn
) -> str:
    backbones = list(ctx.recognizer.backbones)  # feature names: backbone and precision
    started = time.perf_counter()
    progress(0.02, f"Preparing {len(ts.image_ids)} images")
    emb = ensure_embeddings(
        ctx.sessions,
        ctx.blobs,
        ctx.recognizer,
        list(zip(ts.image_ids, ts.blob_keys, strict=True)),
        ctx.views,
        progress=lambda f, m: progress(0.02 + 0.8 * f, m),
    )
    embed_seconds = time.perf_counter() - started
    if emb.gone:
        ts = _after_deletions(ctx, job, ts, emb.gone)
    progress(0.85, "Training and evaluating the model")
    report, artifact = trainset.fit(ts, emb, kind, backbones, ctx.views)
    fit_seconds = time.perf_counter() - started - embed_seconds
    key = model_key(job)
    ctx.blobs.put(key, artifact)  # written before the row says "trained": never half a model
    metrics = trainset.shape_metrics(
        report, ts.labels, ts, backbones, time.perf_counter() - started
    )
    # What serving reproduces (also stored in the head): feature names say the precision.
    metrics["features"] = {
        "backbones": [split_feature(name)[0] for name in backbones],
        "precision": [split_feature(name)[1] for name in backbones],
        "view": WHOLE_VIEW,
    }
    metrics["embed_seconds"] = round(embed_seconds, 3)
    metrics["fit_seconds"] = round(fit_seconds, 3)
    try:
        committed = _commit_model(ctx, job, key, metrics, ts)
    except LabelsChanged:
        ctx.blobs.delete(key)
        raise
    if committed is None:  # the task was deleted meanwhile: keep no file for it
        ctx.blobs.delete(key)
        return "The task was deleted during training; nothing was kept."
    # Data health from this training's cross-validation, only once its model is the one
    # committed: a training that fails at the commit (labels changed) leaves the report of
    # the model before it. The hook logs its own failures, never the training's.
    features = trainset.features(emb, backbones)
    insights.after_training(
        ctx.sessions, ctx.blobs, ctx.recognizer, job, ts, kind, report, features
    )
    _notify(ctx, "training_succeeded", job)
    version, decision = committed
    accuracy = deploy.pct(metrics.get("accuracy"))
    return f"Model version {version} trained, accuracy {accuracy}. {decision['reason']}"


def _check_labels_kept(task: Task, ts: trainset.TrainingSet) -> None:
    """A label deleted (or detached) while the task trained would stay in the head and be
    answered with no name: the training fails naming it instead (the task lock is held)."""
    current = {label.id for label in task.labels}
    gone = [label.name for label in ts.labels if label.id not in current]
    if gone:
        names = ", ".join(repr(name) for name in gone)
        raise LabelsChanged(
            f"Label(s) {names} left the task during the training; train again without them."
        )


def failed(ctx: JobContext, job: Job, error: str) -> None:
    """The ``train`` job failed (or its workers kept dying): the model and task say so."""
    with ctx.sessions.begin() as db:
        task, model = _locked(db, job)
        if model is not None and model.train_status != TrainStatus.TRAINED:
            model.train_status, model.error, model.finished = TrainStatus.FAILED, error, now()
        if task is not None:
            task.last_train_status = TrainStatus.FAILED
    _notify(ctx, "training_failed", job)


def _notify(ctx: JobContext, event: str, job: Job) -> None:
    if job.task_id and job.model_id:
        ctx.notifier(event, job.task_id, job.model_id)


def _locked(db: Session, job: Job) -> tuple[Task | None, Model | None]:
    """The job's task, then its model, locked in that order (PostgreSQL; SQLite locks the
    whole file): deleting a task locks it, then its models (the cascade). Updating them in
    the other order deadlocked with a task deleted during its training."""
    task = db.get(Task, job.task_id, with_for_update=True) if job.task_id else None
    model = db.get(Model, job.model_id, with_for_update=True) if job.model_id else None
    return task, model


def _begin(ctx: JobContext, job: Job) -> tuple[trainset.TrainingSet, str] | None:
    with ctx.sessions.begin() as db:
        task, model = _locked(db, job)
        if model is None or task is None:
            return None
        if model.train_status == TrainStatus.TRAINED:  # a duplicate delivery after success
            return None
        model.train_status, model.error = TrainStatus.TRAINING, ""
        task.last_train_status = TrainStatus.TRAINING
        check_trainable(db, task, ctx.settings.min_images_per_label)
        return trainset.collect(db, task), task.type


def _after_deletions(
    ctx: JobContext, job: Job, ts: trainset.TrainingSet, gone: list[str]
) -> trainset.TrainingSet:
    """Images deleted during the embedding are left out; the labels must still have enough
    (else the training fails with the same 400-style reason as at the start)."""
    with ctx.sessions() as db:
        task = db.get(Task, job.task_id)
        if task is not None:
            check_trainable(db, task, ctx.settings.min_images_per_label)
    log.info("training %s: %d image(s) deleted meanwhile, left out", job.id, len(gone))
    return trainset.without(ts, gone)


class LabelsChanged(Conflict):
    code = "labels_changed"


def _commit_model(
    ctx: JobContext, job: Job, key: str, metrics: dict[str, Any], ts: trainset.TrainingSet
) -> tuple[int, dict[str, Any]] | None:
    """The version as trained, and deployed or not by the task's policy (with the reason)."""
    with ctx.sessions.begin() as db:
        task, model = _locked(db, job)
        if model is None or task is None:  # deleted with its task (cascade)
            return None
        _check_labels_kept(task, ts)
        model.metrics, model.artifact_key = metrics, key
        model.images_count = len(ts.image_ids)
        model.train_status, model.progress, model.finished = TrainStatus.TRAINED, 1.0, now()
        task.last_train_status = TrainStatus.TRAINED
        current = _deployed(db, task)
        decision = deploy.decide(task.deploy_policy, model.version, metrics, current)
        model.deploy_decision = decision
        if decision["deployed"]:
            task.production_version = model.version
        return model.version, decision


def _deployed(db: Session, task: Task) -> tuple[int, dict[str, Any]] | None:
    """The version in production and its metrics, if one is."""
    if task.production_version < 0:
        return None
    model = db.scalar(
        select(Model).where(Model.task_id == task.id, Model.version == task.production_version)
    )
    if model is None or model.train_status != TrainStatus.TRAINED:
        return None
    return model.version, dict(model.metrics or {})
