"""The request gate (vize/api/limits.py): body caps per route, declared and streamed, and the
credential of an API write checked before its body is read."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from fastapi import FastAPI

from tests.api.helpers import assert_error
from tests.helpers import png_bytes
from tests.inprocess import AppClient, app_client
from vize.api.limits import RequestGate, body_cap, max_body_bytes
from vize.app import create_app
from vize.config import Settings


@pytest.fixture
def small(settings: Settings) -> Settings:
    settings.max_upload_bytes = 3000
    settings.max_batch_body_bytes = 40_000
    settings.max_json_body_bytes = 2048
    return settings


@pytest.fixture
def limited(small: Settings) -> Iterator[AppClient]:
    with app_client(create_app(small)) as c:
        yield c


def test_each_route_has_its_own_cap(small: Settings) -> None:
    for prefix in ("/v2", "/recognition/v2"):
        assert body_cap(small, f"{prefix}/classify") == 3000 + 1024 * 1024  # one image min
        assert body_cap(small, f"{prefix}/training-image/") == 3000 + 1024 * 1024
        assert body_cap(small, f"{prefix}/task/") == 2048
    assert body_cap(small, "/v1/classify/") == 3000 + 1024 * 1024
    defaults = Settings()
    assert body_cap(defaults, "/v2/classify") == 24 * 1024 * 1024  # not 140 MB any more
    assert body_cap(defaults, "/v2/label/") == 8 * 1024 * 1024
    assert max_body_bytes(defaults) == 24 * 1024 * 1024


def test_declared_length_over_the_limit(limited: AppClient, small: Settings, alice: dict) -> None:
    limit = body_cap(small, "/v2/task/")
    headers = {**alice["headers"], "Content-Type": "application/json"}
    r = limited.post("/v2/task/", headers=headers, content=b" " * (limit + 1))
    assert_error(r, 413, "too_large")
    assert r.headers["connection"] == "close"
    assert "2 KB" in r.json()["detail"]
    # Exactly at the limit the request reaches the route (which finds an empty JSON body).
    r = limited.post("/v2/task/", headers=headers, content=b" " * limit)
    assert_error(r, 400, "required")


def test_streamed_body_over_the_limit(limited: AppClient, small: Settings, alice: dict) -> None:
    limit = body_cap(small, "/v2/label/")

    async def chunks(total: int) -> AsyncIterator[bytes]:
        sent = 0
        while sent < total:
            piece = min(1024, total - sent)
            sent += piece
            yield b" " * piece

    headers = {**alice["headers"], "Content-Type": "application/json"}
    r = limited.post("/v2/label/", headers=headers, content=chunks(limit + 10))
    assert "content-length" not in r.request.headers  # chunked: only counting can catch it
    assert_error(r, 413, "too_large")
    r = limited.post("/v2/label/", headers=headers, content=chunks(100))
    assert_error(r, 400, "required")


def test_streamed_multipart_upload_over_the_limit(
    limited: AppClient, small: Settings, alice: dict
) -> None:
    boundary = "b0undary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="img_path"; filename="a.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()

    async def body() -> AsyncIterator[bytes]:
        yield head
        for _ in range(body_cap(small, "/v2/training-image/") // (64 * 1024) + 2):
            yield b"\0" * (64 * 1024)

    headers = {**alice["headers"], "Content-Type": f"multipart/form-data; boundary={boundary}"}
    r = limited.post("/v2/training-image/", headers=headers, content=body())
    assert_error(r, 413, "too_large")
    # Under the body limit, over the image limit: the route's own 413.
    files = {"img_path": ("a.png", png_bytes(1) + b"\0" * 3000, "image/png")}
    assert_error(limited.post("/v2/training-image/", headers=alice["headers"], files=files), 413)
    ok = limited.post("/v2/training-image/", headers=alice["headers"],
                      files={"img_path": ("a.png", png_bytes(1), "image/png")})  # fmt: skip
    assert ok.status_code == 201, ok.text


def test_create_app_installs_the_gate(app: FastAPI) -> None:
    assert any(m.cls is RequestGate for m in app.user_middleware)


class Body:
    """An ASGI receive that counts how much of a (large) body the app asked for."""

    def __init__(self, size: int, chunk: int = 64 * 1024) -> None:
        self.left, self.chunk, self.read = size, chunk, 0

    async def __call__(self) -> dict[str, Any]:
        piece = min(self.chunk, self.left)
        self.left -= piece
        self.read += piece
        return {"type": "http.request", "body": b"[" * piece, "more_body": self.left > 0}


def raw_post(client: AppClient, path: str, headers: dict[str, str], body: Body) -> tuple[int, dict]:
    """Call the app directly, so the test sees whether it read the body at all."""
    app = client.transport.app  # type: ignore[attr-defined]
    sent: list[dict[str, Any]] = []
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "server": ("testserver", 80), "client": ("203.0.113.9", 5000),
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
    }  # fmt: skip

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def call() -> None:
        await asyncio.wait_for(app(scope, body, send), 10)

    client.call(call)
    start = next(m for m in sent if m["type"] == "http.response.start")
    headers_out = {k.decode(): v.decode() for k, v in start["headers"]}
    return start["status"], headers_out


@pytest.mark.parametrize("path", ["/v2/classify", "/recognition/v2/classify/", "/v1/classify/",
                                  "/v2/training-image/", "/v2/task/"])  # fmt: skip
def test_a_wrong_token_is_refused_before_the_body_is_read(
    client: AppClient, alice: dict, settings: Settings, path: str
) -> None:
    size = body_cap(settings, path)  # as large as the route takes: the gate lets it pass
    body = Body(size)
    headers = {"Authorization": "Token wrong", "Content-Type": "application/json",
               "Content-Length": str(body.left)}  # fmt: skip
    status, out = raw_post(client, path, headers, body)
    assert status == 401
    assert out["connection"] == "close"
    assert body.read == 0
    # A body sent without a length (chunked) is not read either.
    body = Body(size)
    headers = {"Authorization": "Token wrong", "Content-Type": "application/json"}
    assert raw_post(client, path, headers, body)[0] == 401
    assert body.read == 0


def test_a_locked_out_address_is_refused_before_the_body_is_read(
    client: AppClient, settings: Settings
) -> None:
    for _ in range(settings.auth_failures_per_minute):
        body = Body(1024)
        raw_post(client, "/v2/classify", {"Authorization": "Token wrong"}, body)
    body = Body(20 * 1024 * 1024)
    status, out = raw_post(client, "/v2/classify", {"Authorization": "Token wrong"}, body)
    assert status == 429
    assert "retry-after" in out
    assert body.read == 0


def test_the_gate_passes_a_good_token_and_the_route_still_answers(
    client: AppClient, alice: dict
) -> None:
    r = client.post("/v2/classify", headers=alice["headers"], json={"records": []})
    assert_error(r, 400, "invalid_records")
    r = client.post("/v2/task/", headers=alice["headers"], json={"name": "t"})
    assert r.status_code == 201, r.text
