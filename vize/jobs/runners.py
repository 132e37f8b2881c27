"""Two ways to deliver job ids: a worker thread in the server, or Celery over Redis."""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Protocol

from vize.jobs.executor import execute, reap
from vize.services import jobstore as store
from vize.services.context import JobContext

log = logging.getLogger("vize.jobs")
REAP_EVERY = 5.0


class JobRunner(Protocol):
    def submit(self, job_id: str) -> None: ...
    def start(self) -> None: ...
    def stop(self) -> None: ...


class EmbeddedRunner:
    """One worker thread: jobs run one at a time, after every restart the queue is rebuilt
    from the jobs table, so nothing queued or interrupted is forgotten."""

    def __init__(self, ctx: JobContext) -> None:
        self.ctx = ctx
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="vize-worker", daemon=True)
        self._stopping = threading.Event()

    def submit(self, job_id: str) -> None:
        self._queue.put(job_id)

    def start(self) -> None:
        with self.ctx.sessions() as db:
            for job_id in store.queued_ids(db):
                self._queue.put(job_id)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Interrupts a running job at its next progress report (the reaper requeues it
        after the restart) and waits for the thread."""
        self._stopping.set()
        self._queue.put(None)
        if self._thread.is_alive():
            self._thread.join(timeout)
        if self._thread.is_alive():  # a step with no progress report for that long
            log.warning("job runner still busy after %.0f s at shutdown", timeout)

    def _loop(self) -> None:
        last_reap = 0.0
        while not self._stopping.is_set():
            if time.monotonic() - last_reap > REAP_EVERY:
                last_reap = time.monotonic()
                self._safe(self._reap)
            try:
                job_id = self._queue.get(timeout=1.0)
            except queue.Empty:
                continue
            if job_id is not None:
                self._safe(lambda j=job_id: execute(self.ctx, j, self._stopping))

    def _reap(self) -> None:
        for job_id in reap(self.ctx):
            self._queue.put(job_id)

    @staticmethod
    def _safe(fn: object) -> None:
        try:
            fn()  # type: ignore[operator]
        except Exception:  # the worker thread must survive any one job
            log.exception("job runner error")


class CeleryRunner:
    """Deliver ids to Celery workers (``vize worker``); state stays in the database."""

    def __init__(self, broker_url: str) -> None:
        from vize.jobs.celery_app import RUN_JOB, make_celery

        self._task = RUN_JOB
        self.celery = make_celery(broker_url)  # a producer: it only sends job ids

    def submit(self, job_id: str) -> None:
        self.celery.send_task(self._task, args=[job_id])

    def start(self) -> None:
        pass

    def stop(self) -> None:
        self.celery.close()
