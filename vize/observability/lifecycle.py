"""The operations part of an app's life: the background orphan sweep, and the running jobs
handed back at a shutdown (started after the jobs, stopped before them)."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from vize.db.states import JobState
from vize.db.tables import Job
from vize.observability.metrics import multiproc_dir

if TYPE_CHECKING:
    from vize.api.deps import AppState


def start_operations(state: AppState) -> Callable[[], None]:
    """Starts the background sweep; returns what the shutdown runs before the job runner
    stops (the lifespan registers it last)."""
    sweeper = state.services.sweeper
    if sweeper is not None:
        sweeper.start()

    def stop() -> None:
        if sweeper is not None:
            sweeper.stop()
        # Before the job runner stops: its job then ends at its next heartbeat instead of
        # holding the shutdown for up to 30 s, and waits in the queue.
        hand_back_jobs(state.sessions)
        if multiproc_dir():  # this process's live gauges no longer count
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(os.getpid())

    return stop


def hand_back_jobs(
    sessions: sessionmaker[Session], submit: Callable[[str], None] | None = None
) -> list[str]:
    """Graceful shutdown: the jobs this process is running go back to the queue at once
    (not after the reaper's 15 s), without spending one of their attempts. The running
    handler finds the job no longer its own at its next heartbeat (``JobLost``) and stops
    without writing. ``submit`` delivers them again (Celery); the embedded runner picks
    queued jobs up when a server starts. Returns their ids."""
    mine = f"{socket.gethostname()}:{os.getpid()}:"  # the executor's worker_name() prefix
    running = (Job.state == JobState.RUNNING, Job.worker.startswith(mine, autoescape=True))
    try:
        with sessions.begin() as db:
            ids = list(db.scalars(select(Job.id).where(*running)))
            if ids:
                db.execute(
                    update(Job)
                    .where(Job.id.in_(ids), *running)
                    .values(state=JobState.QUEUED, worker="", attempts=Job.attempts - 1,
                            message="Handed back at a shutdown; waiting for a worker.")
                )  # fmt: skip
    except Exception:  # the database is gone too: the reaper will requeue them later
        logging.getLogger("vize.jobs").exception("could not hand back running jobs")
        return []
    for job_id in ids:
        logging.getLogger("vize.job").info(
            "job %s handed back", job_id,
            extra={"event": "job", "job_id": job_id, "job_state": "handed_back"},
        )  # fmt: skip
        if submit is not None:
            submit(job_id)
    return ids
