"""/health/live and /health/ready: each dependency really checked, 503 with the failing
part named (not its error text) when one is down."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.inprocess import AppClient, app_client
from vize.app import create_app
from vize.config import Settings
from vize.ml.backbones import get_backbone_config, onnx_cache_path


def test_live_and_ready(client: AppClient) -> None:
    assert client.get("/health/live").json() == {"status": "ok"}
    r = client.get("/health/ready")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"database", "storage", "models"}  # no broker configured
    assert all(c["ok"] for c in body["checks"].values())


def test_ready_is_503_when_storage_is_gone(settings: Settings) -> None:
    with app_client(create_app(settings)) as client:
        shutil.rmtree(settings.blob_dir)
        settings.blob_dir.write_bytes(b"a file where the folder was")
        r = client.get("/health/ready")
        assert client.get("/health/live").status_code == 200  # alive, just not ready
    assert r.status_code == 503
    checks = r.json()["checks"]
    assert checks["storage"]["ok"] is False and checks["storage"]["error"] == "StorageError"
    assert checks["database"]["ok"] and str(settings.blob_dir) not in r.text


def test_ready_checks_the_broker(settings: Settings) -> None:
    """A broker that refuses connections makes the node unready (jobs could not be queued)."""
    down = settings.model_copy(update={"broker_url": "redis://:hunter2@127.0.0.1:9/0"})
    with app_client(create_app(down)) as client:
        r = client.get("/health/ready")
    assert r.status_code == 503
    assert r.json()["checks"]["broker"]["ok"] is False
    assert "hunter2" not in r.text  # the URL (and its password) never reaches the answer


def test_ready_checks_the_models(settings: Settings, tmp_path: Path) -> None:
    # A known backbone (an unknown one is refused by create_app) whose cached ONNX file is
    # damaged: the server starts, but cannot load the model.
    cache = tmp_path / "onnx-broken"
    cache.mkdir()
    name = settings.backbone_list[0]
    onnx_cache_path(get_backbone_config(name), cache).write_bytes(b"not an onnx model")
    broken = settings.model_copy(update={"onnx_dir": cache, "warm_up": False})
    with app_client(create_app(broken)) as client:
        r = client.get("/health/ready")
    assert r.status_code == 503
    assert r.json()["checks"]["models"]["ok"] is False
