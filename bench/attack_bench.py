"""Hardening round 2, targets 1 and 2, through a real `vize serve` (issue 12).

  1. Work before authentication: clients with a wrong token send 60 MB JSON bodies to
     /v2/classify; measured: the time until their 401, and another user's classify p50.
  2. Pixel cost: a user sends ten 93 KB 16-bit greyscale PNGs of 6000 x 6600 in two
     concurrent requests, again and again; measured: another user's classify p50 and the
     server's peak RSS growth.

Each scenario runs on a fresh server. ``--python`` picks the interpreter (and so the code)
of the server, which is how the figures before and after a change are taken side by side:

  .venv/bin/python bench/attack_bench.py --python /path/to/old/checkout/.venv/bin/python
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, python: str, data_dir: Path) -> None:
        self.python = python
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "VIZE_DATA_DIR": str(data_dir),
            "VIZE_DEFAULT_USER": "",
            "VIZE_MIN_IMAGES_PER_LABEL": "5",
            "VIZE_AUTH_FAILURES_PER_MINUTE": "20",
        }
        self.cwd = data_dir  # not the checkout: `-m vize.cli` must import the server's own code
        self.log = (data_dir / "server.log").open("ab")
        self.proc = subprocess.Popen(
            [python, "-m", "vize.cli", "serve", "--port", str(self.port)],
            env=self.env,
            cwd=self.cwd,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 600  # first start converts the backbones to ONNX
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError("server did not start")

    def user(self, name: str) -> dict[str, str]:
        out = subprocess.run(
            [self.python, "-m", "vize.cli", "users", "create", name],
            env=self.env,
            cwd=self.cwd,
            capture_output=True,
            text=True,
            check=True,
        )
        return {"Authorization": f"Token {out.stdout.strip().splitlines()[-1]}"}

    def peak_rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmHWM")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)
        self.log.close()


def png(seed: int, size: int = 32) -> bytes:
    rng = np.random.default_rng(seed)
    base = np.array([(230, 40, 40), (40, 40, 230)][seed % 2], dtype=np.int16)
    arr = np.clip(base + rng.integers(-30, 30, (size, size, 3)), 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(arr).save(out, "PNG")
    return out.getvalue()


def trained_task(url: str, headers: dict[str, str]) -> str:
    with httpx.Client(base_url=url, headers=headers, timeout=120) as c:
        task = c.post("/v2/task/", json={"name": "bench"}).json()["id"]
        for li, name in enumerate(("red", "blue")):
            label = c.post("/v2/label/", json={"name": name}).json()["id"]
            c.post(f"/v2/task/{task}/add-label/", json={"label_id": label})
            for i in range(6):
                files = {"img_path": (f"{name}{i}.png", png(li + 2 * i), "image/png")}
                r = c.post("/v2/training-image/", files=files, data={"labels": label})
                if r.status_code not in (200, 201):
                    raise RuntimeError(r.text)
        c.post(f"/v2/task/{task}/train/").raise_for_status()
        for _ in range(600):
            state = c.get(f"/v2/task/{task}/training/").json().get("state")
            if state == "succeeded":
                return str(task)
            if state == "failed":
                raise RuntimeError("training failed")
            time.sleep(0.2)
    raise RuntimeError("training did not finish")


def classify_p50(url: str, headers: dict[str, str], task: str, n: int) -> float:
    body = {"task_id": task, "records": [{"_base64": base64.b64encode(png(7)).decode()}]}
    times = []
    with httpx.Client(base_url=url, headers=headers, timeout=300) as c:
        for _ in range(n):
            t = time.perf_counter()
            r = c.post("/v2/classify", json=body)
            times.append(time.perf_counter() - t)
            if r.status_code != 200:
                raise RuntimeError(r.text)
    return statistics.median(times) * 1000


def big_json_401(port: int, size: int) -> float:
    """Send a wrong token and a `size`-byte JSON array; seconds until the answer's first line."""
    head = (
        f"POST /v2/classify HTTP/1.1\r\nHost: x\r\nAuthorization: Token wrong\r\n"
        f"Content-Type: application/json\r\nContent-Length: {size}\r\n\r\n"
    ).encode()
    chunk = b"0," * 32768
    sock = socket.create_connection(("127.0.0.1", port))
    started = time.perf_counter()

    def send() -> None:
        try:
            sock.sendall(head + b"[")
            sent = 1
            while sent < size - 2:
                piece = chunk[: size - 2 - sent]
                sock.sendall(piece)
                sent += len(piece)
            sock.sendall(b"0]")
        except OSError:
            pass  # the server answered and closed: it did not want the rest

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    sock.settimeout(120)
    first = sock.recv(64)
    elapsed = time.perf_counter() - started
    sock.close()
    sender.join(10)
    if not first.startswith(b"HTTP/1.1 4"):
        raise RuntimeError(first)
    return elapsed


