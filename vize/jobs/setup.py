"""Build the job context and runner for a process (server or worker)."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from vize.config import Settings
from vize.db.engine import make_engine, make_sessionmaker
from vize.jobs.runners import CeleryRunner, EmbeddedRunner, JobRunner
from vize.services import jobstore
from vize.services.context import JobContext
from vize.services.notify import Notifier
from vize.services.recognition import Recognizer
from vize.services.workspaces import Caller
from vize.storage import BlobStore, open_blob_store


def build_context(
    settings: Settings,
    sessions: sessionmaker[Session] | None = None,
    blobs: BlobStore | None = None,
    recognizer: Recognizer | None = None,
) -> JobContext:
    """``recognizer``: share the server's (embedded mode) instead of loading a second copy of
    every backbone; a worker process builds its own with ``VIZE_TRAIN_THREADS`` threads."""
    if sessions is None:
        sessions = make_sessionmaker(make_engine(settings))
    return JobContext(
        settings=settings,
        sessions=sessions,
        blobs=blobs or open_blob_store(settings),
        recognizer=recognizer or Recognizer(settings, pool_size=max(1, settings.train_threads)),
        notifier=Notifier(settings, sessions),
    )


def make_runner(settings: Settings, ctx: JobContext | None) -> JobRunner:
    """Celery with a broker (the workers have their own context), else a server thread."""
    if settings.broker_url:
        return CeleryRunner(settings.broker_url)
    assert ctx is not None, "an embedded runner needs the job context"
    return EmbeddedRunner(ctx)


def queue_embedding(sessions: sessionmaker[Session], runner: JobRunner, caller: Caller) -> None:
    """Queue (and deliver) an embed job for the workspace's new images, unless one is
    pending."""
    with sessions.begin() as db:
        job_id = jobstore.queue_embedding(db, caller.user_id, caller.workspace_id)
    if job_id is not None:
        runner.submit(job_id)
