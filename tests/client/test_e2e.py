"""The CLI against a live ``vize serve``: folder → trained, deployed model → predictions."""

from __future__ import annotations

import json
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.client.conftest import LABELS, cut_image_folder
from tests.helpers import image

VIZE = Path(sys.executable).with_name("vize")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _command() -> list[str]:
    return [str(VIZE)] if VIZE.exists() else [sys.executable, "-m", "vize.cli"]


def _read_token(lines: queue.Queue[str | None], timeout: float) -> str:
    """The server prints "... API token:" and the token on the next line."""
    deadline = time.monotonic() + timeout
    after_marker = False
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.2)
        except queue.Empty:
            continue
        if line is None:
            break
        if after_marker and line.strip():
            return line.strip()
        after_marker = "API token" in line
    raise AssertionError("the server printed no API token")


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[tuple[str, str]]:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIZE_")}
    env.update(
        VIZE_DATA_DIR=str(tmp_path / "data"),
        VIZE_DEFAULT_USER="admin",
        VIZE_MIN_IMAGES_PER_LABEL="5",
    )
    proc = subprocess.Popen(
        [*_command(), "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    url = f"http://127.0.0.1:{port}"
    try:
        token = _read_token(lines, timeout=120)
        _wait_healthy(url, proc)
        yield url, token
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        reader.join(timeout=5)
        if proc.stdout:
            proc.stdout.close()


def _wait_healthy(url: str, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the server exited"
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError("the server did not become healthy")


def _vize(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*_command(), *args], env=env, capture_output=True, text=True, timeout=300, check=False
    )


@pytest.mark.e2e
def test_folder_to_predictions_on_a_live_server(
    live_server: tuple[str, str], tmp_path: Path
) -> None:
    url, token = live_server
    folder = cut_image_folder(tmp_path / "folder", per_label=6)
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIZE_")}
    env["VIZE_CONFIG"] = str(tmp_path / "config.json")

    login = _vize("login", "--url", url, "--token", token, env=env)
    assert login.returncode == 0, login.stderr
    assert "as admin" in login.stdout

    imported = _vize("import", str(folder), "--task", "cifar", env=env)
    assert imported.returncode == 0, imported.stderr
    assert "uploaded 18, already there 0, failed 0" in imported.stdout
    again = _vize("import", str(folder), "--task", "cifar", env=env)
    assert "uploaded 0, already there 18, failed 0" in again.stdout

    trained = _vize("train", "cifar", "--wait", "--poll-interval", "0.5", env=env)
    assert trained.returncode == 0, trained.stderr
    assert "Trained 'cifar' version 1" in trained.stdout

    files = [str(image(name, 70)) for name in LABELS]
    classified = _vize("classify", "cifar", *files, "--json", env=env)
    assert classified.returncode == 0, classified.stderr
    rows = json.loads(classified.stdout)
    assert [r["file"] for r in rows] == files
    assert all(r["ok"] and r["best_label"]["name"] in LABELS and r["version"] == 1 for r in rows)

    table = _vize("classify", "cifar", files[0], env=env)
    assert table.returncode == 0 and table.stdout.splitlines()[0].split() == [
        "FILE",
        "LABEL",
        "PROB",
    ]
    models = _vize("models", "list", "cifar", env=env)
    assert models.returncode == 0 and models.stdout.splitlines()[1].split()[:3] == [
        "*",
        "1",
        "trained",
    ]
