"""Run one job by id: claim it, keep its heartbeat, report progress, record the outcome."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import traceback
from enum import StrEnum
from typing import Protocol

from vize.db.tables import Job
from vize.errors import VizeError
from vize.jobs.handlers import HANDLERS, FailureHook
from vize.observability.logs import log_job_event
from vize.services import jobstore as store
from vize.services.context import JobContext

log = logging.getLogger("vize.jobs")


class Outcome(StrEnum):
    """How one ``execute`` call ended, as seen by its worker."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"  # another worker has the job, or it is no longer queued
    LOST = "lost"  # taken away while running (requeued as stale)


class JobObserver(Protocol):
    """Told of each job this process claims (``vize worker``'s metrics)."""

    def job_started(self, kind: str) -> None: ...

    def job_finished(self, kind: str, outcome: str, seconds: float) -> None: ...


class JobLost(Exception):
    """The job was taken away from this worker (requeued as stale), or the worker is shutting
    down (the job stays running until the reaper requeues it); stop without writing."""


class Progress:
    """Progress reports plus a heartbeat thread, so a long step never looks like a dead worker."""

    def __init__(
        self, ctx: JobContext, job_id: str, worker: str, cancel: threading.Event | None = None
    ) -> None:
        self.ctx, self.job_id, self.worker, self._cancel = ctx, job_id, worker, cancel
        self._value: float | None = None
        self._message: str | None = None
        self._lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{job_id}", daemon=True)

    def __enter__(self) -> Progress:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def __call__(self, value: float, message: str | None = None) -> None:
        self._value, self._message = value, message
        if self._lost or (self._cancel is not None and self._cancel.is_set()):
            raise JobLost(self.job_id)

    def _run(self) -> None:
        while not self._stop.wait(store.HEARTBEAT_SECONDS):
            self.flush()

    def flush(self) -> None:
        try:
            with self.ctx.sessions() as db:
                ok = store.beat(db, self.job_id, self.worker, self._value, self._message)
        except Exception:  # a transient DB error must not kill the heartbeat
            log.exception("heartbeat failed for job %s", self.job_id)
            return
        if not ok:
            self._lost = True


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


def execute(
    ctx: JobContext,
    job_id: str,
    cancel: threading.Event | None = None,
    observer: JobObserver | None = None,
) -> Outcome:
    """Run the job if this worker can claim it; returns how it ended. ``cancel``: set, it
    stops the job at its next progress report (server shutdown). ``observer``: told when a
    claimed job starts and ends (not of skipped deliveries)."""
    worker = worker_name()
    with ctx.sessions() as db:
        if not store.claim(db, job_id, worker):
            return Outcome.SKIPPED
        job = db.get(Job, job_id)
        assert job is not None
        db.expunge(job)
    started = time.monotonic()
    if observer is not None:
        observer.job_started(job.kind)
    outcome = Outcome.FAILED  # if _run itself raises (the database is gone)
    try:
        outcome = _run(ctx, job, worker, cancel, started)
    finally:
        if observer is not None:
            observer.job_finished(job.kind, outcome, time.monotonic() - started)
    return outcome


def _run(
    ctx: JobContext, job: Job, worker: str, cancel: threading.Event | None, started: float
) -> Outcome:
    handler, on_failure = HANDLERS[job.kind]
    log_job_event(job, "started", worker)
    try:
        with Progress(ctx, job.id, worker, cancel) as progress:
            message = handler(ctx, job, progress)
    except JobLost:
        log_job_event(job, Outcome.LOST, worker, started)
        return Outcome.LOST
    except Exception as exc:
        error = exc.detail if isinstance(exc, VizeError) else f"{type(exc).__name__}: {exc}"
        if not isinstance(exc, VizeError):
            log.error("job %s (%s) failed:\n%s", job.id, job.kind, traceback.format_exc())
        record_failure(ctx, job, error, on_failure)
        log_job_event(job, Outcome.FAILED, worker, started)
        return Outcome.FAILED
    with ctx.sessions.begin() as db:
        ours = store.finish(db, job.id, worker, message)
    log_job_event(job, Outcome.SUCCEEDED if ours else Outcome.LOST, worker, started)
    return Outcome.SUCCEEDED if ours else Outcome.LOST


def record_failure(ctx: JobContext, job: Job, error: str, hook: FailureHook | None) -> None:
    with ctx.sessions.begin() as db:
        store.fail(db, job.id, error)
    if hook is not None:
        hook(ctx, job, error)


def reap(ctx: JobContext) -> list[str]:
    """Requeue jobs of dead workers; fail those out of attempts. Returns ids to deliver."""
    with ctx.sessions() as db:
        requeued, failed = store.reap_stale(db)
    for job_id in failed:
        with ctx.sessions() as db:
            job = db.get(Job, job_id)
            if job is not None:
                db.expunge(job)
        hook = HANDLERS[job.kind][1] if job is not None and job.kind in HANDLERS else None
        if job is not None and hook is not None:
            hook(ctx, job, job.error)
    return requeued
