"""The real ``vize`` admin commands, run as processes on a data dir in tmp."""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.api.helpers import image_bytes
from tests.inprocess import app_client
from vize.app import create_app
from vize.config import Settings

ROOT = Path(__file__).resolve().parents[1]


def vize_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIZE_")}
    return {**env, "VIZE_DATA_DIR": str(data_dir), **extra}


def run_vize(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vize.cli", *args],
        env=vize_env(data_dir), cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_migrate_and_create_user(tmp_path: Path) -> None:
    data = tmp_path / "data"
    migrated = run_vize(data, "migrate")
    assert migrated.returncode == 0, migrated.stderr
    assert "up to date" in migrated.stdout and (data / "vize.sqlite3").is_file()
    created = run_vize(
        data, "users", "create", "bob", "--email", "b@x.org", "--password", "secret123"
    )
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip().splitlines()[-1]
    assert token.isalnum() and len(token) >= 32  # the token alone on the last line
    settings = Settings(data_dir=data, default_user="", embedded_worker=False, warm_up=False)
    with app_client(create_app(settings)) as client:
        r = client.get("/v2/account/", headers={"Authorization": f"Token {token}"})
        assert r.status_code == 200, r.text
        assert (r.json()["username"], r.json()["email"]) == ("bob", "b@x.org")
    duplicate = run_vize(data, "users", "create", "bob", "--password", "other-secret")
    assert duplicate.returncode != 0
    assert "bob" in duplicate.stderr and "already exists" in duplicate.stderr
    assert "Traceback" not in duplicate.stderr and duplicate.stdout == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["users", "create", "bad name"], "Username"),
        (["users", "create", "eve", "--password", "short"], "Password"),
        (["users", "create", "eve", "--email", "nope"], "Email"),
    ],
)
def test_create_user_refusals(tmp_path: Path, args: list[str], message: str) -> None:
    result = run_vize(tmp_path / "data", *args)
    assert result.returncode != 0 and message in result.stderr
    assert "Traceback" not in result.stderr


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """``vize serve`` on a fresh data dir: (base URL, the printed token of the default user)."""
    port = _free_port()
    env = vize_env(tmp_path / "data", VIZE_DEFAULT_USER="admin", VIZE_EMBEDDED_WORKER="false")
    proc = subprocess.Popen(
        [sys.executable, "-m", "vize.cli", "serve", "--port", str(port)],
        env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(ln) for ln in proc.stdout or []])
    reader.start()
    try:
        token = _wait_for_token(lines, proc)
        base = f"http://127.0.0.1:{port}"
        _wait_until_up(base, proc)
        yield base, token
    finally:
        proc.send_signal(signal.SIGINT)  # uvicorn's graceful shutdown
        try:
            assert proc.wait(30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
            reader.join(10)
            if proc.stdout is not None:
                proc.stdout.close()


def _wait_for_token(lines: queue.Queue[str], proc: subprocess.Popen[str]) -> str:
    seen: list[str] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1).strip()
        except queue.Empty:
            assert proc.poll() is None, f"server exited: {seen}"
            continue
        if seen and "API token" in seen[-1]:
            return line
        seen.append(line)
    raise AssertionError(f"no token printed: {seen}")


def _wait_until_up(base: str, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, "server exited"
        try:
            if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError("server did not answer /health")


@pytest.mark.e2e
def test_serve_and_the_documented_flow_over_http(served: tuple[str, str]) -> None:
    base, token = served
    with httpx.Client(base_url=base, headers={"Authorization": f"Token {token}"}, timeout=30) as c:
        assert c.get("/v2/task/").json()["count"] == 0
        task = c.post("/v2/task/", files={"name": (None, "My new task"),
                                          "description": (None, "Demo task")})  # fmt: skip
        assert task.status_code == 201, task.text
        task_id = task.json()["id"]
        label = c.post("/v2/label/", data={"name": "New label"})
        assert label.status_code == 201, label.text
        label_id = label.json()["id"]
        # Straight after the 201: the label must already be committed.
        r = c.post(f"/v2/task/{task_id}/add-label/", files={"label_id": (None, label_id)})
        assert r.status_code == 200 and r.json()["labels"][0]["id"] == label_id, r.text
        photo = image_bytes("JPEG", size=(64, 48))
        r = c.post("/v2/training-image/", files={"img_path": ("photo.jpg", photo, "image/jpeg")})
        assert r.status_code == 201, r.text
        image = r.json()
        assert image["img_path"].startswith(base)
        r = c.post(f"/v2/training-image/{image['id']}/add-label", data={"label_id": label_id})
        assert r.status_code == 200 and len(r.json()["labels"]) == 1, r.text
        assert c.get(image["img_path"]).content == photo
        # The link handed out is signed (Ximilar's client downloads it without the token);
        # the same path without the signature is the owner's only.
        assert httpx.get(image["img_path"]).content == photo
        assert httpx.get(image["img_path"].split("?")[0]).status_code == 401
        r = c.get(f"/recognition/v2/training-image/?task={task_id}")
        assert [i["id"] for i in r.json()["results"]] == [image["id"]]
        assert c.delete(f"/v2/task/{task_id}/").status_code == 204
