"""A model is served with the backbones it was trained with, whatever ``VIZE_BACKBONE`` says
after a restart; a ``VIZE_BACKBONE`` naming no known backbone stops the start with a reason."""

from __future__ import annotations

import base64

import pytest

from tests.helpers import image as dataset_image
from tests.helpers import task_with_images, wait_training
from tests.inprocess import app_client
from vize.app import create_app
from vize.cli import main
from vize.config import Settings
from vize.errors import ConfigError


def test_a_lite0_model_classifies_after_a_restart_with_lite2(
    settings: Settings, alice: dict
) -> None:
    h = alice["headers"]
    with app_client(create_app(settings)) as client:
        t = task_with_images(client, h)
        task_id = t["task"]["id"]
        assert client.post(f"/v2/task/{task_id}/train/", headers=h).status_code == 202
        assert wait_training(client, h, task_id)["state"] == "succeeded"
    # The lite2 backbone itself is never loaded here: no warm-up, no training.
    lite2 = settings.model_copy(update={"backbone": "efficientnet_lite2", "warm_up": False})
    image = dataset_image("ship", 0).read_bytes()  # a trained one
    with app_client(create_app(lite2)) as client:
        r = client.post(
            "/v2/classify/",
            headers=h,
            json={"task_id": task_id, "records": [{"_base64": base64.b64encode(image).decode()}]},
        )
        assert r.status_code == 200, r.text
        record = r.json()["records"][0]
        assert record["_status"]["code"] == 200 and record["best_label"]["name"] == "ship"
        r = client.post(
            "/v1/classify/",
            headers=h,
            data={"task": task_id},
            files={"image_file": ("s.png", image, "image/png")},
        )
        assert r.status_code == 200 and r.json()["best_label"]["label_name"] == "ship", r.text


@pytest.mark.parametrize("value", ["efficientnet_lite9", " , ", "efficientnet_lite0,resnet50"])
def test_an_unknown_backbone_stops_the_start(settings: Settings, value: str) -> None:
    bad = settings.model_copy(update={"backbone": value})
    with pytest.raises(ConfigError, match="efficientnet_lite0, efficientnet_lite2"):
        create_app(bad)


def test_vize_serve_says_what_to_set(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("VIZE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("VIZE_DEFAULT_USER", "")
    monkeypatch.setenv("VIZE_BACKBONE", "efficientnet_lite9")
    assert main(["serve", "--port", "1"]) == 2
    err = capsys.readouterr().err
    assert "VIZE_BACKBONE='efficientnet_lite9'" in err and "efficientnet_lite2" in err
