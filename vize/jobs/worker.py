"""``vize worker``: a Celery worker process running jobs, plus a reaper of dead workers' jobs."""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery import Celery
from celery.signals import worker_ready, worker_shutdown, worker_shutting_down

from vize.config import Settings
from vize.jobs.celery_app import RUN_JOB, make_celery
from vize.jobs.executor import execute, reap
from vize.jobs.setup import build_context
from vize.observability.lifecycle import hand_back_jobs
from vize.observability.metrics import WorkerMetrics
from vize.observability.scrape import ScrapeServer
from vize.services.context import JobContext
from vize.services.jobstore import HEARTBEAT_SECONDS

log = logging.getLogger("vize.jobs")


def worker_app(settings: Settings, ctx: JobContext, metrics: WorkerMetrics | None = None) -> Celery:
    """The Celery app of a worker: the producer's app with the task that runs jobs."""
    app = make_celery(settings.broker_url)

    @app.task(name=RUN_JOB)
    def run_job(job_id: str) -> str:
        return execute(ctx, job_id, observer=metrics)

    return app


def _reaper(app: Celery, ctx: JobContext, stop: threading.Event) -> None:
    while not stop.wait(HEARTBEAT_SECONDS * 2):
        try:
            for job_id in reap(ctx):
                app.send_task(RUN_JOB, args=[job_id])
        except Exception:
            log.exception("reaper failed")


def run_worker(settings: Settings, concurrency: int = 1, loglevel: str = "INFO") -> None:
    """Run until the worker is stopped; ``settings`` are the process's (``vize worker``)."""
    ctx = build_context(settings)
    if settings.warm_up:  # the first job should not pay for loading every backbone
        ctx.recognizer.warm_up()
    metrics = WorkerMetrics()
    ctx.recognizer.on_embeddings = metrics.observe_embeddings
    app = worker_app(settings, ctx, metrics)
    scrape = (  # before the worker starts: a port in use fails the start, not later
        ScrapeServer(settings.worker_metrics_address, settings, metrics.exposition)
        if settings.worker_metrics_address
        else None
    )
    stop = threading.Event()
    reaper = threading.Thread(target=_reaper, args=(app, ctx, stop), name="vize-reaper")

    @worker_ready.connect
    def _start_reaper(**_: Any) -> None:
        # Jobs queued while no worker was up still sit in the broker; nothing else to do.
        reaper.start()

    @worker_shutdown.connect
    def _stop_reaper(**_: Any) -> None:
        stop.set()
        if reaper.is_alive():
            reaper.join()

    @worker_shutting_down.connect
    def _hand_back(**_: Any) -> None:
        # Graceful shutdown: the running jobs go to another worker now, not after the reaper.
        hand_back_jobs(ctx.sessions, lambda job_id: app.send_task(RUN_JOB, args=[job_id]))

    try:
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
    finally:
        stop.set()
        if scrape is not None:
            scrape.close()
        ctx.recognizer.close()
