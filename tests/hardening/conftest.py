"""Fixtures of the hardening tests: no embedded job worker unless a test trains (``trained``
below builds its own app). alice and bob come from tests/fixtures.py."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.helpers import task_with_images, token_user, wait_training
from tests.inprocess import AppClient, app_client
from vize.app import create_app
from vize.config import Settings


@pytest.fixture
def embedded_worker() -> bool:
    return False


def train_task(client: AppClient, headers: dict[str, str]) -> str:
    """A task with 2 labels x 5 images, trained; returns its id."""
    task_id: str = task_with_images(client, headers, n=5)["task"]["id"]
    assert client.post(f"/v2/task/{task_id}/train/", headers=headers).status_code == 202
    assert wait_training(client, headers, task_id)["state"] == "succeeded"
    return task_id


@pytest.fixture
def trained(settings: Settings) -> Iterator[tuple[AppClient, dict[str, Any], str]]:
    """(client of an app with a job worker, alice, her trained task id)."""
    with_worker = settings.model_copy(update={"embedded_worker": True})
    with app_client(create_app(with_worker)) as client:
        user = token_user(with_worker, "alice")
        started = time.monotonic()
        task_id = train_task(client, user["headers"])
        print(f"trained a task in {time.monotonic() - started:.1f} s")
        yield client, user, task_id
