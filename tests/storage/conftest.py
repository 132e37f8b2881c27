"""Every storage test runs on both backends: the local folder and S3 (moto's server, started
once for the session by ``s3_server``). ``blob_env`` is the settings + environment that select
the backend, for tests that build a whole app on it."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from tests.s3server import S3Server
from tests.services.conftest import carol, dave, db, engine, sessions  # noqa: F401
from vize.config import Settings
from vize.storage import BlobStore, LocalBlobStore
from vize.storage.s3 import S3BlobStore


@dataclass
class Backend:
    name: str
    settings: Settings  # the test's settings, with storage_url set for S3
    store: BlobStore
    bucket: str = ""


@pytest.fixture(params=["local", "s3"])
def backend(
    request: pytest.FixtureRequest, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> Backend:
    if request.param == "local":
        return Backend("local", settings, LocalBlobStore(settings.blob_dir))
    server: S3Server = request.getfixturevalue("s3_server")
    for name, value in server.env().items():  # the app finds the server as a deployment would
        monkeypatch.setenv(name, value)
    bucket = server.new_bucket()
    url = f"s3://{bucket}/vize-test"
    configured = settings.model_copy(update={"storage_url": url})
    return Backend("s3", configured, S3BlobStore.from_url(url), bucket)


@pytest.fixture
def blobs(backend: Backend) -> BlobStore:
    return backend.store
