"""Training notifications: real SMTP (aiosmtpd), the outbox fallback, a signed webhook."""

from __future__ import annotations

import email
import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from tests.helpers import task_with_images, wait_training
from tests.inprocess import AppClient, app_client
from vize.app import create_app
from vize.config import Settings


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[email.message.Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[_Inbox, int]]:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    inbox = _Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


def _wait_mails(inbox: _Inbox, n: int) -> None:
    import time

    deadline = time.monotonic() + 10
    while len(inbox.messages) < n and time.monotonic() < deadline:
        time.sleep(0.05)


def test_emails_on_start_and_success_over_smtp(
    settings: Settings, alice: dict, smtp: tuple[_Inbox, int]
) -> None:
    inbox, port = smtp
    s = settings.model_copy(update={"smtp_url": f"smtp://127.0.0.1:{port}"})
    with app_client(create_app(s)) as client:
        t = task_with_images(client, alice["headers"])
        client.post(f"/v2/task/{t['task']['id']}/train/", headers=alice["headers"])
        assert wait_training(client, alice["headers"], t["task"]["id"])["state"] == "succeeded"
    _wait_mails(inbox, 2)
    subjects = [m["Subject"] for m in inbox.messages]
    assert len(subjects) == 2, subjects
    assert "started" in subjects[0] and "accuracy" in subjects[1]
    assert inbox.messages[0]["To"] == "alice@example.com"


def test_outbox_and_switch_off(client: AppClient, settings: Settings, alice: dict) -> None:
    h = alice["headers"]
    t = task_with_images(client, h)
    client.post(f"/v2/task/{t['task']['id']}/train/", headers=h)
    wait_training(client, h, t["task"]["id"])
    outbox = Path(settings.data_dir) / "outbox"
    assert len(list(outbox.glob("*.eml"))) == 2
    r = client.patch("/v2/account/", headers=h, json={"notify_email": False})
    assert r.status_code == 200 and r.json()["notify_email"] is False
    client.post(f"/v2/task/{t['task']['id']}/train/", headers=h)
    wait_training(client, h, t["task"]["id"])
    assert len(list(outbox.glob("*.eml"))) == 2


def test_signed_webhook_on_training_end(settings: Settings, alice: dict) -> None:
    received: list[tuple[bytes, str]] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((body, self.headers["X-Vize-Signature"]))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Receiver)
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    s = settings.model_copy(update={"url_allow_hosts": ["127.0.0.1"]})
    try:
        with app_client(create_app(s)) as client:
            h = alice["headers"]
            t = task_with_images(client, h)
            url = f"http://127.0.0.1:{server.server_address[1]}/hook"
            task = client.patch(
                f"/v2/task/{t['task']['id']}/", headers=h, json={"webhook_url": url}
            ).json()
            client.post(f"/v2/task/{task['id']}/train/", headers=h)
            assert wait_training(client, h, task["id"])["state"] == "succeeded"
    finally:
        server.shutdown()
        server.server_close()
        serving.join()
    assert len(received) == 1
    body, signature = received[0]
    expected = hmac.new(task["webhook_secret"].encode(), body, hashlib.sha256).hexdigest()
    assert signature == f"sha256={expected}"
    payload = json.loads(body)
    assert payload["event"] == "training_succeeded" and payload["version"] == 1
