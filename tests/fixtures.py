"""The suite's shared fixtures, registered once by ``pytest_plugins`` in tests/conftest.py (so
no test module imports a fixture, which ruff would flag as a redefinition, F811).

A fresh app per test on SQLite, or on PostgreSQL when ``VIZE_TEST_DATABASE_URL`` is set (a
scratch database is created for the session and emptied before each test). Every app of the
session shares one ONNX cache folder, so each backbone is converted once per session, not
once per app; apps do not warm up in a background thread (a test that classifies loads the
backbone on first use, and no thread is left running past the test).

A directory whose tests run no job overrides ``embedded_worker`` to ``False``: uploads still
queue their jobs, but no worker thread starts and competes for the database.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests.helpers import token_user
from tests.inprocess import AppClient, app_client
from tests.s3server import S3Server, moto_server
from vize.app import create_app
from vize.config import Settings
from vize.db.engine import normalize_url
from vize.db.migrate import upgrade
from vize.db.tables import Base

PG_URL = os.environ.get("VIZE_TEST_DATABASE_URL", "")
THREAD_GRACE_SECONDS = 10.0
LONG_MARKERS = ("slow", "e2e", "browser")


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


@pytest.fixture(scope="session")
def onnx_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's ONNX cache: each backbone converted once, by whichever test needs it.
    Under pytest-xdist every worker is a session of its own; they share the folder above
    their own temp roots (conversions write a temp file and rename it, so two workers
    converting at once both end with a whole file)."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = base.parent / "onnx"
        shared.mkdir(exist_ok=True)
        return shared
    return tmp_path_factory.mktemp("onnx")


@pytest.fixture
def embedded_worker() -> bool:
    """Whether the test's apps run queued jobs in a worker thread."""
    return True


@pytest.fixture
def settings(
    tmp_path: Path, pg_database: str | None, onnx_dir: Path, embedded_worker: bool
) -> Iterator[Settings]:
    if pg_database:
        _truncate(pg_database)
    yield Settings(
        data_dir=tmp_path / "data",
        database_url=pg_database or "",
        onnx_dir=onnx_dir,
        secret_key="test-secret",
        default_user="",
        min_images_per_label=5,
        warm_up=False,
        embedded_worker=embedded_worker,
    )


@pytest.fixture
def app(settings: Settings) -> FastAPI:
    return create_app(settings)


@pytest.fixture
def client(app: FastAPI) -> Iterator[AppClient]:
    with app_client(app) as c:
        yield c


# The users depend on ``client`` so that they exist in the database the running app uses.
@pytest.fixture
def alice(client: AppClient, settings: Settings) -> dict[str, Any]:
    return token_user(settings, "alice")


@pytest.fixture
def bob(client: AppClient, settings: Settings) -> dict[str, Any]:
    return token_user(settings, "bob")


@pytest.fixture
def alice_with_password(client: AppClient, settings: Settings) -> dict[str, Any]:
    """alice who can also log in to the web UI, with password ``alice-password``."""
    return token_user(settings, "alice", "alice-password")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Long modules first; and the PostgreSQL pass (``VIZE_TEST_DATABASE_URL`` set) runs the
    tests that reach the database through ``pg_database``: the others (models, preprocessing,
    clients against their own servers...) would repeat exactly what the SQLite pass ran."""
    # The long modules (real servers, browsers, fuzzing) first: with pytest-xdist the short
    # ones then fill in around them instead of one worker finishing a long one alone.
    items.sort(key=lambda item: not any(item.get_closest_marker(m) for m in LONG_MARKERS))
    if not PG_URL:
        return
    keep = [item for item in items if _reaches_postgres(item)]
    dropped = [item for item in items if not _reaches_postgres(item)]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


def _reaches_postgres(item: pytest.Item) -> bool:
    """Through the scratch database, or a test that opens PostgreSQL itself (marked
    ``postgres``: tests/test_migrations.py's PostgreSQL case, on the pass's server)."""
    return "pg_database" in getattr(item, "fixturenames", ()) or bool(
        item.get_closest_marker("postgres")
    )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run when a thread outlives the suite. A daemon thread still inside ONNX Runtime
    or a database driver while the interpreter exits can abort the process (a CI run once
    ended with code 134 after every test had passed); each test must stop what it started."""
    deadline = time.monotonic() + THREAD_GRACE_SECONDS
    while (left := _other_threads()) and time.monotonic() < deadline:
        time.sleep(0.1)
    if left:
        names = ", ".join(sorted(f"{t.name} (daemon={t.daemon})" for t in left))
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"threads still running after the tests: {names}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _other_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t is not threading.main_thread()]
