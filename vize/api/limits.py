"""The request gate: body caps per route and, for API writes, authentication before the body.

A route that parses its body first spends the work (a 60 MB JSON array took 3.3 s and
+358 MB, and stalled the event loop) on anyone, token or not. This pure ASGI middleware sees a
request before any route: it refuses a declared body over the route's cap with 413, checks
the credential of an API write (and the lockout of its address) in a worker thread with the
body still unread, answers 401/429 at once with ``Connection: close``, and counts the bytes
that do get streamed against the same cap. Routes then find the checked user id in the scope
and load the user by primary key instead of looking the token up again."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vize.config import Settings
from vize.errors import VizeError, with_envelope

MULTIPART_OVERHEAD = 1024 * 1024  # form fields and boundaries besides the image
API_PREFIXES = ("/v2/", "/recognition/v2/", "/v1/")
BATCH_ROUTES = ("classify", "training-image")  # routes whose bodies carry images
WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
USER_ID_KEY = "vize_user_id"  # in scope["state"]: the user the gate authenticated

# The credential check the gate runs: (scope) -> user id, raising VizeError when refused.
Authenticator = Callable[[Scope], str]


def body_cap(settings: Settings, path: str) -> int:
    """The largest body a path takes: image batches, API JSON, or a web form."""
    if not path.startswith(API_PREFIXES):
        return settings.max_upload_bytes + MULTIPART_OVERHEAD  # web forms: one image at most
    route = path.rstrip("/").rsplit("/", 1)[-1]
    if route in BATCH_ROUTES:
        return max(settings.max_batch_body_bytes, settings.max_upload_bytes + MULTIPART_OVERHEAD)
    return settings.max_json_body_bytes


def max_body_bytes(settings: Settings) -> int:
    """The largest body any route takes (what a client can send at most anywhere)."""
    return max(body_cap(settings, p) for p in ("/", "/v2/classify", "/v2/task/"))


def user_id_from_gate(scope: Scope) -> str | None:
    state = scope.get("state")
    return state.get(USER_ID_KEY) if isinstance(state, dict) else None


class BodyTooLarge(HTTPException):
    """An HTTPException, so FastAPI's body reading re-raises it instead of answering 400."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, _too_large_detail(limit))


def _too_large_detail(limit: int) -> str:
    size = f"{limit // (1024 * 1024)} MB" if limit >= 1024 * 1024 else f"{limit // 1024} KB"
    return f"Request body is larger than {size} (the limit of this endpoint)."


class RequestGate:
    def __init__(self, app: ASGIApp, settings: Settings, authenticate: Authenticator) -> None:
        self.app = app
        self.settings = settings
        self.authenticate = authenticate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        cap = body_cap(self.settings, path)
        declared = _content_length(scope)
        if declared is not None and declared > cap:
            await _reject(send, scope["path"], 413, _too_large_detail(cap), "too_large")
            return
        if scope["method"] in WRITE_METHODS and path.startswith(API_PREFIXES):
            try:
                user_id = await run_in_threadpool(self.authenticate, scope)
            except VizeError as exc:
                await _reject(send, path, exc.status, exc.detail, exc.code, exc.headers)
                return
            scope.setdefault("state", {})[USER_ID_KEY] = user_id
        await self._forward(scope, receive, send, cap)

    async def _forward(self, scope: Scope, receive: Receive, send: Send, cap: int) -> None:
        started = False
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > cap:
                    raise BodyTooLarge(cap)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            # Raised where no exception handler sees it (e.g. a body read in middleware).
            if started:
                raise
            await _reject(send, scope["path"], 413, _too_large_detail(cap), "too_large")


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isdigit() else None
    return None


async def _reject(
    send: Send,
    path: str,
    status: int,
    detail: str,
    code: str,
    headers: dict[str, str] | None = None,
) -> None:
    # The classify routes' replies carry Ximilar's envelope, the gate's refusals too.
    body = json.dumps(with_envelope(path, {"detail": detail, "code": code}, status)).encode()
    raw = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),  # the unread body must not be taken for the next request
    ]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


def install_request_gate(app: FastAPI, settings: Settings, authenticate: Authenticator) -> None:
    """Hook for ``create_app``: call it once, after ``install_error_handlers``."""
    app.add_middleware(RequestGate, settings=settings, authenticate=authenticate)


def gate_request(scope: Scope) -> Request:
    """A request object for header-only checks (its body cannot be read)."""

    async def no_body() -> Any:
        raise RuntimeError("the gate never reads the body")

    return Request(scope, receive=no_body)
