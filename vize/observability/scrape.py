"""Who may read metrics, and a small HTTP endpoint for processes without the API (``vize
worker``, on ``VIZE_WORKER_METRICS_ADDRESS``): the same rules as the API's ``/metrics``, so a
worker's figures are no more public than a replica's."""

from __future__ import annotations

import hmac
import ipaddress
import logging
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from vize.config import Settings
from vize.observability.metrics import CONTENT_TYPE

log = logging.getLogger("vize.metrics")


def scrape_allowed(settings: Settings, authorization: str, client_host: str | None) -> bool:
    """``VIZE_METRICS_TOKEN`` (a bearer token) or ``VIZE_METRICS_ALLOW`` (client networks);
    with neither set nobody may read metrics."""
    if settings.metrics_token:
        scheme, _, sent = authorization.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(
            sent.strip().encode(), settings.metrics_token.encode()
        ):
            return True
    if settings.metrics_allow and client_host:
        try:
            address = ipaddress.ip_address(client_host)
        except ValueError:
            return False
        return any(address in ipaddress.ip_network(n, strict=False) for n in settings.metrics_allow)
    return False


def parse_address(value: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` -> (host, port); ValueError with the expected form."""
    host, sep, port = value.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"expected host:port (e.g. 0.0.0.0:9808), got {value!r}")
    return host, int(port)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: str, settings: Settings, body: Callable[[], bytes]) -> None:
        host, port = parse_address(address)
        if ":" in host:
            self.address_family = socket.AF_INET6
        self.settings, self.body = settings, body
        super().__init__((host, port), _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        allowed = scrape_allowed(
            self.server.settings, self.headers.get("Authorization", ""), self.client_address[0]
        )
        if self.path.split("?")[0] != "/metrics" or not allowed:
            # 404 like the API: a client that may not scrape learns nothing.
            self._answer(404, b'{"detail": "Not Found.", "code": "not_found"}', "application/json")
            return
        try:
            body = self.server.body()
        except Exception:
            log.exception("metrics exposition failed")
            error = b'{"detail": "Internal error.", "code": "internal"}'
            self._answer(500, error, "application/json")
            return
        self._answer(200, body, CONTENT_TYPE)

    def _answer(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Scrapes every few seconds would drown the job events (as /metrics on the API)."""


class ScrapeServer:
    """``/metrics`` on ``address`` in a daemon thread, until ``close``."""

    def __init__(self, address: str, settings: Settings, body: Callable[[], bytes]) -> None:
        self._server = _Server(address, settings, body)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="vize-metrics", daemon=True
        )
        self._thread.start()
        log.info("metrics on %s (port %d)", address, self.port)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