def scan_16bit() -> bytes:
    arr = np.zeros((6600, 6000), dtype=np.uint16)
    arr[::7, ::5] = 40000
    out = io.BytesIO()
    Image.fromarray(arr).save(out, "PNG", optimize=True)
    return out.getvalue()


def under_attack(
    attack: Any, victim: Any, attackers: int, pace: float = 0.0
) -> tuple[Any, list[Any]]:
    """Run ``victim()`` while ``attackers`` threads repeat ``attack()`` (each at most once per
    ``pace`` seconds: a refused request comes back at once, and a tight loop of them would
    measure a flood of tiny requests rather than the attack)."""
    stop = threading.Event()
    results: list[Any] = []

    def loop() -> None:
        while not stop.is_set():
            started = time.perf_counter()
            results.append(attack())
            stop.wait(max(0.0, pace - (time.perf_counter() - started)))

    threads = [threading.Thread(target=loop, daemon=True) for _ in range(attackers)]
    for t in threads:
        t.start()
    time.sleep(1.0)  # the attack is under way
    try:
        out = victim()
    finally:
        stop.set()
        for t in threads:
            t.join(300)
    return out, results


def scenario_unauthenticated(server: Server, args: argparse.Namespace) -> dict[str, Any]:
    bob = server.user("bob")
    task = trained_task(server.url, bob)
    idle = classify_p50(server.url, bob, task, args.n)
    rss0 = server.peak_rss_mb()
    size = 60 * 1024 * 1024
    p50, answers = under_attack(
        lambda: big_json_401(server.port, size),
        lambda: classify_p50(server.url, bob, task, args.n),
        attackers=2,
        pace=0.1,
    )
    return {
        "victim_idle_p50_ms": round(idle, 1),
        "victim_attacked_p50_ms": round(p50, 1),
        "ratio": round(p50 / idle, 2),
        "attacker_answer_p50_ms": round(statistics.median(answers) * 1000, 1),
        "attacker_requests": len(answers),
        "peak_rss_growth_mb": round(server.peak_rss_mb() - rss0, 1),
    }


def scenario_pixels(server: Server, args: argparse.Namespace) -> dict[str, Any]:
    bob, mallory = server.user("bob"), server.user("mallory")
    task, evil_task = trained_task(server.url, bob), trained_task(server.url, mallory)
    scan = base64.b64encode(scan_16bit()).decode()
    idle = classify_p50(server.url, bob, task, args.n)
    rss0 = server.peak_rss_mb()
    body = {"task_id": evil_task, "records": [{"_base64": scan}] * 5}

    def attack() -> float:
        t = time.perf_counter()
        httpx.post(server.url + "/v2/classify", json=body, headers=mallory, timeout=600)
        return time.perf_counter() - t

    p50, answers = under_attack(
        attack, lambda: classify_p50(server.url, bob, task, args.n), attackers=2
    )
    return {
        "scan_kb": round(len(scan) * 3 / 4 / 1024),
        "victim_idle_p50_ms": round(idle, 1),
        "victim_attacked_p50_ms": round(p50, 1),
        "ratio": round(p50 / idle, 2),
        "attacker_request_p50_s": round(statistics.median(answers), 2),
        "peak_rss_growth_mb": round(server.peak_rss_mb() - rss0, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--python", default=sys.executable, help="interpreter of the server")
    ap.add_argument("--n", type=int, default=40, help="victim requests per measurement")
    ap.add_argument("--only", choices=["unauthenticated", "pixels"])
    args = ap.parse_args()
    out: dict[str, Any] = {"python": args.python}
    for name, fn in (("unauthenticated", scenario_unauthenticated), ("pixels", scenario_pixels)):
        if args.only and args.only != name:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            server = Server(args.python, Path(tmp))
            try:
                out[name] = fn(server, args)
            finally:
                server.stop()
        print(json.dumps({name: out[name]}), flush=True)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
