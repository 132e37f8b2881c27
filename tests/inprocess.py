"""A synchronous test client over ``httpx.ASGITransport``: the app runs in-process, with its
lifespan, on an event loop in a background thread (anyio blocking portal)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractAsyncContextManager, contextmanager
from typing import Any

import httpx
from anyio.from_thread import BlockingPortal, start_blocking_portal
from fastapi import FastAPI


class AppClient:
    def __init__(self, portal: BlockingPortal, client: httpx.AsyncClient) -> None:
        self._portal = portal
        self._client = client
        self.transport = client._transport

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        response: httpx.Response = self._portal.call(
            lambda: self._client.request(method, url, **kwargs)
        )
        return response

    def get(self, url: str, **kw: Any) -> httpx.Response:
        return self.request("GET", url, **kw)

    def post(self, url: str, **kw: Any) -> httpx.Response:
        return self.request("POST", url, **kw)

    def put(self, url: str, **kw: Any) -> httpx.Response:
        return self.request("PUT", url, **kw)

    def patch(self, url: str, **kw: Any) -> httpx.Response:
        return self.request("PATCH", url, **kw)

    def delete(self, url: str, **kw: Any) -> httpx.Response:
        return self.request("DELETE", url, **kw)

    def call(self, fn: Any, *args: Any) -> Any:
        """Run an async callable on the app's loop (for async SDK code under test)."""
        return self._portal.call(fn, *args)

    @contextmanager
    def from_address(self, host: str) -> Iterator[AppClient]:
        """Another client of the same running app, whose requests come from ``host``."""
        app = self.transport.app  # type: ignore[attr-defined]
        transport = httpx.ASGITransport(app=app, client=(host, 40000))
        client = httpx.AsyncClient(transport=transport, base_url=str(self._client.base_url))
        try:
            yield AppClient(self._portal, client)
        finally:
            self._portal.call(client.aclose)


@contextmanager
def app_client(app: FastAPI, base_url: str = "http://testserver") -> Iterator[AppClient]:
    with start_blocking_portal() as portal:
        lifespan: AbstractAsyncContextManager[Any] = app.router.lifespan_context(app)
        portal.call(lifespan.__aenter__)
        try:
            transport = httpx.ASGITransport(app=app)
            client = httpx.AsyncClient(transport=transport, base_url=base_url)
            try:
                yield AppClient(portal, client)
            finally:
                portal.call(client.aclose)
        finally:
            portal.call(lifespan.__aexit__, None, None, None)
