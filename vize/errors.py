"""One error envelope for every error: ``{"detail": str, "code": str, ["errors": [...]]}``."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException


class ConfigError(Exception):
    """A setting the service cannot start with; the message says what to set instead."""


class VizeError(Exception):
    """A failure the client caused or must know about; services raise it, the app renders it."""

    status = 400
    code = "bad_request"

    def __init__(
        self,
        detail: str,
        *,
        code: str | None = None,
        status: int | None = None,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        if code:
            self.code = code
        if status:
            self.status = status
        self.extra = extra or {}
        self.headers = headers


class NotFound(VizeError):
    status = 404
    code = "not_found"


class Unauthorized(VizeError):
    status = 401
    code = "not_authenticated"

    def __init__(self, detail: str, **kwargs: Any) -> None:
        super().__init__(detail, **kwargs)
        # RFC 9110: a 401 names the scheme to use.
        self.headers = {"WWW-Authenticate": "Token", **(self.headers or {})}


class Conflict(VizeError):
    status = 409
    code = "conflict"


class InvalidInput(VizeError):
    status = 400
    code = "invalid"


class PayloadTooLarge(VizeError):
    status = 413
    code = "too_large"


class UnsupportedMedia(VizeError):
    status = 415
    code = "unsupported_media_type"


class TooManyRequests(VizeError):
    status = 429
    code = "rate_limited"


class StorageError(VizeError):
    status = 507
    code = "storage_error"


_STATUS_CODES = {
    400: "bad_request",
    401: "not_authenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid",
    429: "rate_limited",
}


def error_body(detail: str, code: str, **extra: Any) -> dict[str, Any]:
    return {"detail": detail, "code": code, **extra}


# Classification answers carry Ximilar's envelope, errors too: its client reads
# ``result["status"]`` on every reply of these and raises its own exception from it.
ENVELOPE_PATHS = frozenset({"/v2/classify", "/recognition/v2/classify", "/v1/classify"})


def with_envelope(path: str, body: dict[str, Any], status: int) -> dict[str, Any]:
    """``body`` plus Ximilar's envelope when ``path`` is a classify route. Also for replies
    made outside the exception handlers (the body-limit middleware's 413)."""
    if path.rstrip("/") in ENVELOPE_PATHS:
        return {**body, "status": {"code": status, "text": body["detail"]}, "records": []}
    return body


def _reply(
    request: Request, body: dict[str, Any], status: int, headers: Any = None
) -> JSONResponse:
    body = with_envelope(request.url.path, body, status)
    return JSONResponse(body, status_code=status, headers=headers)


def _validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    errors = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "form")]
        errors.append({"field": ".".join(loc) or None, "message": err.get("msg", "invalid")})
    return errors


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(VizeError)
    async def _vize(request: Request, exc: VizeError) -> JSONResponse:
        body = error_body(exc.detail, exc.code, **exc.extra)
        return _reply(request, body, exc.status, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _validation_errors(exc)
        summary = "; ".join(f"{e['field'] or 'body'}: {e['message']}" for e in errors)
        body = error_body(f"Invalid input: {summary}", "invalid", errors=errors)
        return _reply(request, body, 422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(exc.status_code, "error")
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404 and detail == "Not Found":
            detail = "Not found."
        headers = getattr(exc, "headers", None)
        return _reply(request, error_body(detail, code), exc.status_code, headers)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(error_body("Internal server error.", "internal_error"), status_code=500)
