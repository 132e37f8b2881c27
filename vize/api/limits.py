"""Request-body size limit: refuse oversized bodies with 413 before they are read or spooled.

Without it a multipart upload is parsed (and spooled to disk) whole before the route can see
that the image is over ``max_upload_bytes``, and a JSON body is read whole into memory."""

from __future__ import annotations

import json

from fastapi import FastAPI
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vize.config import Settings
from vize.errors import with_envelope

MULTIPART_OVERHEAD = 1024 * 1024  # form fields and boundaries besides the image
CLASSIFY_BATCH = 10  # the largest base64 batch an endpoint takes (/v2/classify)


def max_body_bytes(settings: Settings) -> int:
    """Room for a full classify batch of base64 images (4/3 of the bytes) and some fields."""
    return settings.max_upload_bytes * 4 // 3 * CLASSIFY_BATCH + MULTIPART_OVERHEAD


class BodyTooLarge(HTTPException):
    """An HTTPException, so FastAPI's body reading re-raises it instead of answering 400."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"Request body is larger than {limit // (1024 * 1024)} MB.")


class BodySizeLimit:
    """Pure ASGI middleware: checks Content-Length up front and counts streamed chunks."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await _reject(send, self.max_bytes, scope["path"])
            return
        started = False
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
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
            await _reject(send, self.max_bytes, scope["path"])


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isdigit() else None
    return None


async def _reject(send: Send, limit: int, path: str) -> None:
    exc = BodyTooLarge(limit)
    reply = with_envelope(path, {"detail": exc.detail, "code": "too_large"}, 413)
    body = json.dumps(reply).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),  # the unread body must not be taken for the next request
    ]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def install_body_limit(app: FastAPI, settings: Settings) -> None:
    """Hook for ``create_app``: call it once, after ``install_error_handlers``."""
    app.add_middleware(BodySizeLimit, max_bytes=max_body_bytes(settings))
