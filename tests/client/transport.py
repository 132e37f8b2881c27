"""Transports for testing the synchronous SDK against the real app, without mocking the SDK.

``InProcessTransport`` forwards each request to the ASGI app running on the loop of
``tests.inprocess.AppClient``; ``FlakyTransport`` wraps any transport and really fails chosen
requests, before or after the app has handled them.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from tests.inprocess import AppClient


class InProcessTransport(httpx.BaseTransport):
    def __init__(self, app_client: AppClient) -> None:
        self._app = app_client
        self.requests: list[httpx.Request] = []
        self._lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            self.requests.append(request)
        body = request.read()
        # A fresh request with a byte body: the ASGI transport reads it asynchronously.
        forwarded = httpx.Request(
            request.method, request.url, headers=request.headers, content=body
        )

        async def send() -> tuple[int, httpx.Headers, bytes]:
            response = await self._app.transport.handle_async_request(forwarded)
            data = await response.aread()
            await response.aclose()
            return response.status_code, response.headers, data

        status, headers, data = self._app.call(send)
        return httpx.Response(status, headers=headers, content=data, request=request)


Failure = str  # "connect" | "timeout" | "503" | "500-after" | "timeout-after"


@dataclass
class FlakyTransport(httpx.BaseTransport):
    """Fails the first matching requests as listed in ``failures``, then passes through.

    ``connect``/``503`` fail before the app sees the request; ``500-after`` and
    ``timeout-after`` let the app do the work and then lose its answer.
    """

    inner: httpx.BaseTransport
    failures: list[Failure]
    match: Callable[[httpx.Request], bool] = lambda _: True
    calls: int = 0
    failed: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _next_failure(self, request: httpx.Request) -> Failure | None:
        with self._lock:
            if not self.match(request):
                return None
            self.calls += 1
            if not self.failures:
                return None
            self.failed += 1
            return self.failures.pop(0)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        failure = self._next_failure(request)
        if failure == "connect":
            raise httpx.ConnectError("connection refused (injected)", request=request)
        if failure == "timeout":
            raise httpx.ReadTimeout("read timed out (injected)", request=request)
        if failure == "503":
            return httpx.Response(
                503, json={"detail": "Busy.", "code": "unavailable"}, request=request
            )
        response = self.inner.handle_request(request)
        if failure == "500-after":
            return httpx.Response(
                500,
                json={"detail": "Internal server error.", "code": "internal_error"},
                request=request,
            )
        if failure == "timeout-after":
            raise httpx.ReadTimeout("answer lost (injected)", request=request)
        return response


class HashReportingTransport(httpx.BaseTransport):
    """Adds ``sha256`` to listed training images, as a server that reports content hashes
    does; it hashes each image's file, fetched through the wrapped transport."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner
        self.uploads = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.rstrip("/")
        if request.method == "POST" and path == "/v2/training-image":
            self.uploads += 1
        response = self.inner.handle_request(request)
        if request.method != "GET" or path != "/v2/training-image" or response.status_code != 200:
            return response
        body = json.loads(response.read())
        for image in body["results"]:
            file_url = request.url.copy_with(
                path=f"/v2/training-image/{image['id']}/file/", query=None
            )
            data = self.inner.handle_request(
                httpx.Request("GET", file_url, headers=request.headers)
            ).read()
            image["sha256"] = hashlib.sha256(data).hexdigest()
        return httpx.Response(200, json=body, request=request)
