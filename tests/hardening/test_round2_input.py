"""Issue 12, items 5, 9, 13 (names) and 14: deep or oversized JSON, integers out of range,
control characters in names, and the web's "go back" redirect. Every case a 4xx (never a
500), nothing stored or billed for it."""

from __future__ import annotations

import base64
import json
from typing import Any

from tests.api.helpers import assert_error, create_label, create_task, upload, upload_ok
from tests.helpers import png_bytes
from tests.inprocess import AppClient
from tests.web.helpers import form_csrf, post_form, sign_up


def nested(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


def test_deep_or_large_meta_data_is_refused_before_it_is_stored(
    client: AppClient, alice: dict[str, Any]
) -> None:
    h = alice["headers"]
    deep = nested(255)
    r = upload(client, h, png_bytes(1), meta_data=json.dumps(deep))
    assert_error(r, 400, "invalid_meta_data")
    b64 = base64.b64encode(png_bytes(2)).decode()
    r = client.post("/v2/training-image/", headers=h,
                    json={"records": [{"_base64": b64, "meta_data": deep}]})  # fmt: skip
    assert r.json()["records"][0]["_status"]["error"] == "invalid_meta_data", r.text
    big = {"x": "y" * 70_000}
    assert_error(upload(client, h, png_bytes(3), meta_data=json.dumps(big)), 400,
                 "invalid_meta_data")  # fmt: skip
    assert client.get("/v2/training-image/", headers=h).json()["count"] == 0
    image = upload_ok(client, h, 4, meta_data=json.dumps(nested(30)))  # deep enough is fine
    r = client.patch(f"/v2/training-image/{image['id']}/", headers=h, json={"meta_data": deep})
    assert_error(r, 400, "invalid_meta_data")
    listing = client.get("/v2/training-image/", headers=h)
    assert listing.status_code == 200 and listing.json()["results"][0]["meta_data"] == nested(30)


def test_deep_classify_record_fields_are_refused_before_billing(
    client: AppClient, alice: dict[str, Any]
) -> None:
    h = alice["headers"]
    task = create_task(client, h)
    b64 = base64.b64encode(png_bytes(5)).decode()
    body = {"task_id": task["id"], "records": [{"_base64": b64, "extra": nested(255)}]}
    assert_error(client.post("/v2/classify", headers=h, json=body), 400, "invalid_meta_data")
    body["records"] = [{"_base64": b64, "extra": "z" * 70_000}]
    assert_error(client.post("/v2/classify", headers=h, json=body), 400, "invalid_meta_data")
    assert client.get("/v2/usage/", headers=h).json()["today"] == 0


def test_integers_out_of_range_are_400_invalid_value(
    client: AppClient, alice: dict[str, Any]
) -> None:
    h = alice["headers"]
    task = create_task(client, h)
    url = f"/v2/task/{task['id']}/"
    for value in (2**63, -(10**20), 2**31):
        assert_error(client.patch(url, headers=h, json={"production_version": value}), 400,
                     "invalid_value")  # fmt: skip
        assert_error(client.patch(url, headers=h, data={"production_version": str(value)}), 400,
                     "invalid_value")  # fmt: skip
    b64 = base64.b64encode(png_bytes(6)).decode()
    for version in (1e308, 2**63, -(10**20)):
        body = {"task_id": task["id"], "version": version, "records": [{"_base64": b64}]}
        r = client.post("/v2/classify", headers=h, json=body)
        assert_error(r, 400, "invalid_value")
    form = {"task": task["id"], "version": str(2**63), "image_base64": b64}
    r = client.post("/v1/classify/", headers=h, data=form)
    assert_error(r, 400, "invalid_value")
    assert client.get("/health").status_code == 200


def test_web_deploy_form_with_a_huge_version_is_a_flash_not_a_500(client: AppClient) -> None:
    assert sign_up(client, "carol").status_code == 303
    r = post_form(client, "/tasks", {"name": "t", "type": "multi_class"})
    task_id = r.headers["location"].rsplit("/", 1)[-1]
    for version in (str(2**63), str(-(10**20))):
        r = post_form(client, f"/tasks/{task_id}/deploy", {"version": version})
        assert r.status_code == 303, r.text
    assert client.get(f"/tasks/{task_id}").status_code == 200


def test_names_are_single_line(client: AppClient, alice: dict[str, Any]) -> None:
    h = alice["headers"]
    for bad in ("a\r\nBcc: x@evil", "a\nb", "a\rb", "tab\there", "bell\x07", "a\u2028b", "a\x85b"):
        r = client.post("/v2/task/", headers=h, json={"name": bad})
        assert_error(r, 400, "invalid_name")
        r = client.post("/v2/label/", headers=h, json={"name": bad})
        assert_error(r, 400, "invalid_name")
    task, label = create_task(client, h, name="fine"), create_label(client, h, name="ok")
    r = client.patch(f"/v2/task/{task['id']}/", headers=h, json={"name": "x\r\ny"})
    assert_error(r, 400, "invalid_name")
    r = client.patch(f"/v2/label/{label['id']}/", headers=h, json={"name": "x\ny"})
    assert_error(r, 400, "invalid_name")
    assert client.get(f"/v2/task/{task['id']}/", headers=h).json()["name"] == "fine"
    assert client.get("/v2/task/", headers=h).json()["count"] == 1


def test_failed_form_goes_back_only_to_same_site_paths(client: AppClient) -> None:
    assert sign_up(client, "dave").status_code == 303
    for referer, expected in (
        ("http://testserver//evil.com/x", "/tasks"),
        ("http://testserver/\\evil.com/x", "/tasks"),
        ("http://evil.com/tasks/x", "/tasks"),
        ("http://testserver/account?tab=1", "/account?tab=1"),
    ):
        token_page = client.get("/tasks").text
        r = client.post(
            "/tasks",
            data={"csrf_token": form_csrf(token_page), "name": "", "type": "multi_class"},
            headers={"referer": referer},
        )
        assert r.status_code == 303, r.text
        assert r.headers["location"] == expected, referer
