"""What each kind of job does: ``train`` a task's next model version, ``embed`` new images."""

from __future__ import annotations

import logging
import time
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from vize.db.tables import Embedding, Image, Job, Model, Task
from vize.jobs.executor import JobContext, Progress, job_handler
from vize.services import training
from vize.services.recognition import Recognizer

log = logging.getLogger("vize.jobs")


def _views(ctx: JobContext) -> tuple[str, ...]:
    return ("orig", "flip") if ctx.settings.flip_augment else ("orig",)


def _notify(ctx: JobContext, event: str, task_id: str, model_id: str) -> None:
    notifier = ctx.services.get("notifier")
    if notifier is not None:
        notifier(ctx, event, task_id, model_id)


def _locked(db: Session, job: Job) -> tuple[Task | None, Model | None]:
    """The job's task, then its model, locked in that order (PostgreSQL; SQLite locks the
    whole file): deleting a task locks it, then its models (the cascade). Updating them in
    the other order deadlocked with a task deleted during its training."""
    task = db.get(Task, job.task_id, with_for_update=True) if job.task_id else None
    model = db.get(Model, job.model_id, with_for_update=True) if job.model_id else None
    return task, model


def _begin(ctx: JobContext, job: Job) -> tuple[Any, str, list[str]] | None:
    with ctx.sessions.begin() as db:
        task, model = _locked(db, job)
        if model is None or task is None:
            return None
        if model.train_status == "trained":  # a duplicate delivery after success
            return None
        model.train_status, model.error = "training", ""
        task.last_train_status = "training"
        training.check_trainable(db, task, ctx.settings.min_images_per_label)
        ts = training.collect(db, task)
        return ts, task.type, list(ctx.settings.backbone_list)


@job_handler("train", on_failure=lambda ctx, job, error: training_failed(ctx, job, error))
def run_training(ctx: JobContext, job: Job, progress: Progress) -> str:
    recognizer: Recognizer = ctx.services["trainer_recognizer"]
    begun = _begin(ctx, job)
    if begun is None:
        return "Nothing to do (model already trained or task deleted)."
    ts, kind, backbones = begun
    assert job.task_id and job.model_id
    _notify(ctx, "training_started", job.task_id, job.model_id)
    started = time.perf_counter()
    progress(0.02, f"Preparing {len(ts.image_ids)} images")
    emb = training.ensure_embeddings(
        ctx.sessions,
        ctx.blobs,
        recognizer,
        list(zip(ts.image_ids, ts.blob_keys, strict=True)),
        _views(ctx),
        progress=lambda f, m: progress(0.02 + 0.8 * f, m),
    )
    embed_seconds = time.perf_counter() - started
    if emb.gone:
        ts = _after_deletions(ctx, job, ts, emb.gone)
    progress(0.85, "Training and evaluating the model")
    report, artifact = training.fit(ts, emb, kind, backbones, _views(ctx))
    fit_seconds = time.perf_counter() - started - embed_seconds
    key = f"models/{job.task_id}/{job.model_id}.npz"
    ctx.blobs.put(key, artifact)  # written before the row says "trained": never half a model
    metrics = training.shape_metrics(
        report, ts.labels, ts, backbones, time.perf_counter() - started
    )
    metrics["embed_seconds"] = round(embed_seconds, 3)
    metrics["fit_seconds"] = round(fit_seconds, 3)
    version = _commit_model(ctx, job, key, metrics, len(ts.image_ids))
    if version is None:  # the task was deleted meanwhile: keep no file for it
        ctx.blobs.delete(key)
        return "The task was deleted during training; nothing was kept."
    _notify(ctx, "training_succeeded", job.task_id, job.model_id)
    return f"Model version {version} trained, accuracy {metrics['accuracy']}."


def _after_deletions(
    ctx: JobContext, job: Job, ts: training.TrainingSet, gone: list[str]
) -> training.TrainingSet:
    """Images deleted during the embedding are left out; the labels must still have enough
    (else the training fails with the same 400-style reason as at the start)."""
    with ctx.sessions() as db:
        task = db.get(Task, job.task_id)
        if task is not None:
            training.check_trainable(db, task, ctx.settings.min_images_per_label)
    log.info("training %s: %d image(s) deleted meanwhile, left out", job.id, len(gone))
    return training.without(ts, gone)


def _commit_model(
    ctx: JobContext, job: Job, key: str, metrics: dict[str, Any], n: int
) -> int | None:
    with ctx.sessions.begin() as db:
        task, model = _locked(db, job)
        if model is None or task is None:  # deleted with its task (cascade)
            return None
        model.metrics, model.artifact_key, model.images_count = metrics, key, n
        model.train_status, model.progress, model.finished = "trained", 1.0, training.now()
        task.last_train_status = "trained"
        if not task.production_pinned:
            task.production_version = model.version
        return model.version


def training_failed(ctx: JobContext, job: Job, error: str) -> None:
    with ctx.sessions.begin() as db:
        task, model = _locked(db, job)
        if model is not None and model.train_status != "trained":
            model.train_status, model.error, model.finished = "failed", error, training.now()
        if task is not None:
            task.last_train_status = "failed"
    if job.task_id and job.model_id:
        _notify(ctx, "training_failed", job.task_id, job.model_id)


@job_handler("embed")
def run_embedding(ctx: JobContext, job: Job, progress: Progress) -> str:
    """Embed the owner's images that have no cached vector yet, so training starts warm."""
    recognizer: Recognizer = ctx.services["trainer_recognizer"]
    first = recognizer.backbones[0]
    with ctx.sessions() as db:
        cached = select(Embedding.image_id).where(
            Embedding.backbone == first, Embedding.view == "orig"
        )
        rows = db.execute(
            select(Image.id, Image.blob_key)
            .where(Image.owner_id == job.owner_id, Image.id.not_in(cached))
            .order_by(Image.created)
        ).all()
    images = [(image_id, key) for image_id, key in rows]
    training.ensure_embeddings(
        ctx.sessions,
        ctx.blobs,
        recognizer,
        images,
        _views(ctx),
        progress=lambda f, m: progress(f, m),
    )
    return f"Embedded {len(images)} images."
