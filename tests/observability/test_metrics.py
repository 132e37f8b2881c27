"""/metrics: not public by default, then a token or an allowed network; the figures an
operator alerts on are there and move with the traffic."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.api.helpers import upload
from tests.helpers import png_bytes, task_with_images, token_user, wait_training
from tests.inprocess import AppClient, app_client
from vize.app import create_app
from vize.config import Settings
from vize.db.tables import Job, Usage, utcnow

TOKEN = "scrape-me-0123456789"


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in the text format, or None when absent."""
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$", line)
        if not m or m.group(1) != name:
            continue
        got = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        if got == labels:
            return float(m.group(3))
    return None


def scrape(client: AppClient) -> str:
    r = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    return r.text


@pytest.fixture
def with_token(settings: Settings) -> Settings:
    return settings.model_copy(update={"metrics_token": TOKEN, "embedded_worker": False})


def test_not_public_by_default(client: AppClient) -> None:
    r = client.get("/metrics")
    assert r.status_code == 404 and r.json()["code"] == "not_found"
    assert client.get("/metrics", headers={"Authorization": "Bearer x"}).status_code == 404


def test_token_or_allowed_network(settings: Settings) -> None:
    configured = settings.model_copy(
        update={"metrics_token": TOKEN, "metrics_allow": ["127.0.0.0/8", "::1/128"]}
    )
    with app_client(create_app(configured)) as client:
        assert client.get("/metrics").status_code == 200  # the test client is 127.0.0.1
        with client.from_address("10.1.2.3") as outside:
            assert outside.get("/metrics").status_code == 404
            bad = {"Authorization": f"Bearer {TOKEN}x"}
            assert outside.get("/metrics", headers=bad).status_code == 404
            good = {"Authorization": f"Bearer {TOKEN}"}
            assert outside.get("/metrics", headers=good).status_code == 200


def test_requests_jobs_and_classifications_are_counted(with_token: Settings) -> None:
    with app_client(create_app(with_token)) as client:
        h = token_user(with_token, "alice")["headers"]
        image_id = upload(client, h, png_bytes(1)).json()["id"]
        for _ in range(2):
            assert client.get(f"/v2/training-image/{image_id}/", headers=h).status_code == 200
        assert client.get("/v2/training-image/nope/", headers=h).status_code == 404
        assert client.get("/no/such/path").status_code == 404
        bad = client.post("/v2/classify", headers=h, json={"task_id": "nope", "records": []})
        assert bad.status_code in (400, 404)
        state = client.transport.app.state.vize  # type: ignore[attr-defined]
        with state.sessions.begin() as db:  # what billing recorded, and a finished training
            user_id, space = db.query(Job.owner_id, Job.workspace_id).first()
            db.add(Usage(user_id=user_id, day="2026-01-01", classifications=7))
            db.add(Job(kind="train", owner_id=user_id, workspace_id=space, state="succeeded",
                       started=utcnow(), finished=utcnow() + timedelta(seconds=42)))  # fmt: skip
        text = scrape(client)
    route = "/v2/training-image/{image_id}/"
    assert sample(text, "vize_http_requests_total", method="GET", route=route, status="200") == 2
    assert sample(text, "vize_http_requests_total", method="GET", route=route, status="404") == 1
    # An unknown path is one label value, not one per path.
    assert sample(text, "vize_http_requests_total", method="GET", route="unmatched",
                  status="404") == 1  # fmt: skip
    assert "nope" not in text  # ids typed into paths never become labels
    assert sample(text, "vize_classify_duration_seconds_count") == 1
    assert sample(text, "vize_jobs", state="queued") == 1  # the upload's embedding job
    assert sample(text, "vize_jobs", state="succeeded") == 1
    assert sample(text, "vize_images_classified") == 7
    assert sample(text, "vize_training_duration_seconds_count") == 1
    assert sample(text, "vize_training_duration_seconds_bucket", le="30.0") == 0
    assert sample(text, "vize_training_duration_seconds_bucket", le="60.0") == 1
    assert sample(text, "vize_inference_queue_length") == 0


def test_trainings_count_their_embedding_cache_lookups(settings: Settings) -> None:
    """The first training embeds its 10 images (misses); later lookups find them cached."""
    configured = settings.model_copy(
        update={"metrics_token": TOKEN, "embedded_worker": True, "embed_on_upload": False}
    )
    with app_client(create_app(configured)) as client:
        h = token_user(configured, "alice")["headers"]
        task_id = task_with_images(client, h, n=5)["task"]["id"]
        counts = []
        for _ in range(2):
            assert client.post(f"/v2/task/{task_id}/train/", headers=h).status_code == 202
            assert wait_training(client, h, task_id)["state"] == "succeeded"
            text = scrape(client)
            counts.append(tuple(sample(text, "vize_embedding_cache_lookups_total", result=r)
                                for r in ("hit", "miss")))  # fmt: skip
    # 2 labels x 5 images. The first training misses all 10; after each training the data
    # health report (issue 16) looks the same 10 up again (hits); the second training hits
    # all 10 too: (hits, misses) = (10, 10), then (10 + 10 + 10, 10).
    assert counts == [(10, 10), (30, 10)]
    assert sample(text, "vize_training_duration_seconds_count") == 2


def test_several_processes_are_summed(tmp_path: Path, settings: Settings) -> None:
    """PROMETHEUS_MULTIPROC_DIR: two worker processes count requests, a third (any of them,
    in a deployment) answers the scrape with the sum. Separate interpreters: the client
    library picks its multiprocess storage when it is first imported."""
    folder = tmp_path / "prom"
    folder.mkdir()
    script = textwrap.dedent(f"""
        import sys
        from vize.config import Settings
        from vize.db.engine import make_engine, make_sessionmaker
        from vize.db.migrate import upgrade
        from vize.observability.metrics import Metrics
        settings = Settings(data_dir={str(settings.data_dir)!r},
                            database_url={settings.database_url!r})
        engine = make_engine(settings)
        upgrade(engine)
        metrics = Metrics(make_sessionmaker(engine))
        if sys.argv[1] == "count":
            metrics.observe_request("GET", "/v2/task/", 200, 0.01)
        else:
            sys.stdout.write(metrics.exposition().decode())
    """)
    env: dict[str, Any] = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(folder)}

    def run(arg: str) -> str:
        out = subprocess.run([sys.executable, "-c", script, arg], env=env, capture_output=True,
                             text=True, timeout=120, check=True)  # fmt: skip
        return out.stdout

    run("count")
    run("count")
    text = run("scrape")
    labels = {"method": "GET", "route": "/v2/task/", "status": "200"}
    assert sample(text, "vize_http_requests_total", **labels) == 2
    assert sample(text, "vize_jobs", state="queued") == 0  # the database part is there too
