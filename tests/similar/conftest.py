"""One app per test module: every test here embeds images with the real backbone, whose
ONNX conversion (cached in the data dir) would otherwise be paid by each test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

from tests.conftest import _truncate, make_user
from tests.inprocess import AppClient, app_client
from vize.app import create_app
from vize.config import Settings


@pytest.fixture(scope="module")
def module_settings(tmp_path_factory: pytest.TempPathFactory, pg_database: str | None) -> Settings:
    if pg_database:
        _truncate(pg_database)
    data: Path = tmp_path_factory.mktemp("similar") / "data"
    return Settings(
        data_dir=data,
        database_url=pg_database or "",
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
