"""Real HTTP servers on loopback addresses, for the URL-fetching tests: one that serves images
and redirects (the allowed host), one standing for an internal service that must never be
reached, one that answers slowly (requests in flight during a shutdown)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# path -> (status, headers, body)
Handler = Callable[[str], tuple[int, dict[str, str], bytes]]


@dataclass
class Server:
    url: str
    seen: list[str] = field(default_factory=list)  # "GET /path" of every request received


class _V6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


@contextmanager
def http_server(
    handler: Handler, host: str = "127.0.0.1", delay: float = 0.0, drip: float = 0.0
) -> Iterator[Server]:
    """Serve ``handler`` on a free port of ``host`` (an IPv4 or IPv6 loopback address), after
    ``delay`` seconds, sending the body a byte every ``drip`` seconds if set."""
    box: dict[str, Server] = {}

    class Handle(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            if length:
                self.rfile.read(length)
            box["server"].seen.append(f"{self.command} {self.path}")
            time.sleep(delay)
            status, headers, body = handler(self.path)
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not drip:
                self.wfile.write(body)
                return
            try:
                for i in range(len(body)):
                    self.wfile.write(body[i : i + 1])
                    self.wfile.flush()
                    time.sleep(drip)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up waiting: what the drip is there to cause

        do_POST = do_GET

        def log_message(self, *args: object) -> None:  # keep test output clean
            pass

    cls = _V6Server if ":" in host else ThreadingHTTPServer
    httpd = cls((host, 0), Handle)
    httpd.daemon_threads = True
    port = httpd.server_address[1]
    box["server"] = Server(f"http://{f'[{host}]' if ':' in host else host}:{port}")
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield box["server"]
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def image_and_redirects(png: bytes) -> Handler:
    """``/img.png`` is an image; ``/to?<url>`` redirects to <url> (302)."""

    def handle(path: str) -> tuple[int, dict[str, str], bytes]:
        if path.startswith("/to?"):
            return 302, {"Location": path[len("/to?") :]}, b""
        if path == "/img.png":
            return 200, {"Content-Type": "image/png"}, png
        return 404, {}, b"not found"

    return handle


def secret(path: str) -> tuple[int, dict[str, str], bytes]:
    """An internal service: anything it answers would be a leak."""
    return 200, {"Content-Type": "image/png"}, b"internal secret"
