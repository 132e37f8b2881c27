"""Issue 15, bug 4: the deploy policy is a task setting (always / if_better / never, default
if_better), and each trained version says whether it was deployed and why."""

from __future__ import annotations

import pytest

from tests.api.helpers import create_task
from tests.inprocess import AppClient
from vize.services.deploy import decide


def test_a_worse_version_is_not_deployed_by_default() -> None:
    """What happened: v2 deployed itself with a lower accuracy than v1."""
    v1 = {"accuracy": 0.9, "cv_accuracy": 0.88}
    v2 = {"accuracy": 0.8, "cv_accuracy": 0.81}
    got = decide("if_better", 2, v2, (1, v1))
    assert (got["deployed"], got["compared_with"], got["figure"]) == (False, 1, "cv_accuracy")
    assert "81.0% is not better than 88.0% of the deployed v1" in got["reason"]
    better = decide("if_better", 3, {"accuracy": 0.7, "cv_accuracy": 0.9}, (1, v1))
    assert (
        better["deployed"]
        and "cross-validated accuracy 90.0% beats 88.0% of v1" in better["reason"]
    )
    # Without cross-validation (too few images) the held-out accuracy decides.
    plain = decide("if_better", 2, {"accuracy": 0.95, "cv_accuracy": None}, (1, v1))
    assert (plain["deployed"], plain["figure"]) == (True, "accuracy")


@pytest.mark.parametrize(
    ("policy", "deployed", "words"),
    [("always", True, "policy is to always deploy"), ("never", False, "never deploy")],
)
def test_always_and_never(policy: str, deployed: bool, words: str) -> None:
    got = decide(policy, 2, {"cv_accuracy": 0.5}, (1, {"cv_accuracy": 0.9}))
    assert got["deployed"] is deployed and words in got["reason"]


def test_policy_is_a_task_setting(client: AppClient, alice: dict) -> None:
    h = alice["headers"]
    task = create_task(client, h)
    assert task["deploy_policy"] == "if_better"
    r = client.patch(f"/v2/task/{task['id']}/", headers=h, json={"deploy_policy": "never"})
    assert r.status_code == 200 and r.json()["deploy_policy"] == "never", r.text
    r = client.patch(f"/v2/task/{task['id']}/", headers=h, json={"deploy_policy": "sometimes"})
    assert r.status_code == 400 and r.json()["code"] == "invalid_deploy_policy", r.text
