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


def test_one_email_for_a_short_training_two_for_a_long_one(
    settings: Settings, alice: dict, smtp: tuple[_Inbox, int]
) -> None:
    """Issue 15: a one-second training sent two emails; the "started" one now goes out
    only once a training has run ``notify_start_after_seconds`` (0 here: at once)."""
    inbox, port = smtp
    h = alice["headers"]
    s = settings.model_copy(update={"smtp_url": f"smtp://127.0.0.1:{port}"})
    with app_client(create_app(s)) as client:
        assert client.patch("/v2/account/", headers=h, json={"notify_email": True}).is_success
        t = task_with_images(client, h)
        client.post(f"/v2/task/{t['task']['id']}/train/", headers=h)
        assert wait_training(client, h, t["task"]["id"])["state"] == "succeeded"
    _wait_mails(inbox, 1)
    subjects = [m["Subject"] for m in inbox.messages]
    assert len(subjects) == 1 and "finished: accuracy" in subjects[0], subjects
    assert inbox.messages[0]["To"] == "alice@example.com"
    at_once = s.model_copy(update={"notify_start_after_seconds": 0})
    with app_client(create_app(at_once)) as client:
        client.post(f"/v2/task/{t['task']['id']}/train/", headers=h)
        assert wait_training(client, h, t["task"]["id"])["state"] == "succeeded"
    _wait_mails(inbox, 3)
    subjects = [m["Subject"] for m in inbox.messages]
    assert len(subjects) == 3 and "started" in subjects[1] and "accuracy" in subjects[2]


def test_off_by_default_outbox_and_switch_off(
    client: AppClient, settings: Settings, alice: dict
) -> None:
    h = alice["headers"]
    assert client.get("/v2/account/", headers=h).json()["notify_email"] is False
    t = task_with_images(client, h)
    client.post(f"/v2/task/{t['task']['id']}/train/", headers=h)
    wait_training(client, h, t["task"]["id"])
    outbox = Path(settings.data_dir) / "outbox"
    assert len(list(outbox.glob("*.eml"))) == 0  # nobody asked for it
    client.patch("/v2/account/", headers=h, json={"notify_email": True})
    client.post(f"/v2/task/{t['task']['id']}/train/", headers=h)
    wait_training(client, h, t["task"]["id"])
    assert len(list(outbox.glob("*.eml"))) == 1
    r = client.patch("/v2/account/", headers=h, json={"notify_email": False})
    assert r.status_code == 200 and r.json()["notify_email"] is False
    client.post(f"/v2/task/{t['task']['id']}/train/", headers=h)
    wait_training(client, h, t["task"]["id"])
    assert len(list(outbox.glob("*.eml"))) == 1


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
