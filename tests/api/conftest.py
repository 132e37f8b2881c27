"""API tests run without the embedded job worker: uploads still queue their embedding jobs,
but computing embeddings (the recognition tests' subject) would only slow these tests down and
compete with them for the database."""

from __future__ import annotations

import pytest

from vize.config import Settings


@pytest.fixture
def settings(settings: Settings) -> Settings:
    settings.embedded_worker = False
    return settings
