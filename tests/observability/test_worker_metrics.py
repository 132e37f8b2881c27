"""A ``vize worker``'s metrics (``VIZE_WORKER_METRICS_ADDRESS``): the jobs it ran, their
time and embedding cache lookups, served under the same rules as the API's /metrics.
The worker process itself is scraped in tests/e2e/test_scaleout.py."""

from __future__ import annotations

import httpx
import pytest
from pydantic import ValidationError

from tests.api.helpers import upload
from tests.helpers import png_bytes, token_user
from tests.inprocess import app_client
from tests.observability.test_metrics import sample
from vize.app import create_app
from vize.config import Settings
from vize.db.tables import Job
from vize.jobs.executor import Outcome, execute
from vize.jobs.setup import build_context
from vize.observability.metrics import WorkerMetrics
from vize.observability.scrape import ScrapeServer, parse_address

TOKEN = "worker-scrape-0123456789"


def test_a_real_embed_job_is_counted_once_and_a_duplicate_delivery_not(
    settings: Settings,
) -> None:
    configured = settings.model_copy(update={"embedded_worker": False, "embed_on_upload": True})
    with app_client(create_app(configured)) as client:
        h = token_user(configured, "alice")["headers"]
        for seed in range(3):
            assert upload(client, h, png_bytes(seed)).status_code == 201
        state = client.transport.app.state.vize  # type: ignore[attr-defined]
        with state.sessions() as db:
            (job_id,) = [j.id for j in db.query(Job).filter(Job.kind == "embed")]
        ctx = build_context(configured, state.sessions, state.blobs, state.services.recognizer)
        metrics = WorkerMetrics()
        ctx.recognizer.on_embeddings = metrics.observe_embeddings
        assert execute(ctx, job_id, observer=metrics) == Outcome.SUCCEEDED
        assert execute(ctx, job_id, observer=metrics) == Outcome.SKIPPED  # already done
    text = metrics.exposition().decode()
    assert sample(text, "vize_worker_jobs_total", kind="embed", outcome="succeeded") == 1
    assert sample(text, "vize_worker_jobs_total", kind="embed", outcome="skipped") is None
    assert sample(text, "vize_worker_job_duration_seconds_count", kind="embed") == 1
    assert sample(text, "vize_worker_jobs_running") == 0
    assert sample(text, "vize_embedding_cache_lookups_total", result="miss") == 3
    assert sample(text, "vize_embedding_cache_lookups_total", result="hit") == 0
    assert (sample(text, "process_resident_memory_bytes") or 0) > 10e6  # the capacity figures


def test_a_failing_job_is_counted_as_failed(settings: Settings) -> None:
    """A worker whose inference pool is shut down cannot embed: the job fails, counted so."""
    configured = settings.model_copy(update={"embedded_worker": False, "embed_on_upload": True})
    with app_client(create_app(configured)) as client:
        h = token_user(configured, "alice")["headers"]
        assert upload(client, h, png_bytes(1)).status_code == 201
        state = client.transport.app.state.vize  # type: ignore[attr-defined]
        with state.sessions() as db:
            (job_id,) = [j.id for j in db.query(Job).filter(Job.kind == "embed")]
        ctx = build_context(configured, state.sessions, state.blobs)  # its own recognizer
        ctx.recognizer.close()
        metrics = WorkerMetrics()
        assert execute(ctx, job_id, observer=metrics) == Outcome.FAILED
    text = metrics.exposition().decode()
    assert sample(text, "vize_worker_jobs_total", kind="embed", outcome="failed") == 1
    assert sample(text, "vize_worker_job_duration_seconds_count", kind="embed") == 1
    assert sample(text, "vize_worker_jobs_running") == 0


def test_the_endpoint_needs_the_token_or_an_allowed_network(settings: Settings) -> None:
    metrics = WorkerMetrics()
    metrics.job_started("embed")
    metrics.job_finished("embed", "succeeded", 0.3)
    closed = ScrapeServer("127.0.0.1:0", settings, metrics.exposition)  # nothing configured
    try:
        url = f"http://127.0.0.1:{closed.port}/metrics"
        r = httpx.get(url, headers={"Authorization": "Bearer anything"})
        assert r.status_code == 404 and r.json()["code"] == "not_found"
    finally:
        closed.close()
    configured = settings.model_copy(update={"metrics_token": TOKEN})
    server = ScrapeServer("127.0.0.1:0", configured, metrics.exposition)
    try:
        url = f"http://127.0.0.1:{server.port}"
        assert httpx.get(url + "/metrics").status_code == 404
        assert httpx.get(url + "/metrics", headers={"Authorization": "Bearer x"}).status_code == 404
        good = {"Authorization": f"Bearer {TOKEN}"}
        assert httpx.get(url + "/other", headers=good).status_code == 404
        r = httpx.get(url + "/metrics", headers=good)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
        assert sample(r.text, "vize_worker_jobs_total", kind="embed", outcome="succeeded") == 1
    finally:
        server.close()
    allowed = settings.model_copy(update={"metrics_allow": ["127.0.0.0/8"]})
    server = ScrapeServer("127.0.0.1:0", allowed, metrics.exposition)
    try:
        assert httpx.get(f"http://127.0.0.1:{server.port}/metrics").status_code == 200
    finally:
        server.close()


def test_the_address_setting_is_checked_at_start(settings: Settings) -> None:
    assert parse_address("0.0.0.0:9808") == ("0.0.0.0", 9808)
    assert parse_address("[::]:9808") == ("::", 9808)
    for bad in ("9808", "host:", "host:http", "host:70000"):
        with pytest.raises(ValueError, match="host:port"):
            parse_address(bad)
    with pytest.raises(ValidationError, match="host:port"):
        Settings(data_dir=settings.data_dir, worker_metrics_address="localhost")
