"""One app per test module: every test here embeds images with the real backbone, whose
ONNX conversion (cached in the data dir) would otherwise be paid by each test."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

from tests.fixtures import _truncate
from tests.helpers import make_user
from tests.inprocess import AppClient, app_client
from tests.similar.images import png
from vize.app import create_app
from vize.config import Settings


@pytest.fixture(scope="module")
def module_settings(
    tmp_path_factory: pytest.TempPathFactory, pg_database: str | None, onnx_dir: Path
) -> Settings:
    if pg_database:
        _truncate(pg_database)
    data: Path = tmp_path_factory.mktemp("similar") / "data"
    return Settings(
        data_dir=data,
        database_url=pg_database or "",
        onnx_dir=onnx_dir,
        secret_key="test-secret",
        default_user="",
        min_images_per_label=5,
    )


@pytest.fixture(scope="module")
def module_app(module_settings: Settings) -> FastAPI:
    return create_app(module_settings)


@pytest.fixture(scope="module")
def mclient(module_app: FastAPI) -> Iterator[AppClient]:
    with app_client(module_app) as c:
        yield c


@pytest.fixture(scope="module")
def owner(mclient: AppClient, module_settings: Settings) -> dict[str, Any]:
    user = make_user(module_settings, "owner")
    return {**user, "headers": {"Authorization": f"Token {user['token']}"}}


@pytest.fixture(scope="module")
def stranger(mclient: AppClient, module_settings: Settings) -> dict[str, Any]:
    user = make_user(module_settings, "stranger")
    return {**user, "headers": {"Authorization": f"Token {user['token']}"}}


WARM = list(range(100, 107))
COOL = list(range(200, 207))
MISLABELLED = 207  # a cool picture labelled warm


def upload(client: AppClient, h: dict, data: bytes, label: str, **fields: Any) -> Any:
    return client.post(
        "/v2/training-image/",
        headers=h,
        data={"labels": label, **fields},
        files={"img_path": ("x.png", data, "image/png")},
    )


def train(client: AppClient, h: dict, task_id: str) -> None:
    assert client.post(f"/v2/task/{task_id}/train/", headers=h).status_code == 202
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        st = client.get(f"/v2/task/{task_id}/training/", headers=h).json()
        if st["state"] in ("succeeded", "failed"):
            assert st["state"] == "succeeded", st
            return
        time.sleep(0.2)
    raise AssertionError("training did not finish")


@pytest.fixture(scope="module")
def task(mclient: AppClient, owner: dict) -> dict[str, Any]:
    h = owner["headers"]
    task = mclient.post("/v2/task/", headers=h, json={"name": "warm vs cool"}).json()
    labels = {}
    for name in ("warm", "cool"):
        r = mclient.post("/v2/label/", headers=h, json={"name": name, "task": task["id"]})
        labels[name] = r.json()["id"]
    images: dict[int, str] = {}
    for seed in WARM + COOL + [MISLABELLED]:
        tint = "warm" if seed in WARM else "cool"
        label = labels["cool"] if seed in COOL else labels["warm"]
        r = upload(mclient, h, png(seed, tint), label)
        assert r.status_code == 201, r.text
        images[seed] = r.json()["id"]
    return {"id": task["id"], "labels": labels, "images": images}
