"""A model is served with the backbone, precision and view it was trained with: one trained
before this change (fp32, head format 1 without a view) classifies the same after the upgrade
and after ``VIZE_PRECISION=int8``, and new trainings then record int8."""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np

from tests.helpers import image as dataset_image
from tests.helpers import task_with_images, wait_training
from tests.inprocess import AppClient, app_client
from vize.app import create_app
from vize.config import Settings
from vize.ml.predictor import Head

PROBE = [dataset_image(name, n).read_bytes() for name, n in (("ship", 0), ("cat", 30))]


def _classify(client: AppClient, h: dict, task_id: str, version: int) -> list[dict[str, Any]]:
    records = [{"_base64": base64.b64encode(img).decode()} for img in PROBE]
    body = {"task_id": task_id, "version": version, "records": records, "descriptor": 1}
    r = client.post("/v2/classify/", headers=h, json=body)
    assert r.status_code == 200, r.text
    return list(r.json()["records"])


def _probs(records: list[dict[str, Any]]) -> np.ndarray:
    return np.array(
        [[lbl["prob"] for lbl in sorted(r["labels"], key=lambda x: x["id"])] for r in records]
    )


def _as_format_1(head: Head) -> bytes:
    """The bytes the code before this change wrote: format 1, no ``view``."""
    buf = io.BytesIO()
    np.savez_compressed(
        buf,
        format_version=np.array(1),
        kind=np.array(head.kind),
        label_ids=np.array(head.label_ids, dtype=np.str_),
        weights=head.weights,
        bias=head.bias,
        backbones=np.array(head.backbones, dtype=np.str_),
        block_dims=np.array(head.block_dims, dtype=np.int64),
        threshold=np.array(head.threshold),
        normalisation=np.array(head.normalisation),
    )
    return buf.getvalue()


def test_an_fp32_model_classifies_the_same_after_a_switch_to_int8(
    settings: Settings, alice: dict
) -> None:
    h = alice["headers"]
    assert settings.precision == "fp32"  # the default
    with app_client(create_app(settings)) as client:
        task_id = task_with_images(client, h)["task"]["id"]
        assert client.post(f"/v2/task/{task_id}/train/", headers=h).status_code == 202
        assert wait_training(client, h, task_id)["state"] == "succeeded"
        model = client.get(f"/v2/model/?task={task_id}", headers=h).json()["results"][0]
        old = _classify(client, h, task_id, 1)
    # The artifact as the code before this change stored it (head format 1, no view).
    key = f"models/{task_id}/{model['id']}.npz"
    path = settings.blob_dir / key
    head = Head.from_bytes(path.read_bytes())
    assert head.backbones == ("efficientnet_lite0",) and head.view == "whole"
    path.write_bytes(_as_format_1(head))

    int8 = settings.model_copy(update={"precision": "int8"})
    with app_client(create_app(int8)) as client:
        again = _classify(client, h, task_id, 1)
        np.testing.assert_allclose(_probs(again), _probs(old), atol=1e-5)
        np.testing.assert_allclose(
            [r["_descriptor"] for r in again], [r["_descriptor"] for r in old], atol=1e-5
        )
        # A new training uses int8 and says so; its answers differ from fp32 (slightly).
        assert client.post(f"/v2/task/{task_id}/train/", headers=h).status_code == 202
        assert wait_training(client, h, task_id)["state"] == "succeeded"
        new = _classify(client, h, task_id, 2)
        assert [r["best_label"]["name"] for r in new] == ["ship", "cat"]
        assert not np.allclose([r["_descriptor"] for r in new], [r["_descriptor"] for r in old])
        models = client.get(f"/v2/model/?task={task_id}", headers=h).json()["results"]
    by_version = {m["version"]: m for m in models}
    assert by_version[1]["metrics"]["features"]["precision"] == ["fp32"]
    assert by_version[2]["metrics"]["features"] == {
        "backbones": ["efficientnet_lite0"],
        "precision": ["int8"],
        "view": "whole",
    }
    assert Head.from_bytes(
        (settings.blob_dir / f"models/{task_id}/{by_version[2]['id']}.npz").read_bytes()
    ).backbones == ("efficientnet_lite0:int8",)
