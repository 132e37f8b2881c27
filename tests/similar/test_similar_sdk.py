"""``client.similar``, ``client.insights`` and ``vize insights`` against the real app."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import vize.client.cli as client_cli
from tests.client.conftest import BASE_URL
from tests.client.transport import InProcessTransport
from tests.inprocess import AppClient
from tests.similar.conftest import COOL, WARM
from tests.similar.images import altered
from vize.cli import main
from vize.client import Image, Insights, VizeClient


@pytest.fixture(scope="module")
def sdk(mclient: AppClient, owner: dict) -> VizeClient:
    return VizeClient(BASE_URL, owner["token"], transport=InProcessTransport(mclient))


def test_similar(sdk: VizeClient, task: dict) -> None:
    me = Image(id=task["images"][WARM[1]])
    results = sdk.similar(task["id"], [altered(COOL[0], "cool"), me], k=5)
    assert [r.ok for r in results] == [True, True]
    assert results[0].not_indexed == 0  # every image of the task was searched
    assert results[0].similar[0].id == task["images"][COOL[0]]
    assert results[0].similar[0].labels == [(task["labels"]["cool"], "cool")]
    assert len(results[1].similar) == 5 and me.id not in {s.id for s in results[1].similar}
    only_warm = sdk.similar(task["id"], me, k=100, label=task["labels"]["warm"])[0]
    assert {s.labels[0][1] for s in only_warm.similar} == {"warm"}


def test_insights_and_cli(
    sdk: VizeClient,
    task: dict,
    owner: dict,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    mclient: AppClient,
) -> None:
    report = sdk.insights(task["id"], recompute=True)
    assert isinstance(report, Insights) and report.computed
    assert report.suspected_mislabels == []  # never trained
    monkeypatch.setattr(client_cli, "TRANSPORT", InProcessTransport(mclient))
    monkeypatch.setenv("VIZE_URL", BASE_URL)
    monkeypatch.setenv("VIZE_TOKEN", owner["token"])
    monkeypatch.setenv("VIZE_CONFIG", str(tmp_path / "vize.json"))
    capsys.readouterr()
    assert main(["insights", "warm vs cool", "--json"]) == 0
    out: dict[str, Any] = json.loads(capsys.readouterr().out)
    assert out["task_id"] == task["id"] and out["computed"] == report.computed
    assert main(["insights", task["id"]]) == 0
    text = capsys.readouterr().out
    assert "near-duplicate" in text and "suspected mislabel" in text and "leaked" in text
    assert main(["insights", "no such task"]) == 1
