"""Prometheus metrics for ``/metrics`` (prometheus-client, text format).

Two kinds:
- Counted by this process as things happen: requests by route template and status, request
  and classify latency, embedding cache lookups, the inference pool's queue. With several
  worker processes on one machine set ``PROMETHEUS_MULTIPROC_DIR`` (an empty folder, the
  same for all of them): each process writes its values there and a scrape of any of them
  sums them all.
- Read from the database at scrape time, hence the same on every replica (aggregate with
  ``max``, not ``sum``): jobs by state, training duration, images classified.

One ``Metrics`` per app, one ``WorkerMetrics`` per ``vize worker``: each its own registry, no
module-level state."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from vize.db.states import JobKind, JobState
from vize.db.tables import Job, Usage

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
JOB_BUCKETS = (0.5, 1, 2.5, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200)
TRAINING_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200)
JOB_STATES = tuple(JobState)


def multiproc_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class Metrics:
    def __init__(
        self, sessions: sessionmaker[Session], pool_queue: Callable[[], int] | None = None
    ) -> None:
        self.sessions = sessions
        self.pool_queue = pool_queue or (lambda: 0)
        self.registry = CollectorRegistry()
        reg = self.registry
        self.requests = Counter(
            "vize_http_requests", "HTTP requests answered, by route template and status.",
            ["method", "route", "status"], registry=reg,
        )  # fmt: skip
        self.latency = Histogram(
            "vize_http_request_duration_seconds", "Time to answer a request, by route template.",
            ["route"], buckets=LATENCY_BUCKETS, registry=reg,
        )  # fmt: skip
        self.classify_latency = Histogram(
            "vize_classify_duration_seconds", "Time to answer a classify request (any status).",
            buckets=LATENCY_BUCKETS, registry=reg,
        )  # fmt: skip
        self.embedding_cache = Counter(
            "vize_embedding_cache_lookups",
            "Images a training or embed job needed, by whether their embedding was cached.",
            ["result"], registry=reg,
        )  # fmt: skip
        self.queue = Gauge(
            "vize_inference_queue_length", "Tasks waiting for the inference pool.",
            registry=reg, multiprocess_mode="livesum",
        )  # fmt: skip
        self.database = DatabaseCollector(sessions)
        if multiproc_dir() is None:
            reg.register(self.database)

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(route).observe(seconds)
        if route.rstrip("/").endswith("classify"):
            self.classify_latency.observe(seconds)
        self.queue.set(self.pool_queue())

    def observe_embeddings(self, cached: int, computed: int) -> None:
        self.embedding_cache.labels("hit").inc(cached)
        self.embedding_cache.labels("miss").inc(computed)

    def exposition(self) -> bytes:
        self.queue.set(self.pool_queue())
        directory = multiproc_dir()
        if directory is None:
            return generate_latest(self.registry)
        # Every process's files, plus the database's view, read now.
        scrape = CollectorRegistry()
        MultiProcessCollector(scrape, path=directory)
        scrape.register(self.database)
        return generate_latest(scrape)


class DatabaseCollector(Collector):
    """Cluster-wide figures read from the database at each scrape (a few indexed queries)."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    def collect(self) -> Iterable[Metric]:
        with self.sessions() as db:
            by_state = dict(
                db.execute(select(Job.state, func.count()).group_by(Job.state)).tuples().all()
            )
            trainings = db.execute(
                select(Job.started, Job.finished).where(
                    Job.kind == JobKind.TRAIN, Job.state == JobState.SUCCEEDED,
                    Job.finished.is_not(None), Job.started.is_not(None),
                )
            ).all()  # fmt: skip
            classified = db.scalar(select(func.coalesce(func.sum(Usage.classifications), 0)))
        jobs = GaugeMetricFamily("vize_jobs", "Jobs in the database by state.", labels=["state"])
        for state in sorted(set(JOB_STATES) | set(by_state)):
            jobs.add_metric([state], by_state.get(state, 0))
        yield jobs
        yield _training_histogram([(f - s).total_seconds() for s, f in trainings])
        images = GaugeMetricFamily(
            "vize_images_classified", "Images classified, all users, since the start (billing)."
        )
        images.add_metric([], float(classified or 0))
        yield images
        scraped = GaugeMetricFamily("vize_metrics_scrape_timestamp_seconds", "When read.")
        scraped.add_metric([], time.time())
        yield scraped


def _training_histogram(durations: list[float]) -> HistogramMetricFamily:
    buckets = []
    for bound in TRAINING_BUCKETS:
        buckets.append((str(float(bound)), float(sum(1 for d in durations if d <= bound))))
    buckets.append(("+Inf", float(len(durations))))
    family = HistogramMetricFamily(
        "vize_training_duration_seconds", "Wall time of succeeded trainings (started to finished)."
    )
    family.add_metric([], buckets, sum_value=sum(durations))
    return family


class WorkerMetrics:
    """What a ``vize worker`` counts, served on ``VIZE_WORKER_METRICS_ADDRESS``: the jobs it
    ran by kind and outcome, their wall time, the jobs running now, the embedding cache
    lookups of its trainings and embed jobs (the same family as the server's, so a dashboard
    sums both), and the process's CPU seconds and memory. Cluster-wide figures (jobs queued)
    stay with the API's ``/metrics``: every worker would report the same values."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        reg = self.registry
        self.jobs = Counter(
            "vize_worker_jobs", "Jobs this worker ran, by kind and outcome.",
            ["kind", "outcome"], registry=reg,
        )  # fmt: skip
        self.duration = Histogram(
            "vize_worker_job_duration_seconds", "Wall time of a job run by this worker, by kind.",
            ["kind"], buckets=JOB_BUCKETS, registry=reg,
        )  # fmt: skip
        self.running = Gauge(
            "vize_worker_jobs_running", "Jobs this worker runs now.",
            registry=reg, multiprocess_mode="livesum",
        )  # fmt: skip
        self.embedding_cache = Counter(
            "vize_embedding_cache_lookups",
            "Images a training or embed job needed, by whether their embedding was cached.",
            ["result"], registry=reg,
        )  # fmt: skip
        if multiproc_dir() is None:  # per-process figures are not summed across processes
            ProcessCollector(registry=reg)

    def job_started(self, kind: str) -> None:
        self.running.inc()

    def job_finished(self, kind: str, outcome: str, seconds: float) -> None:
        self.running.dec()
        self.jobs.labels(kind, outcome).inc()
        self.duration.labels(kind).observe(seconds)

    def observe_embeddings(self, cached: int, computed: int) -> None:
        self.embedding_cache.labels("hit").inc(cached)
        self.embedding_cache.labels("miss").inc(computed)

    def exposition(self) -> bytes:
        directory = multiproc_dir()
        if directory is None:
            return generate_latest(self.registry)
        scrape = CollectorRegistry()
        MultiProcessCollector(scrape, path=directory)
        return generate_latest(scrape)
