"""PostgreSQL + Redis + Celery workers + two API replicas, as separate processes.

Train through one replica, classify through the other; SIGKILL the worker mid-training,
start another, and the training completes as the same version with no duplicate."""

from __future__ import annotations

import base64
import json
import os
import random
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests.e2e.procs import create_user, free_port, serve, stop, vize
from tests.helpers import image, images
from tests.observability.test_metrics import sample
from tests.s3server import S3Server
from vize.db.engine import normalize_url
from vize.storage.s3 import S3BlobStore

pytestmark = pytest.mark.e2e
PG = os.environ.get("VIZE_E2E_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS = os.environ.get("VIZE_E2E_REDIS_URL", "redis://127.0.0.1:6379")


@pytest.fixture
def cluster_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    name = f"vize_e2e_{uuid.uuid4().hex[:8]}"
    admin = create_engine(normalize_url(PG), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    # It flushes its db: 1-7 only (test_limits uses 8-14, test_broker_mode 15; xdist runs
    # them at the same time).
    db_index = random.randint(1, 7)
    broker = f"{REDIS}/{db_index}"
    redis.Redis.from_url(broker).flushdb()
    yield {
        "VIZE_DATABASE_URL": make_url(PG).set(database=name).render_as_string(False),
        "VIZE_BROKER_URL": broker,
        "VIZE_DATA_DIR": str(tmp_path / "shared"),
        "VIZE_MIN_IMAGES_PER_LABEL": "5",
        "VIZE_DEFAULT_USER": "",
        "VIZE_SECRET_KEY": "e2e",
    }
    redis.Redis.from_url(broker).flushdb()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _wait(c: httpx.Client, task_id: str, state_in: tuple[str, ...], timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    st: dict[str, Any] = {}
    while time.monotonic() < deadline:
        st = c.get(f"/v2/task/{task_id}/training/").json()
        if st["state"] in state_in:
            return st
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {state_in}: {st}")


def _setup(c: httpx.Client, per_label: int) -> tuple[str, dict[str, str]]:
    task = c.post("/v2/task/", json={"name": "cluster"}).json()
    labels = {}
    for name in ("airplane", "frog"):
        label = c.post("/v2/label/", json={"name": name, "task": task["id"]}).json()
        labels[name] = label["id"]
        for f in images(name, 0, per_label):
            r = c.post(
                "/v2/training-image/",
                data={"labels": label["id"]},
                files={"img_path": (f.name, f.read_bytes(), "image/png")},
            )
            assert r.status_code == 201, r.text
    return task["id"], labels


def test_replicas_and_worker_kill(cluster_env: dict[str, str], tmp_path: Path) -> None:
    log = tmp_path / "procs.log"
    # Lite2 and no background embedding make the training long enough to kill mid-way.
    env = {**cluster_env, "VIZE_BACKBONE": "efficientnet_lite2", "VIZE_EMBED_ON_UPLOAD": "false"}
    token = create_user(env, "carol")
    procs = []
    clients: list[httpx.Client] = []
    try:
        worker = vize(["worker"], env, log)
        procs.append(worker)
        a, url_a = serve(env, log)
        b, url_b = serve(env, log)
        procs += [a, b]
        headers = {"Authorization": f"Token {token}"}
        ca = httpx.Client(base_url=url_a, headers=headers, timeout=60)
        cb = httpx.Client(base_url=url_b, headers=headers, timeout=60)
        clients += [ca, cb]
        task_id, labels = _setup(ca, per_label=40)
        # Every version goes to production (the default, if_better, might keep v1), so both
        # replicas must switch to v2 below.
        assert ca.patch(f"/v2/task/{task_id}/", json={"deploy_policy": "always"}).status_code == 200
        assert ca.post(f"/v2/task/{task_id}/train/").status_code == 202
        assert _wait(ca, task_id, ("succeeded", "failed"), 180)["state"] == "succeeded"
        img = base64.b64encode(image("frog", 90).read_bytes()).decode()
        r = cb.post("/v2/classify", json={"task_id": task_id, "records": [{"_base64": img}]})
        assert r.status_code == 200, r.text
        assert r.json()["version"] == 1 and r.json()["records"][0]["best_label"]["name"] == "frog"

        # Add images so that version 2 has new embeddings to compute, then kill the worker.
        for f in images("frog", 40, 70):
            ca.post(
                "/v2/training-image/",
                data={"labels": labels["frog"]},
                files={"img_path": (f.name, f.read_bytes(), "image/png")},
            )
        job_id = ca.post(f"/v2/task/{task_id}/train/").json()["job_id"]
        _wait(ca, task_id, ("running",), 60)
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
        assert ca.get(f"/v2/job/{job_id}/").json()["state"] == "running"
        procs.append(vize(["worker"], env, log))
        st = _wait(cb, task_id, ("succeeded", "failed"), 180)
        assert st["state"] == "succeeded", st
        job = cb.get(f"/v2/job/{job_id}/").json()
        assert job["attempts"] == 2
        versions = [m["version"] for m in cb.get(f"/v2/model/?task={task_id}").json()["results"]]
        assert versions == [2, 1]
        # Both replicas serve the new production version at once.
        for c in (ca, cb):
            r = c.post("/v2/classify", json={"task_id": task_id, "records": [{"_base64": img}]})
            assert r.json()["version"] == 2
    finally:
        for c in clients:
            c.close()
        for p in procs:
            stop(p)


SCRAPE = "e2e-scrape-token-0123"


def _worker_counted(url: str, embedded: tuple[int, int]) -> None:
    """The worker's own /metrics (VIZE_WORKER_METRICS_ADDRESS): one training succeeded, which
    embedded between ``embedded[0]`` and ``embedded[1]`` images itself (cache misses); not
    public without the token."""
    assert httpx.get(url, timeout=10).status_code == 404
    text = httpx.get(url, headers={"Authorization": f"Bearer {SCRAPE}"}, timeout=10).text
    assert sample(text, "vize_worker_jobs_total", kind="train", outcome="succeeded") == 1
    assert sample(text, "vize_worker_jobs_running") == 0
    assert sample(text, "vize_worker_job_duration_seconds_count", kind="train") == 1
    # A label set with no lookups has no sample yet: that is a count of 0.
    misses = sample(text, "vize_embedding_cache_lookups_total", result="miss") or 0
    assert embedded[0] <= misses <= embedded[1], text


def test_separate_hosts_share_only_database_broker_and_bucket(
    cluster_env: dict[str, str], s3_server: S3Server, tmp_path: Path
) -> None:
    """Issue 19: every process has its own data dir (as on its own machine); images, model
    heads and thumbnails live in the S3 bucket only. Upload through one replica, train on the
    worker, read and classify through the other. Then stop the worker (SIGTERM) mid-training:
    it hands the job back at once, and a worker on another "machine" finishes it."""
    log = tmp_path / "procs.log"
    bucket = s3_server.new_bucket()
    shared = {**cluster_env, **s3_server.env(), "VIZE_STORAGE_URL": f"s3://{bucket}/vize",
              # Trainings that embed every image, flipped too: long enough to stop mid-way.
              "VIZE_EMBED_ON_UPLOAD": "false", "VIZE_FLIP_AUGMENT": "true"}  # fmt: skip

    def host(name: str) -> dict[str, str]:
        return {**shared, "VIZE_DATA_DIR": str(tmp_path / name)}

    def worker_host(name: str) -> tuple[dict[str, str], str]:
        """A worker's environment with its own /metrics, and that endpoint."""
        port = free_port()
        scrape = {"VIZE_WORKER_METRICS_ADDRESS": f"127.0.0.1:{port}", "VIZE_METRICS_TOKEN": SCRAPE}
        return {**host(name), **scrape}, f"http://127.0.0.1:{port}/metrics"

    token = create_user(host("admin"), "dora")
    procs = []
    clients: list[httpx.Client] = []
    try:
        worker_log = tmp_path / "worker.log"
        worker_env, worker_metrics = worker_host("worker")
        worker = vize(["worker"], {**worker_env, "VIZE_LOG_FORMAT": "json"}, worker_log)
        procs.append(worker)
        a, url_a = serve(host("replica-a"), log)
        b_log = tmp_path / "replica-b.log"
        b, url_b = serve({**host("replica-b"), "VIZE_LOG_FORMAT": "json"}, b_log)
        procs += [a, b]
        headers = {"Authorization": f"Token {token}"}
        ca = httpx.Client(base_url=url_a, headers=headers, timeout=60)
        cb = httpx.Client(base_url=url_b, headers=headers, timeout=60)
        clients += [ca, cb]
        for c in (ca, cb):
            ready = c.get("/health/ready")
            assert ready.status_code == 200, ready.text
            assert set(ready.json()["checks"]) == {"database", "storage", "models", "broker"}
        task_id, labels = _setup(ca, per_label=10)
        assert ca.post(f"/v2/task/{task_id}/train/").status_code == 202
        assert _wait(ca, task_id, ("succeeded", "failed"), 180)["state"] == "succeeded"
        _worker_counted(worker_metrics, embedded=(20, 20))
        frog = image("frog", 90).read_bytes()
        img = base64.b64encode(frog).decode()
        r = cb.post("/v2/classify", json={"task_id": task_id, "records": [{"_base64": img}]})
        assert r.status_code == 200, r.text
        assert r.json()["records"][0]["best_label"]["name"] == "frog"
        first = ca.get("/v2/training-image/", params={"page_size": 1}).json()["results"][0]
        assert cb.get(first["img_path"]).status_code == 200  # written by A, read by B

        frogs = images("frog", 10, 60)
        for f in frogs:
            r = ca.post("/v2/training-image/", data={"labels": labels["frog"]},
                        files={"img_path": (f.name, f.read_bytes(), "image/png")})  # fmt: skip
            assert r.status_code == 201, r.text
        job_id = ca.post(f"/v2/task/{task_id}/train/").json()["job_id"]
        _wait(ca, task_id, ("running",), 60)
        worker.send_signal(signal.SIGTERM)  # graceful: what systemd or Kubernetes sends
        worker.wait(60)
        job = ca.get(f"/v2/job/{job_id}/").json()
        assert (job["state"], job["attempts"]) == ("queued", 0), job  # back in the queue now
        worker2_env, worker2_metrics = worker_host("worker-2")
        procs.append(vize(["worker"], worker2_env, log))
        assert _wait(cb, task_id, ("succeeded", "failed"), 240)["state"] == "succeeded"
        # Worker 2 embeds what worker 1 left: none if worker 1 got through them before the
        # SIGTERM reached it, or had even committed the model (a redelivery after success
        # finds the version trained and does nothing).
        _worker_counted(worker2_metrics, embedded=(0, len(frogs)))
        job = cb.get(f"/v2/job/{job_id}/").json()
        assert (job["state"], job["attempts"]) == ("succeeded", 1), job
        versions = [m["version"] for m in cb.get(f"/v2/model/?task={task_id}").json()["results"]]
        assert versions == [2, 1]
    finally:
        for c in clients:
            c.close()
        for p in procs:
            stop(p)
    events = [json.loads(x) for x in worker_log.read_text().splitlines() if x.startswith("{")]
    trained = [e for e in events if e.get("event") == "job" and e.get("job_kind") == "train"]
    assert [e["job_state"] for e in trained] == ["started", "succeeded", "started", "lost"]
    assert any(e.get("job_state") == "handed_back" and e["job_id"] == job_id for e in events)
    lines = [json.loads(x) for x in b_log.read_text().splitlines() if x.startswith("{")]
    served = [x for x in lines if x.get("event") == "request" and x["route"] == "/v2/classify"]
    assert served and served[0]["status"] == 200 and served[0]["user_id"]  # the replica's log
    stored = {k for k, _ in S3BlobStore.from_url(f"s3://{bucket}/vize",
                                                 **s3_server.client_kwargs()).scan()}  # fmt: skip
    assert sum(k.startswith("images/") for k in stored) == 20 + len(frogs)
    assert sum(k.startswith("models/") for k in stored) == 2
    for name in ("worker", "replica-a", "replica-b"):  # nothing stored on any "machine"
        blobs = tmp_path / name / "blobs"
        assert not blobs.exists() or not any(p.is_file() for p in blobs.rglob("*"))
