"""The Celery app as both sides configure it; the broker only carries job ids."""

from __future__ import annotations

from celery import Celery

RUN_JOB = "vize.run_job"  # the one task: ``execute`` a job id, everything else is in the DB


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
    return app
