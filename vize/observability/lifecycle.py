"""The operations part of an app's life: logging set-up, the metrics object and the
background orphan sweep (an app extension: started after the jobs, stopped before them)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from vize.observability.health import service
from vize.observability.logs import configure_logging
from vize.observability.metrics import Metrics, multiproc_dir, pool_queue_length
from vize.services.orphans import OrphanSweeper


def start_operations(app: FastAPI, state: Any) -> Callable[[], None]:
    settings = state.settings
    # In the lifespan, not in create_app: uvicorn configures its loggers in between.
    configure_logging(settings.log_format, settings.log_level)

    def queue_length() -> int:
        recognizer = service(state, "recognizer")
        return pool_queue_length(recognizer.pool) if recognizer is not None else 0

    metrics = Metrics(state.sessions, queue_length)
    app.state.vize_metrics = metrics
    ctx = service(state, "job_context")
    if ctx is not None:  # jobs run in this process: they count embedding cache lookups
        ctx.services["metrics"] = metrics
    sweeper = None
    if settings.orphan_sweep:
        sweeper = OrphanSweeper(state.sessions, state.blobs, settings).start()
    app.state.vize_sweeper = sweeper

    def stop() -> None:
        if sweeper is not None:
            sweeper.stop()
        if multiproc_dir():  # this process's live gauges no longer count
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(os.getpid())

    return stop


def observe_embeddings(ctx: Any, cached: int, computed: int) -> None:
    """The jobs' hook: count a job's embedding cache hits and misses, if metrics are on."""
    metrics = ctx.services.get("metrics") if isinstance(ctx.services, dict) else None
    if metrics is not None:
        metrics.observe_embeddings(cached, computed)
