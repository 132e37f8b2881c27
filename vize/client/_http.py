"""The HTTP layer: authentication, retries with backoff, error mapping, pagination."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

import httpx

from vize import __version__
from vize.client.errors import (
    NotFound,
    VizeAPIError,
    VizeConnectionError,
    from_response,
    parse_retry_after,
)
from vize.client.objects import Json, Page

T = TypeVar("T")
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "PATCH", "DELETE"})
# The request never reached the server: retrying cannot do anything twice.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# 429 and 503 mean "not processed, come back later" for any method.
_RETRY_ANY = frozenset({429, 503})
# These may come after the server did the work: retried only where repeating is harmless.
_RETRY_IDEMPOTENT = frozenset({500, 502, 504})
MAX_PAGE_SIZE = 1000


def api_root(url: str) -> str:
    """``http://host:8000`` → ``http://host:8000/v2``; a URL already ending in /v2 is kept,
    so ``https://api.ximilar.com/recognition`` and ``.../recognition/v2`` both work."""
    root = url.strip().rstrip("/")
    if not root:
        raise ValueError("The server URL is empty.")
    if "://" not in root:
        root = "http://" + root
    return root if root.endswith("/v2") else root + "/v2"


class Http:
    """A thin synchronous wrapper over ``httpx.Client``; safe to share between threads."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 60.0,
        retries: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        workspace: str | None = None,
    ) -> None:
        self.root = api_root(url)
        # Sent with every request (the server reads it as Ximilar's client sends it): the
        # workspace every call acts in; None is the user's default workspace.
        self.workspace = workspace or None
        self.retries = max(0, retries)
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._sleep = sleep
        self._client = httpx.Client(
            base_url=self.root + "/",
            transport=transport,
            timeout=timeout,
            headers={"User-Agent": f"vize-client/{__version__}"},
        )
        self.set_token(token)

    def set_token(self, token: str) -> None:
        self._client.headers["Authorization"] = f"Token {token}"

    def close(self) -> None:
        self._client.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        data: Mapping[str, Any] | None = None,
        files: Any = None,
        idempotent: bool | None = None,
    ) -> httpx.Response:
        """Send with retries; raise the typed error for a non-2xx answer.

        ``idempotent`` says whether repeating the request after a possible partial success is
        harmless (default: by method). Uploads pass True because the server deduplicates.
        """
        method = method.upper()
        safe = method in IDEMPOTENT_METHODS if idempotent is None else idempotent
        clean = {k: v for k, v in (params or {}).items() if v is not None}
        if self.workspace is not None:
            clean.setdefault("workspace", self.workspace)
        attempt = 0
        while True:
            try:
                response = self._client.request(
                    method, path, params=clean, json=json, data=data, files=files
                )
            except httpx.TransportError as exc:
                retryable = isinstance(exc, _NOT_SENT) or safe
                if not retryable or attempt >= self.retries:
                    raise self._connection_error(exc, method, path) from exc
            else:
                if response.is_success:
                    return response
                error = from_response(response)
                if attempt > 0 and method == "DELETE" and isinstance(error, NotFound):
                    # An earlier attempt deleted it but its answer was lost.
                    return response
                retry_after = parse_retry_after(response.headers.get("retry-after"))
                if not self._should_retry(response.status_code, safe, attempt, retry_after):
                    raise error
                self._sleep(self._delay(attempt, retry_after))
                attempt += 1
                continue
            self._sleep(self._delay(attempt, None))
            attempt += 1

    def _should_retry(
        self, status: int, safe: bool, attempt: int, retry_after: float | None
    ) -> bool:
        if attempt >= self.retries:
            return False
        if retry_after is not None and retry_after > self.max_backoff:
            # A quota reset or lock-out: sleeping through it would only look like a hang;
            # the caller gets the error with its retry_after and decides.
            return False
        return status in _RETRY_ANY or (safe and status in _RETRY_IDEMPOTENT)

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(self.max_backoff, retry_after)
        # Full jitter keeps many parallel uploaders from retrying in lockstep.
        ceiling = min(self.max_backoff, self.backoff * (2**attempt))
        return ceiling * (0.5 + random.random() / 2)

    def _connection_error(self, exc: Exception, method: str, path: str) -> VizeConnectionError:
        url = f"{self.root}/{path.lstrip('/')}"
        kind = "timeout" if isinstance(exc, httpx.TimeoutException) else "connection_error"
        detail = f"Cannot reach the Vize server at {self.root}: {exc or type(exc).__name__}"
        return VizeConnectionError(0, detail, kind, method=method, url=url)

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.request(method, path, **kwargs)
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError as exc:
            raise VizeAPIError(
                response.status_code,
                "The server answered with something that is not JSON.",
                "invalid_response",
                method=method,
                url=str(response.request.url),
            ) from exc

    def page(
        self, path: str, parse: Callable[[Json], T], params: Mapping[str, Any] | None = None
    ) -> Page[T]:
        return Page.from_json(self.json("GET", path, params=params), parse)

    def iterate(
        self,
        path: str,
        parse: Callable[[Json], T],
        params: Mapping[str, Any] | None = None,
        page_size: int = 200,
    ) -> Iterator[T]:
        """Every item of a list, page by page. Page numbers are followed rather than the
        ``next`` links, whose host may be wrong behind a proxy."""
        size = max(1, min(page_size, MAX_PAGE_SIZE))
        number = 1
        while True:
            page = self.page(path, parse, {**(params or {}), "page": number, "page_size": size})
            yield from page.results
            if not page.next or not page.results:
                return
            number += 1
