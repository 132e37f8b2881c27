"""Shared fixtures: a fresh app per test on SQLite, or on PostgreSQL when
``VIZE_TEST_DATABASE_URL`` is set (a scratch database is created for the session)."""

from __future__ import annotations

import io
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from PIL import Image
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests.inprocess import AppClient, app_client
from tests.s3server import S3Server, moto_server
from vize.app import create_app
from vize.config import Settings
from vize.db.engine import make_engine, make_sessionmaker, normalize_url, session_scope
from vize.db.migrate import upgrade
from vize.db.tables import Base
from vize.services import users as users_service

DATASET = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "cifar10-dev"
PG_URL = os.environ.get("VIZE_TEST_DATABASE_URL", "")


def dataset_dir() -> Path:
    """The shared CIFAR-10 dev set; tests that need it fail loudly when it is missing."""
    for candidate in (DATASET, Path(os.environ.get("VIZE_DATASET_DIR", "/nonexistent"))):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"cifar10-dev dataset not found at {DATASET}")


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str | None]:
    if not PG_URL:
        yield None
        return
    name = f"vize_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(normalize_url(PG_URL), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    engine = create_engine(normalize_url(url))
    upgrade(engine)
    engine.dispose()
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """moto's S3 server on loopback for the whole session; a test that needs it and cannot
    start it errors (no skip)."""
    with moto_server(tmp_path_factory.mktemp("moto") / "moto.log") as server:
        yield server


def _truncate(url: str) -> None:
    engine = create_engine(normalize_url(url))
    names = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {names} CASCADE"))
    engine.dispose()


@pytest.fixture
def settings(tmp_path: Path, pg_database: str | None) -> Iterator[Settings]:
    if pg_database:
        _truncate(pg_database)
    yield Settings(
        data_dir=tmp_path / "data",
        database_url=pg_database or "",
        secret_key="test-secret",
        default_user="",
        min_images_per_label=5,
    )


@pytest.fixture
def app(settings: Settings) -> FastAPI:
    return create_app(settings)


@pytest.fixture
def client(app: FastAPI) -> Iterator[AppClient]:
    with app_client(app) as c:
        yield c


def make_user(settings: Settings, username: str, password: str | None = None) -> dict[str, str]:
    engine = make_engine(settings)
    upgrade(engine)
    with session_scope(make_sessionmaker(engine)) as db:
        user = users_service.create_user(
            db, username, email=f"{username}@example.com", password=password
        )
        out = {"id": user.id, "username": username, "token": user.api_token}
    engine.dispose()
    return out


@pytest.fixture
def alice(client: AppClient, settings: Settings) -> dict[str, Any]:
    user = make_user(settings, "alice", "alice-password")
    return {**user, "headers": {"Authorization": f"Token {user['token']}"}}


@pytest.fixture
def bob(client: AppClient, settings: Settings) -> dict[str, Any]:
    user = make_user(settings, "bob", "bob-password")
    return {**user, "headers": {"Authorization": f"Token {user['token']}"}}


def png_bytes(seed: int, size: tuple[int, int] = (32, 32), fmt: str = "PNG") -> bytes:
    """A small distinct image per seed."""
    img = Image.new("RGB", size, ((seed * 37) % 256, (seed * 91) % 256, (seed * 53) % 256))
    img.putpixel((seed % size[0], (seed // size[0]) % size[1]), (255 - seed % 256, 0, 0))
    out = io.BytesIO()
    img.save(out, fmt)
    return out.getvalue()
