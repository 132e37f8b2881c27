"""Build the job context and runner for a process (server or worker)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from vize.config import Settings
from vize.db.engine import make_engine, make_sessionmaker
from vize.db.tables import Job
from vize.jobs import handlers as _handlers  # noqa: F401  (registers the job kinds)
from vize.jobs import store
from vize.jobs.executor import JobContext
from vize.jobs.runners import CeleryRunner, EmbeddedRunner, JobRunner
from vize.services.notify import Notifier
from vize.services.recognition import Recognizer
from vize.storage import open_blob_store


def build_context(
    settings: Settings, sessions: Any = None, blobs: Any = None, recognizer: Any = None
) -> JobContext:
    """``recognizer``: share the server's (embedded mode) instead of loading a second copy of
    every backbone; a worker process builds its own with ``VIZE_TRAIN_THREADS`` threads."""
    if sessions is None:
        sessions = make_sessionmaker(make_engine(settings))
    ctx = JobContext(
        settings=settings,
        sessions=sessions,
        blobs=blobs or open_blob_store(settings),
    )
    ctx.services["trainer_recognizer"] = recognizer or Recognizer(
        settings, pool_size=max(1, settings.train_threads)
    )
    ctx.services["notifier"] = Notifier(settings)
    return ctx


def make_runner(ctx: JobContext) -> JobRunner:
    if ctx.settings.broker_url:
        return CeleryRunner(ctx.settings.broker_url)
    return EmbeddedRunner(ctx)


def queue_embedding(ctx: JobContext, runner: JobRunner, owner_id: str) -> None:
    """One pending embed job per user is enough: it picks up every image still missing."""
    with ctx.sessions.begin() as db:
        pending = db.scalar(
            select(Job.id).where(
                Job.owner_id == owner_id, Job.kind == "embed", Job.state == "queued"
            )
        )
        if pending:
            return
        job_id = store.create_job(db, "embed", owner_id).id
    runner.submit(job_id)
