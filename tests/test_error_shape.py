"""The error envelope, locked: every error is JSON ``{"detail": str, "code": str}`` (plus
``errors`` on 422) and nothing else at the top level, whatever produced it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.api.helpers import assert_error
from tests.helpers import png_bytes
from tests.inprocess import AppClient, app_client
from vize.api.limits import RequestGate, max_body_bytes
from vize.config import Settings

UUID = "0a8c8186-aee8-47c8-9eaf-348103feb14d"
ENDPOINTS = [
    ("GET", "/v2/task/"), ("POST", "/v2/task/"), ("GET", f"/v2/task/{UUID}/"),
    ("PATCH", f"/v2/task/{UUID}"), ("DELETE", f"/v2/task/{UUID}/"),
    ("POST", f"/v2/task/{UUID}/add-label/"), ("GET", "/v2/label/"), ("POST", "/v2/label"),
    ("GET", f"/v2/label/{UUID}"), ("POST", f"/v2/label/{UUID}/add-task/"),
    ("GET", "/v2/training-image/"), ("POST", "/v2/training-image/"),
    ("GET", f"/v2/training-image/{UUID}/file/"), ("GET", f"/v2/training-image/{UUID}/thumb"),
    ("POST", f"/v2/training-image/{UUID}/remove-label/"), ("GET", "/v2/account/"),
    ("PATCH", "/recognition/v2/account"), ("POST", "/v2/account/regenerate-token/"),
    ("GET", "/recognition/v2/usage/"),
]  # fmt: skip


@pytest.fixture
def embedded_worker() -> bool:
    return False  # no job runs here: spare each test starting a worker


@pytest.fixture
def limited_app(app: FastAPI, settings: Settings) -> FastAPI:
    """The app with its request gate (body caps), which create_app installs."""
    assert any(m.cls is RequestGate for m in app.user_middleware)
    return app


@pytest.fixture
def client(limited_app: FastAPI) -> Iterator[AppClient]:
    with app_client(limited_app) as c:
        yield c


@pytest.mark.parametrize(
    ("authorization", "code"),
    [
        (None, "not_authenticated"),
        ("Token wrong-token", "invalid_token"),
        ("Token " + "f" * 65, "invalid_token"),
        ("Token", "bad_auth_header"),
        ("Basic YWxpY2U6cGFzcw==", "bad_auth_header"),
        ("Token\tabc", "bad_auth_header"),
    ],
    ids=["none", "wrong", "too-long", "no-value", "basic", "tab"],
)
def test_401(client: AppClient, alice: dict, authorization: str | None, code: str) -> None:
    headers = {"Authorization": authorization} if authorization is not None else {}
    for method, path in ENDPOINTS:
        # A body that would be invalid anyway: authentication is checked first.
        r = client.request(method, path, headers=headers, content=b"{not json")
        assert_error(r, 401, code)
        assert r.headers["www-authenticate"] == "Token"


NOT_FOUND = [
    "/v2/nothing-here/", "/v3/task/", f"/v2/task/{UUID}/", "/v2/task/not-a-uuid/",
    f"/v2/label/{UUID}", f"/v2/training-image/{UUID}/", f"/v2/training-image/{UUID}/file",
    f"/recognition/v2/training-image/{UUID}/thumb/",
]  # fmt: skip
NOT_ALLOWED = [
    ("DELETE", "/v2/task/"), ("PUT", "/v2/label/"), ("GET", f"/v2/task/{UUID}/add-label/"),
    ("DELETE", "/v2/account/"), ("POST", "/v2/usage"), ("GET", "/v2/account/regenerate-token"),
    ("PATCH", f"/v2/training-image/{UUID}/file/"), ("POST", f"/recognition/v2/label/{UUID}/"),
]  # fmt: skip


def test_404(client: AppClient, alice: dict) -> None:
    for path in NOT_FOUND:
        assert_error(client.get(path, headers=alice["headers"]), 404, "not_found")


def test_405(client: AppClient, alice: dict) -> None:
    for method, path in NOT_ALLOWED:
        r = client.request(method, path, headers=alice["headers"])
        assert_error(r, 405, "method_not_allowed")
        assert r.headers.get("allow"), (method, path)


def test_413_image_too_large(client: AppClient, alice: dict) -> None:
    data = png_bytes(1) + b"\0" * (10 * 1024 * 1024)
    files = {"img_path": ("big.png", data, "image/png")}
    r = client.post("/v2/training-image/", headers=alice["headers"], files=files)
    assert_error(r, 413, "too_large")


@pytest.mark.parametrize("path", ["/v2/training-image/", "/v2/task/", "/v2/label/"])
def test_413_body_over_the_limit(
    client: AppClient, alice: dict, settings: Settings, path: str
) -> None:
    size = max_body_bytes(settings) + 1
    r = client.post(path, headers={**alice["headers"], "Content-Type": "application/json"},
                    content=b" " * size)  # fmt: skip
    assert_error(r, 413, "too_large")


def test_415_not_an_image(client: AppClient, alice: dict) -> None:
    files = {"img_path": ("notes.txt", b"hello", "text/plain")}
    r = client.post("/v2/training-image/", headers=alice["headers"], files=files)
    assert_error(r, 415, "unsupported_image_type")


BAD_QUERIES = [
    "/v2/task/?page=0", "/v2/label/?page_size=0", "/v2/training-image/?page=x",
    "/v2/training-image/?test=perhaps", "/recognition/v2/task/?page_size=100000",
]  # fmt: skip


def test_422_query_validation(client: AppClient, alice: dict) -> None:
    for path in BAD_QUERIES:
        body = assert_error(client.get(path, headers=alice["headers"]), 422, "invalid")
        assert body["errors"] and all(set(e) == {"field", "message"} for e in body["errors"])
        assert body["errors"][0]["field"] in ("page", "page_size", "test")


JSON_WRITES = [
    ("POST", "/v2/task/"), ("PATCH", f"/v2/task/{UUID}"), ("POST", "/v2/label/"),
    ("PATCH", "/v2/account/"), ("POST", "/v2/training-image/"),
]  # fmt: skip


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"[1, 2]", b'"text"', b'{"name": NaN}', b"\xff\xfe", b"[" * 100_000],
    ids=["syntax", "array", "string", "nan", "not-utf8", "deep"],
)
def test_400_invalid_json_body(client: AppClient, alice: dict, body: bytes) -> None:
    headers = {**alice["headers"], "Content-Type": "application/json"}
    for method, path in JSON_WRITES:
        r = client.request(method, path, headers=headers, content=body)
        assert_error(r, 400, "invalid_json")


MULTIPART = "multipart/form-data"
BAD_REQUESTS = [
    ("POST", "/v2/task/", {"json": {}}, "required"),
    ("POST", "/v2/task/", {"json": {"name": "x", "type": "?"}}, "invalid_task_type"),
    ("POST", "/v2/label/", {"data": {"description": "no name"}}, "required"),
    ("POST", "/v2/training-image/", {"json": {"records": []}}, "invalid_records"),
    ("PATCH", "/v2/account/", {"json": {"email": "nope"}}, "invalid_email"),
    ("POST", "/v2/task/", {"content": b"--x\r\nbroken", "ctype": f"{MULTIPART}; boundary=x"}, None),
    ("POST", "/v2/task/", {"content": b"junk", "ctype": MULTIPART}, None),
]


@pytest.mark.parametrize(("method", "path", "kw", "code"), BAD_REQUESTS)
def test_400_validation(
    client: AppClient, alice: dict, method: str, path: str, kw: dict[str, Any], code: str | None
) -> None:
    kw = dict(kw)
    headers = dict(alice["headers"])
    if "ctype" in kw:
        headers["Content-Type"] = kw.pop("ctype")
    assert_error(client.request(method, path, headers=headers, **kw), 400, code)


def test_500_is_the_envelope_too(app: FastAPI, settings: Settings) -> None:
    def boom() -> None:
        raise RuntimeError("secret internals")

    app.add_api_route("/boom", boom)
    with app_client(app) as c:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)

        async def get() -> httpx.Response:
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as raw:
                return await raw.get("/boom")

        r = c.call(get)
    body = assert_error(r, 500, "internal_error")
    assert "secret" not in r.text and body["detail"] == "Internal server error."
