"""Typed exceptions of the SDK: one class per kind of failure a caller may want to handle."""

from __future__ import annotations

import re
from typing import Any

import httpx


class VizeError(Exception):
    """Root of every error the SDK raises."""


class VizeAPIError(VizeError):
    """The server answered with an error (or could not be reached: ``status`` 0).

    ``detail`` is the server's human-readable message, ``code`` its machine-readable code
    (e.g. ``not_enough_images``) and ``body`` the whole decoded error document, which may carry
    more (``errors`` on 422, ``labels`` on ``not_enough_images``).
    """

    def __init__(
        self,
        status: int,
        detail: str,
        code: str = "error",
        body: dict[str, Any] | None = None,
        *,
        method: str = "",
        url: str = "",
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.code = code
        self.body: dict[str, Any] = body or {}
        self.method = method
        self.url = url

    def __str__(self) -> str:
        where = f" ({self.method} {self.url})" if self.method else ""
        status = f"HTTP {self.status}" if self.status else "no response"
        return f"{self.detail} [{status}, {self.code}]{where}"


class VizeConnectionError(VizeAPIError):
    """No usable answer after all retries: refused connection, DNS failure, timeout."""


class AuthError(VizeAPIError):
    """401: missing or invalid API token."""


class PermissionDenied(AuthError):
    """403: authenticated, but not allowed."""


class NotFound(VizeAPIError):
    """404: the object does not exist or belongs to another user."""


class ValidationError(VizeAPIError):
    """400/422: the request was refused as invalid; ``errors`` lists field problems."""

    @property
    def errors(self) -> list[dict[str, Any]]:
        errors = self.body.get("errors")
        return errors if isinstance(errors, list) else []


class NotTrained(ValidationError):
    """The task has no trained model yet (code ``not_trained``)."""


class NotEnoughData(ValidationError):
    """Training refused: too few labels or images (``labels`` names the short ones)."""

    @property
    def labels(self) -> list[dict[str, Any]]:
        labels = self.body.get("labels")
        return labels if isinstance(labels, list) else []


class PayloadTooLarge(ValidationError):
    """413: the image is larger than the server accepts."""


class UnsupportedMedia(ValidationError):
    """415: not a JPEG, PNG or WebP image."""


class Conflict(VizeAPIError):
    """409: the request conflicts with the current state."""


class TrainingInProgress(Conflict):
    """409 ``training_in_progress``: a training of this task is already running."""


class RateLimited(VizeAPIError):
    """429: slow down; ``retry_after`` is the server's hint in seconds, when it gave one."""

    @property
    def retry_after(self) -> float | None:
        return parse_retry_after(self.body.get("_retry_after"))


class QuotaExceeded(RateLimited):
    """429 ``quota_exceeded``: the monthly allowance is used up (``retry_after``: until reset)."""


class ServerError(VizeAPIError):
    """5xx after all retries."""


class TrainingFailed(VizeError):
    """A training ended in state ``failed``; ``reason`` is the server's explanation."""

    def __init__(self, reason: str, *, task_id: str = "", job: Any = None) -> None:
        super().__init__(f"Training failed: {reason}")
        self.reason = reason
        self.task_id = task_id
        self.job = job


class AmbiguousName(VizeError):
    """Several objects have the name given where one was meant; use the id instead."""


class TrainingTimeout(VizeError, TimeoutError):
    """``train(wait=True, timeout=...)`` gave up waiting; the training goes on on the server."""


# Codes that deserve a narrower class than their HTTP status alone would give.
_BY_CODE: dict[str, type[VizeAPIError]] = {
    "not_trained": NotTrained,
    "not_enough_images": NotEnoughData,
    "not_enough_labels": NotEnoughData,
    "training_in_progress": TrainingInProgress,
    "quota_exceeded": QuotaExceeded,
}
_BY_STATUS: dict[int, type[VizeAPIError]] = {
    400: ValidationError,
    401: AuthError,
    403: PermissionDenied,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    415: UnsupportedMedia,
    422: ValidationError,
    429: RateLimited,
}


def error_class(status: int, code: str) -> type[VizeAPIError]:
    if code in _BY_CODE:
        return _BY_CODE[code]
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    return ServerError if status >= 500 else VizeAPIError


def from_response(response: httpx.Response) -> VizeAPIError:
    """Build the typed error for a non-2xx answer, tolerating non-JSON bodies (proxies)."""
    body: dict[str, Any]
    try:
        decoded = response.json()
        body = decoded if isinstance(decoded, dict) else {"detail": str(decoded)}
    except ValueError:
        text = response.text.strip()
        body = {"detail": text[:300] or response.reason_phrase or "HTTP error"}
    detail = str(body.get("detail") or response.reason_phrase or "HTTP error")
    code = str(body.get("code") or f"http_{response.status_code}")
    if "retry-after" in response.headers:
        body["_retry_after"] = response.headers["retry-after"]
    cls = error_class(response.status_code, code)
    request = response.request
    return cls(
        response.status_code, detail, code, body, method=request.method, url=str(request.url)
    )


def parse_retry_after(value: Any) -> float | None:
    """Seconds from a ``Retry-After`` header (HTTP dates are rare in APIs; ignored)."""
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except (TypeError, ValueError):
        return None


_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def existing_image_id(detail: str) -> str | None:
    """The id in an "Image already exists: <id>" answer (the Ximilar client relies on it)."""
    if "already exists" not in detail.lower():
        return None
    match = _UUID.search(detail)
    return match.group(0) if match else None
