"""The request-body size limit (vize/api/limits.py): declared and streamed bodies."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from fastapi import FastAPI

from tests.api.helpers import assert_error
from tests.helpers import png_bytes
from tests.inprocess import AppClient, app_client
from vize.api.limits import BodySizeLimit, install_body_limit, max_body_bytes
from vize.app import create_app
from vize.config import Settings


@pytest.fixture
def small(settings: Settings) -> Settings:
    settings.max_upload_bytes = 3000  # body limit: 3000 * 4/3 * 10 + 1 MiB
    return settings


@pytest.fixture
def limited(small: Settings) -> Iterator[AppClient]:
    app = create_app(small)
    if not any(m.cls is BodySizeLimit for m in app.user_middleware):
        install_body_limit(app, small)
    with app_client(app) as c:
        yield c


def test_limit_leaves_room_for_a_classify_batch(small: Settings) -> None:
    assert max_body_bytes(small) == 3000 * 4 // 3 * 10 + 1024 * 1024
    assert max_body_bytes(Settings()) > 10 * (10 * 1024 * 1024) * 4 // 3


def test_declared_length_over_the_limit(limited: AppClient, small: Settings, alice: dict) -> None:
    limit = max_body_bytes(small)
    headers = {**alice["headers"], "Content-Type": "application/json"}
    r = limited.post("/v2/task/", headers=headers, content=b" " * (limit + 1))
    assert_error(r, 413, "too_large")
    assert r.headers["connection"] == "close"
    # Exactly at the limit the request reaches the route (which finds an empty JSON body).
    r = limited.post("/v2/task/", headers=headers, content=b" " * limit)
    assert_error(r, 400, "required")


def test_streamed_body_over_the_limit(limited: AppClient, small: Settings, alice: dict) -> None:
    limit = max_body_bytes(small)

    async def chunks(total: int) -> AsyncIterator[bytes]:
        sent = 0
        while sent < total:
            piece = min(64 * 1024, total - sent)
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
        for _ in range(max_body_bytes(small) // (64 * 1024) + 2):
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


def test_create_app_installs_the_body_limit(app: FastAPI) -> None:
    assert any(m.cls is BodySizeLimit for m in app.user_middleware)
