"""Celery wiring: the broker only carries job ids; ``execute`` does the rest from the DB."""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery import Celery
from celery.signals import worker_ready, worker_shutdown, worker_shutting_down

log = logging.getLogger("vize.jobs")
_worker_ctx: dict[str, Any] = {}


def make_celery(broker_url: str) -> Celery:
    app = Celery("vize", broker=broker_url)
    app.conf.update(
        task_acks_late=True,  # a message is acknowledged only once its job ran
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
        task_ignore_result=True,
        broker_transport_options={"visibility_timeout": 3600},
    )

    @app.task(name="vize.run_job")
    def run_job(job_id: str) -> str:
        from vize.jobs.executor import execute

        return execute(worker_context(), job_id)

    return app


def worker_context() -> Any:
    """One JobContext per worker process, built on first use."""
    if "ctx" not in _worker_ctx:
        from vize.config import Settings
        from vize.jobs.setup import build_context

        _worker_ctx["ctx"] = build_context(Settings())
    return _worker_ctx["ctx"]


def _reaper(app: Celery, stop: threading.Event) -> None:
    from vize.jobs.executor import reap
    from vize.jobs.store import HEARTBEAT_SECONDS

    while not stop.wait(HEARTBEAT_SECONDS * 2):
        try:
            for job_id in reap(worker_context()):
                app.send_task("vize.run_job", args=[job_id])
        except Exception:
            log.exception("reaper failed")


def run_worker(broker_url: str, concurrency: int = 1, loglevel: str = "INFO") -> None:
    """``vize worker``: a Celery worker plus a reaper thread that requeues dead workers' jobs."""
    app = make_celery(broker_url)
    stop = threading.Event()

    @worker_ready.connect
    def _start_reaper(**_: Any) -> None:
        threading.Thread(target=_reaper, args=(app, stop), daemon=True).start()
        # Jobs queued while no worker was up still sit in the broker; nothing else to do.

    @worker_shutdown.connect
    def _stop_reaper(**_: Any) -> None:
        stop.set()

    @worker_shutting_down.connect
    def _hand_back(**_: Any) -> None:  # graceful shutdown: running jobs to another worker
        from vize.observability.lifecycle import hand_back_jobs

        hand_back_jobs(worker_context().sessions, lambda j: app.send_task("vize.run_job", [j]))

    app.worker_main(
        [
            "worker",
            f"--loglevel={loglevel}",
            "--pool=threads",
            f"--concurrency={concurrency}",
            "--without-gossip",
            "--without-mingle",
        ]
    )
