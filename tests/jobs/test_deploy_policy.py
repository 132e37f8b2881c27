"""Issue 15, bug 4: trainings follow the task's deploy policy and say why (a real training
with the embedded worker)."""

from __future__ import annotations

from typing import Any

from tests.helpers import task_with_images, wait_training
from tests.inprocess import AppClient


def _train(client: AppClient, h: dict, task_id: str) -> dict[str, Any]:
    r = client.post(f"/v2/task/{task_id}/train/", headers=h)
    assert r.status_code == 202, r.text
    status = wait_training(client, h, task_id)
    assert status["state"] == "succeeded", status
    return status


def test_trainings_follow_the_policy_and_say_why(client: AppClient, alice: dict) -> None:
    h = alice["headers"]
    task_id = task_with_images(client, h)["task"]["id"]
    first = _train(client, h, task_id)
    assert first["deploy"]["deployed"] is True
    assert client.get(f"/v2/task/{task_id}/", headers=h).json()["production_version"] == 1
    # The same data again: not better (equal), so v1 stays, and the status says why.
    second = _train(client, h, task_id)
    assert second["deploy"]["deployed"] is False, second
    assert "of the deployed v1" in second["deploy"]["reason"]
    assert second["deploy"]["reason"] in second["message"]
    assert client.get(f"/v2/task/{task_id}/", headers=h).json()["production_version"] == 1
    models = client.get(f"/v2/model/?task={task_id}", headers=h).json()["results"]
    assert {m["version"]: m["deploy_decision"]["deployed"] for m in models} == {1: True, 2: False}
    # A version deployed by hand does not stop "always" from deploying the next one.
    client.patch(f"/v2/task/{task_id}/", headers=h, json={"production_version": 2})
    client.patch(f"/v2/task/{task_id}/", headers=h, json={"deploy_policy": "always"})
    third = _train(client, h, task_id)
    assert third["deploy"]["deployed"] is True and "in place of v2" in third["deploy"]["reason"]
    assert client.get(f"/v2/task/{task_id}/", headers=h).json()["production_version"] == 3
