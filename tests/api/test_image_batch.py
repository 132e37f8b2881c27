"""JSON batch upload (``records`` with ``_base64`` / ``_url``) and the URL fetcher's guard."""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.api.helpers import assert_error, create_label
from tests.helpers import png_bytes
from tests.inprocess import AppClient
from vize.config import Settings

IMAGE = png_bytes(42, size=(20, 10))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def post_records(client: AppClient, headers: dict, records: list[Any]) -> dict[str, Any]:
    r = client.post("/v2/training-image/", headers=headers, json={"records": records})
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_base64_batch_reports_each_record(client: AppClient, alice: dict) -> None:
    h = alice["headers"]
    label = create_label(client, h)
    body = post_records(client, h, [
        {"_base64": b64(png_bytes(1)), "labels": [label["id"]], "meta_data": {"k": 1}, "mine": 7},
        {"_base64": "!!! not base64 !!!"},
        {"_base64": b64(png_bytes(2)), "labels": ["0a8c8186-aee8-47c8-9eaf-348103feb14d"]},
        {"_base64": b64(b"plain text")},
        {"nothing": True},
        "not an object",
        {"_base64": "data:image/png;base64," + b64(png_bytes(3)), "test_image": True},
        {"_base64": b64(png_bytes(1))},
    ])  # fmt: skip
    statuses = [(r["_status"]["code"], r["_status"].get("error")) for r in body["records"]]
    assert statuses == [
        (201, None), (400, "invalid_base64"), (404, "not_found"), (415, "unsupported_image_type"),
        (400, "required"), (400, "invalid_record"), (201, None), (200, None),
    ]  # fmt: skip
    first, dup = body["records"][0], body["records"][-1]
    assert first["mine"] == 7 and "_base64" not in first  # own fields echoed, payload not
    assert [lbl["id"] for lbl in first["labels"]] == [label["id"]] and first["meta_data"] == {
        "k": 1
    }
    assert dup["id"] == first["id"] and "already exists" in dup["detail"]
    assert body["records"][6]["test_image"] is True
    assert body["status"]["code"] == 200 and "5 record(s) failed" in body["status"]["text"]
    listed = client.get("/v2/training-image/", headers=h).json()
    assert listed["count"] == 2


def test_line_wrapped_base64_is_accepted(client: AppClient, alice: dict) -> None:
    encoded = b64(IMAGE)
    wrapped = "\n".join(encoded[i : i + 76] for i in range(0, len(encoded), 76))
    body = post_records(client, alice["headers"], [{"_base64": wrapped}])
    assert body["records"][0]["_status"]["code"] == 201, body


@pytest.mark.parametrize(
    ("records", "code"),
    [([], "invalid_records"), ("x", "invalid_records"), ([{}] * 101, "too_many_records")],
)
def test_batch_shape_errors(client: AppClient, alice: dict, records: Any, code: str) -> None:
    r = client.post("/v2/training-image/", headers=alice["headers"], json={"records": records})
    assert_error(r, 400, code)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/x.png",
        "http://localhost/x.png",
        "http://10.0.0.1/x.png",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/x.png",
        "http://0.0.0.0/x.png",
        "file:///etc/passwd",
        "http://[::1",
        "http://example.com:99999/",
        "http:///nohost",
    ],
)
def test_url_records_to_internal_or_invalid_addresses_are_refused(
    client: AppClient, alice: dict, url: str
) -> None:
    body = post_records(client, alice["headers"], [{"_url": url}])
    status = body["records"][0]["_status"]
    assert (status["code"], status["error"]) == (400, "url_refused"), status
    assert body["records"][0]["_url"] == url


class _Handler(BaseHTTPRequestHandler):
    hosts: list[str]

    def do_GET(self) -> None:
        self.hosts.append(self.headers.get("Host", ""))
        port = self.server.server_address[1]
        routes = {
            "/img.png": (200, {"Content-Type": "image/png"}, IMAGE),
            "/to-private": (302, {"Location": "http://10.0.0.1/img.png"}, b""),
            "/to-localhost": (302, {"Location": f"http://localhost:{port}/img.png"}, b""),
            "/to-self": (301, {"Location": "/img.png"}, b""),
            "/huge": (200, {"Content-Length": str(50 * 1024 * 1024)}, b""),
        }
        status, headers, body = routes.get(self.path, (404, {}, b"missing"))
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        if "Content-Length" not in headers:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:  # keep test output quiet
        pass


@pytest.fixture
def image_server() -> Iterator[tuple[str, list[str]]]:
    hosts: list[str] = []
    handler = type("Handler", (_Handler,), {"hosts": hosts})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", hosts
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_url_records_from_an_allowed_host(
    client: AppClient, alice: dict, settings: Settings, image_server: tuple[str, list[str]]
) -> None:
    base, hosts = image_server
    refused = post_records(client, alice["headers"], [{"_url": f"{base}/img.png"}])
    assert refused["records"][0]["_status"]["error"] == "url_refused"  # not allowed yet
    assert hosts == []  # refused before any connection
    settings.url_allow_hosts = ["127.0.0.1"]  # read per request by the running app
    body = post_records(client, alice["headers"], [
        {"_url": f"{base}/img.png", "file_name": "remote.png"},
        {"_url": f"{base}/to-self"},
        {"_url": f"{base}/to-private"},
        {"_url": f"{base}/to-localhost"},
        {"_url": f"{base}/missing"},
        {"_url": f"{base}/huge"},
    ])  # fmt: skip
    statuses = [(r["_status"]["code"], r["_status"].get("error")) for r in body["records"]]
    assert statuses == [
        (201, None), (200, None), (400, "url_refused"), (400, "url_refused"),
        (400, "url_unreachable"), (413, "too_large"),
    ]  # fmt: skip
    created = body["records"][0]
    assert (created["img_width"], created["img_height"]) == (20, 10)
    assert created["file_name"] == "remote.png"
    assert client.get(created["img_path"], headers=alice["headers"]).content == IMAGE
    assert set(hosts) == {base.removeprefix("http://")}  # the Host header names the host
