"""The HTTP layer against a real local server: retries, backoff hints, error mapping."""

from __future__ import annotations

import json
import socket

import pytest

from tests.client.httpserver import serve
from vize.client import (
    AuthError,
    Conflict,
    NotEnoughData,
    NotFound,
    NotTrained,
    PermissionDenied,
    QuotaExceeded,
    RateLimited,
    ServerError,
    TrainingInProgress,
    ValidationError,
    VizeAPIError,
    VizeClient,
    VizeConnectionError,
)
from vize.client._http import api_root
from vize.client.errors import error_class, existing_image_id

ACCOUNT = json.dumps({"id": "u1", "username": "alice"}).encode()


def test_retries_503_then_succeeds_on_a_real_server() -> None:
    answers = [
        (503, {"Retry-After": "0"}, b'{"detail": "busy", "code": "busy"}'),
        (502, {}, b"<html>bad gateway</html>"),
    ]

    def handler(method: str, path: str) -> tuple[int, dict[str, str], bytes]:
        return answers.pop(0) if answers else (200, {"Content-Type": "application/json"}, ACCOUNT)

    with serve(handler) as (url, seen), VizeClient(url, "t", backoff=0.001) as sdk:
        assert sdk.account().username == "alice"
    assert seen == ["GET /v2/account/"] * 3


def test_rate_limit_is_retried_even_for_post_and_then_raised() -> None:
    def handler(method: str, path: str) -> tuple[int, dict[str, str], bytes]:
        return 429, {"Retry-After": "0"}, b'{"detail": "Slow down.", "code": "rate_limited"}'

    with (
        serve(handler) as (url, seen),
        VizeClient(url, "t", retries=2, backoff=0) as sdk,
        pytest.raises(RateLimited) as info,
    ):
        sdk.tasks.create("x")
    assert len(seen) == 3 and info.value.retry_after == 0.0
    assert info.value.detail == "Slow down."


def test_non_json_error_body_is_reported() -> None:
    def handler(method: str, path: str) -> tuple[int, dict[str, str], bytes]:
        return 500, {"Content-Type": "text/html"}, b"<h1>Oops</h1>"

    with (
        serve(handler) as (url, seen),
        VizeClient(url, "t", retries=1, backoff=0) as sdk,
        pytest.raises(ServerError) as info,
    ):
        sdk.tasks.list()
    assert info.value.status == 500 and info.value.code == "http_500"
    assert info.value.detail == "<h1>Oops</h1>" and len(seen) == 2


def test_unreachable_server() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with (
        VizeClient(f"http://127.0.0.1:{port}", "t", retries=1, backoff=0) as sdk,
        pytest.raises(VizeConnectionError) as info,
    ):
        sdk.tasks.list()
    assert info.value.status == 0 and "Cannot reach" in info.value.detail


def test_token_header_and_user_agent() -> None:
    headers: dict[str, str] = {}

    def handler(method: str, path: str) -> tuple[int, dict[str, str], bytes]:
        return 200, {"Content-Type": "application/json"}, ACCOUNT

    with serve(handler) as (url, _), VizeClient(url + "/", "secret") as sdk:
        response = sdk._http.request("GET", "account/")
        headers.update(response.request.headers)
    assert headers["authorization"] == "Token secret"
    assert headers["user-agent"].startswith("vize-client/")


@pytest.mark.parametrize(
    ("url", "root"),
    [
        ("http://h:8000", "http://h:8000/v2"),
        ("http://h:8000/", "http://h:8000/v2"),
        ("https://api.vize.ai/v2/", "https://api.vize.ai/v2"),
        ("https://api.ximilar.com/recognition", "https://api.ximilar.com/recognition/v2"),
        ("localhost:8000", "http://localhost:8000/v2"),
    ],
)
def test_api_root(url: str, root: str) -> None:
    assert api_root(url) == root


@pytest.mark.parametrize(
    ("status", "code", "cls"),
    [
        (400, "invalid", ValidationError),
        (422, "invalid", ValidationError),
        (400, "not_trained", NotTrained),
        (400, "not_enough_images", NotEnoughData),
        (400, "not_enough_labels", NotEnoughData),
        (401, "invalid_token", AuthError),
        (403, "csrf_failed", PermissionDenied),
        (404, "not_found", NotFound),
        (409, "conflict", Conflict),
        (409, "training_in_progress", TrainingInProgress),
        (429, "rate_limited", RateLimited),
        (429, "quota_exceeded", QuotaExceeded),
        (502, "http_502", ServerError),
        (418, "teapot", VizeAPIError),
    ],
)
def test_error_classes(status: int, code: str, cls: type[VizeAPIError]) -> None:
    assert error_class(status, code) is cls


def test_existing_image_id_from_detail() -> None:
    uid = "0a8c8186-aee8-47c8-9eaf-348103feb14d"
    assert existing_image_id(f"Image already exists: {uid}") == uid
    assert existing_image_id("Training image ALREADY EXISTS (id " + uid + ")") == uid
    assert existing_image_id("Label not found.") is None


def test_long_retry_after_is_not_slept_through() -> None:
    def handler(method: str, path: str) -> tuple[int, dict[str, str], bytes]:
        body = b'{"detail": "Monthly quota reached.", "code": "quota_exceeded"}'
        return 429, {"Retry-After": "86400"}, body

    with (
        serve(handler) as (url, seen),
        VizeClient(url, "t") as sdk,
        pytest.raises(QuotaExceeded) as info,
    ):
        sdk.classify("task", b"x")
    assert len(seen) == 1 and info.value.retry_after == 86400
    assert isinstance(info.value, RateLimited)
