"""Fixture overrides for the API tests.

- No embedded job worker: uploads still queue their embedding jobs, but computing embeddings
  (the recognition tests' subject) would only slow these tests and compete for the database.
- alice and bob without a password: the API authenticates by token, and argon2 hashing of a
  password costs about 0.25 s of CPU per user, i.e. most of the time of a typical API test.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import make_user
from tests.inprocess import AppClient
from vize.config import Settings


@pytest.fixture
def settings(settings: Settings) -> Settings:
    settings.embedded_worker = False
    return settings


def token_user(settings: Settings, username: str) -> dict[str, Any]:
    user = make_user(settings, username)
    return {**user, "headers": {"Authorization": f"Token {user['token']}"}}


@pytest.fixture
def alice(client: AppClient, settings: Settings) -> dict[str, Any]:
    return token_user(settings, "alice")


@pytest.fixture
def bob(client: AppClient, settings: Settings) -> dict[str, Any]:
    return token_user(settings, "bob")
