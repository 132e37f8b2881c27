"""The job store: job rows and their state transitions, each one atomic in the database so
any process (server thread or Celery worker) may run a job."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from vize.db.states import ACTIVE_JOB_STATES, JobKind, JobState
from vize.db.tables import Job

HEARTBEAT_SECONDS = 2.0
# A running job whose heartbeat is older than this lost its worker (killed, crashed, host gone).
STALE_SECONDS = 15.0


def now() -> datetime:
    return datetime.now(UTC)


def create_job(db: Session, kind: JobKind, owner_id: str, workspace_id: str, **fields: Any) -> Job:
    """``owner_id``: who started it; ``workspace_id``: whose data it works on."""
    job = Job(
        kind=kind, owner_id=owner_id, workspace_id=workspace_id, state=JobState.QUEUED, **fields
    )
    db.add(job)
    db.flush()
    return job


def claim(db: Session, job_id: str, worker: str) -> bool:
    """queued -> running for exactly one claimant; a duplicate delivery finds nothing to do."""
    t = now()
    res = db.execute(
        update(Job)
        .where(Job.id == job_id, Job.state == JobState.QUEUED)
        .values(
            state=JobState.RUNNING,
            attempts=Job.attempts + 1,
            worker=worker,
            started=t,
            heartbeat=t,
        )
    )
    db.commit()
    return bool(res.rowcount)  # type: ignore[attr-defined]


def beat(
    db: Session, job_id: str, worker: str, progress: float | None, message: str | None
) -> bool:
    """Refresh the heartbeat; False if the job is no longer ours (requeued or cancelled)."""
    values: dict[str, Any] = {"heartbeat": now()}
    if progress is not None:
        values["progress"] = max(0.0, min(1.0, progress))
    if message is not None:
        values["message"] = message[:500]
    res = db.execute(
        update(Job)
        .where(Job.id == job_id, Job.state == JobState.RUNNING, Job.worker == worker)
        .values(**values)
    )
    db.commit()
    return bool(res.rowcount)  # type: ignore[attr-defined]


def finish(db: Session, job_id: str, worker: str, message: str = "") -> bool:
    """False when the job was no longer this worker's (requeued or handed back meanwhile)."""
    res = db.execute(
        update(Job)
        .where(Job.id == job_id, Job.worker == worker, Job.state == JobState.RUNNING)
        .values(state=JobState.SUCCEEDED, progress=1.0, finished=now(), message=message[:500])
    )
    return bool(res.rowcount)  # type: ignore[attr-defined]


def fail(db: Session, job_id: str, error: str) -> None:
    db.execute(
        update(Job)
        .where(Job.id == job_id, Job.state.in_(ACTIVE_JOB_STATES))
        .values(state=JobState.FAILED, finished=now(), error=error[:4000])
    )


def reap_stale(db: Session, stale_seconds: float = STALE_SECONDS) -> tuple[list[str], list[str]]:
    """Requeue running jobs whose worker died, or fail them once out of attempts.

    Returns (requeued ids, failed ids); the caller delivers the requeued ones again."""
    cutoff = now() - timedelta(seconds=stale_seconds)
    stale = list(
        db.scalars(
            select(Job).where(
                Job.state == JobState.RUNNING, or_(Job.heartbeat.is_(None), Job.heartbeat < cutoff)
            )
        )
    )
    requeued, failed = [], []
    for job in stale:
        if job.attempts >= job.max_attempts:
            reason = f"Worker stopped responding {job.attempts} times; giving up."
            job.state, job.error, job.finished = JobState.FAILED, reason, now()
            failed.append(job.id)
        else:
            job.state, job.worker = JobState.QUEUED, ""
            job.message = "Retrying after a worker loss."
            requeued.append(job.id)
    db.commit()
    return requeued, failed


def queued_ids(db: Session) -> list[str]:
    stmt = select(Job.id).where(Job.state == JobState.QUEUED).order_by(Job.created)
    return list(db.scalars(stmt))


def queue_embedding(db: Session, owner_id: str, workspace_id: str) -> str | None:
    """A new embed job for the workspace's images, or None: one pending per workspace is
    enough, it picks up every image still missing."""
    pending = db.scalar(
        select(Job.id).where(
            Job.workspace_id == workspace_id,
            Job.kind == JobKind.EMBED,
            Job.state == JobState.QUEUED,
        )
    )
    if pending:
        return None
    return create_job(db, JobKind.EMBED, owner_id, workspace_id).id
