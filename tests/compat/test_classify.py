"""Classification as Ximilar's client calls it, errors included: every reply carries the
``status`` its ``check_json_status`` reads; training polled on Ximilar's status values."""

from __future__ import annotations

import base64
import time
from typing import Any

import pytest

from tests.api.helpers import assert_error
from tests.compat.ximilar import ClientError, P, Ximilar, check_json_status
from tests.helpers import images, png_bytes
from tests.inprocess import AppClient, app_client
from vize.api.limits import max_body_bytes
from vize.app import create_app

MISSING = "2b0e3f1c-5d5e-4d6e-9f00-000000000000"


@pytest.fixture
def x(client: AppClient, alice: dict) -> Ximilar:
    return Ximilar(client, alice["token"])


def rec(seed: int) -> dict[str, str]:
    return {"_base64": base64.b64encode(png_bytes(seed)).decode()}


def failed_as_the_client_sees_it(r: Any, status: int, code: str) -> None:
    assert_error(r, status, code)  # detail + code, and the envelope, checked there
    with pytest.raises(ClientError) as exc:
        check_json_status(r.json())
    assert exc.value.code == status and exc.value.text == r.json()["detail"]


@pytest.mark.parametrize("path", ["/recognition/v2/classify/", "/recognition/v2/classify",
                                  "/v2/classify/", "/v2/classify"])  # fmt: skip
def test_classify_errors_carry_the_envelope(x: Ximilar, path: str) -> None:
    task = x.post(f"{P}/task/", {"name": "untrained"}).json()
    cases = [
        ({"records": [rec(1)], "task_id": task["id"], "version": None}, 400, "not_trained"),
        ({"records": [rec(1)], "task_id": MISSING, "version": None}, 404, "not_found"),
        ({"records": [rec(n) for n in range(11)], "task_id": task["id"]}, 400, None),
        ({"records": [], "task_id": task["id"]}, 400, None),
        ({"task_id": task["id"]}, 400, None),
    ]
    for body, status, code in cases:
        r = x.post(path, body)
        if code is None:
            code = r.json().get("code", "")
        failed_as_the_client_sees_it(r, status, code)


def test_classify_auth_and_body_errors_carry_the_envelope(client: AppClient, x: Ximilar) -> None:
    bad = Ximilar(client, "not-a-token")
    failed_as_the_client_sees_it(bad.classify(MISSING, [rec(1)]), 401, "invalid_token")
    r = client.post(f"{P}/classify/", headers=x.headers, content=b"{not json")
    failed_as_the_client_sees_it(r, 400, "invalid_json")
    other = Ximilar(client, x.headers["Authorization"].split()[1], MISSING)
    failed_as_the_client_sees_it(other.classify(MISSING, [rec(1)]), 404, "workspace_not_found")


def test_other_routes_keep_the_plain_error_shape(x: Ximilar) -> None:
    body = assert_error(x.get(f"{P}/task/{MISSING}"), 404, "not_found")
    assert "status" not in body and "records" not in body


def _wait_trained(x: Ximilar, task_id: str, timeout: float = 180) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        task = x.get(f"{P}/task/{task_id}").json()
        if task["last_train_status"] not in ("WAITING", "IN_TRAINING"):
            return dict(task)
        time.sleep(0.2)
    raise AssertionError("training did not end")


def test_flow_upload_train_poll_classify(x: Ximilar) -> None:
    task = x.post(f"{P}/task/", {"name": "planes vs cars", "type": "multi_class"}).json()
    files = {}
    for name in ("airplane", "automobile"):
        lbl = x.post(f"{P}/label/", {"name": name, "type": "category"}).json()
        x.post(f"{P}/task/{task['id']}/add-label/", {"label_id": lbl["id"]})
        files[name] = images(name, 0, 8) + images(name, 30, 35)
        for f in files[name][:8]:  # upload_images: JSON base64, then add-label
            img = x.upload(base64.b64encode(f.read_bytes()).decode()).json()
            x.post(f"{P}/training-image/{img['id']}/add-label/", {"label_id": lbl["id"]})
    r = x.post(f"{P}/task/{task['id']}/train/")  # task.train()
    assert r.status_code == 202, r.text
    assert x.get(f"{P}/task/{task['id']}").json()["last_train_status"] in (
        "WAITING", "IN_TRAINING", "TRAINED")  # fmt: skip
    done = _wait_trained(x, task["id"])
    assert done["last_train_status"] == "TRAINED" and done["production_version"] == 1
    records = [{"_base64": base64.b64encode(f.read_bytes()).decode()}
               for f in files["airplane"][8:] + files["automobile"][8:]]  # fmt: skip
    for version in (None, 1):  # task.classify(records) / classify(records, version=1)
        r = x.classify(task["id"], records, version)
        assert r.status_code == 200, r.text
        result = r.json()
        check_json_status(result)
        assert len(result["records"]) == 10 and result["version"] == 1
        for record in result["records"]:
            assert record["_status"]["code"] == 200 and record["best_label"]["name"]
    r = x.classify(task["id"], records[:1], 2)  # a version that does not exist
    failed_as_the_client_sees_it(r, 400, "invalid_version")


def test_too_large_classify_body_carries_the_envelope(settings: Any, alice: dict) -> None:
    settings.max_upload_bytes = 3000
    with app_client(create_app(settings)) as small:
        headers = {**Ximilar(small, alice["token"]).headers}
        body = b" " * (max_body_bytes(settings) + 1)
        r = small.post(f"{P}/classify/", headers=headers, content=body)
        failed_as_the_client_sees_it(r, 413, "too_large")
        # Elsewhere the plain shape (assert_error refuses extra keys off the classify routes).
        assert_error(small.post(f"{P}/task/", headers=headers, content=body), 413, "too_large")
