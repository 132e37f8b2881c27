"""The operator's HTTP side: a middleware that logs one line per request and counts it,
``/metrics`` (not public unless configured), ``/health/live`` and ``/health/ready``."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vize.api.limits import USER_ID_KEY
from vize.config import Settings
from vize.errors import NotFound
from vize.observability.health import readiness
from vize.observability.logs import log_request
from vize.observability.metrics import CONTENT_TYPE, Metrics
from vize.observability.scrape import scrape_allowed

REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")  # a caller's id is kept only if this tame
LOG_USER_KEY = "vize_log_user_id"  # set by get_current_user (reads); the gate sets writes
OPS_PATHS = ("/metrics", "/health/live", "/health/ready")


def route_template(scope: Scope) -> str:
    """The matched route's template, never the raw path: bounded label values, and no ids or
    tokens from a path in metrics or logs."""
    route = scope.get("route")
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    raw = str(scope.get("path", ""))
    if not template:
        return "/static" if raw.startswith("/static/") else "unmatched"
    # FastAPI keeps an included router's routes without the inclusion prefix (/v2, /v1 ...):
    # the matched path's leading segments beyond the template's are that prefix.
    extra = raw.count("/") - str(template).count("/")
    prefix = "/".join(raw.split("/")[: extra + 1]) if extra > 0 else ""
    return prefix + str(template)


class RequestObserver:
    """Pure ASGI (so streaming and the request gate are untouched): request id in and out
    (``X-Request-ID``), then one log line and the metrics once the response has started."""

    def __init__(self, app: ASGIApp, metrics: Callable[[], Metrics | None]) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        given = _header(scope, b"x-request-id")
        request_id = given if given and REQUEST_ID.match(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500  # what the client gets if the app fails before answering

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            self._record(scope, request_id, status, time.perf_counter() - started)

    def _record(self, scope: Scope, request_id: str, status: int, seconds: float) -> None:
        route = route_template(scope)
        if route in OPS_PATHS:  # probes every few seconds would drown the real traffic
            return
        state = scope.get("state") or {}
        log_request({
            "request_id": request_id, "user_id": state.get(USER_ID_KEY) or state.get(LOG_USER_KEY),
            "method": scope["method"], "route": route, "status": status,
            "duration_ms": round(seconds * 1000, 1),
        })  # fmt: skip
        metrics = self.metrics()
        if metrics is not None:
            metrics.observe_request(scope["method"], route, status, seconds)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def metrics_allowed(settings: Settings, request: Request) -> bool:
    client = request.client.host if request.client else None
    return scrape_allowed(settings, request.headers.get("authorization", ""), client)


def install_operations(app: FastAPI, settings: Settings) -> None:
    """The middleware and the three routes. Called by ``create_app``."""

    def metrics() -> Metrics | None:
        # None before the lifespan has built the services (or after a failed start).
        services = getattr(getattr(app.state, "vize", None), "services", None)
        return services.metrics if services is not None else None

    app.add_middleware(RequestObserver, metrics=metrics)

    @app.get("/metrics", include_in_schema=False)
    async def metrics_endpoint(request: Request) -> Response:
        current = metrics()
        if current is None or not metrics_allowed(settings, request):
            # 404, not 401/403: an address that may not scrape learns nothing.
            raise NotFound("Not Found.")
        body = await run_in_threadpool(current.exposition)
        return Response(body, media_type=CONTENT_TYPE)

    @app.get("/health/live", tags=["meta"], summary="The process answers (liveness)")
    async def live() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/health/ready", tags=["meta"], summary="Database, broker, storage, models ready")
    async def ready(request: Request) -> JSONResponse:
        state: Any = request.app.state.vize
        checks = await run_in_threadpool(readiness, state)
        ok = all(c["ok"] for c in checks.values())
        if not ok:
            logging.getLogger("vize.health").warning("not ready: %s", checks)
        return JSONResponse(
            {"status": "ok" if ok else "unavailable", "checks": checks},
            status_code=200 if ok else 503,
        )
