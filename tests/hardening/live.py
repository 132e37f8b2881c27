"""Helpers for the tests against real `vize serve` processes: a restartable server on its own
data dir, distinct images, the storage-versus-rows check, latency figures."""

from __future__ import annotations

import io
import json
import os
import random
import signal
import sqlite3
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

from tests.e2e.procs import create_user, serve, stop

REPO = Path(__file__).resolve().parents[2]
FIGURES = REPO / "test-artifacts" / "reliability"


def unique_png(n: int, side: int = 24) -> bytes:
    """A small noise image, different for every ``n``."""
    rnd = random.Random(n)
    img = Image.frombytes("RGB", (side, side), rnd.randbytes(side * side * 3))
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


@dataclass
class Server:
    """`vize serve` on SQLite in ``data``; ``start`` again after a kill reuses everything."""

    data: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    url: str = ""

    @property
    def env(self) -> dict[str, str]:
        return {
            "VIZE_DATA_DIR": str(self.data),
            "VIZE_DATABASE_URL": "",
            "VIZE_BROKER_URL": "",
            "VIZE_DEFAULT_USER": "",
            "VIZE_SECRET_KEY": "reliability",
            "VIZE_MIN_IMAGES_PER_LABEL": "5",
            "VIZE_ORPHAN_GRACE_SECONDS": "0",  # one process: nothing else has uploads in flight
            **self.extra_env,
        }

    @property
    def log(self) -> Path:
        return self.data.parent / "server.log"

    def user(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Token {create_user(self.env, name)}"}

    def start(self) -> str:
        self.proc, self.url = serve(self.env, self.log)
        return self.url

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)

    def client(self, headers: dict[str, str], timeout: float = 60) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def db(self) -> sqlite3.Connection:
        return sqlite3.connect(self.data / "vize.sqlite3")


def storage_versus_rows(server: Server) -> tuple[set[str], set[str]]:
    """(files no row references, keys rows reference but no file holds)."""
    with server.db() as conn:
        keys = {k for row in conn.execute("SELECT blob_key, thumb_key FROM images") for k in row}
        keys |= {k for (k,) in conn.execute("SELECT artifact_key FROM models") if k}
    root = server.data / "blobs"
    files = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    return files - keys, keys - files


def integrity(server: Server) -> str:
    with server.db() as conn:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])


def percentiles(samples: list[float]) -> dict[str, float]:
    """p50 / p95 / max in milliseconds."""
    if not samples:
        return {}
    ms = sorted(s * 1000 for s in samples)
    p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
    return {"n": len(ms), "p50_ms": round(statistics.median(ms), 1), "p95_ms": round(p95, 1),
            "max_ms": round(ms[-1], 1)}  # fmt: skip


def record(name: str, figures: dict[str, Any]) -> None:
    """Print the figures and keep them for RELIABILITY.md (test-artifacts/, not committed)."""
    figures = {"test": name, "at": time.strftime("%Y-%m-%d %H:%M:%S"), "cpus": os.cpu_count(),
               **figures}  # fmt: skip
    print(f"\n{name}: {json.dumps(figures)}")
    FIGURES.mkdir(parents=True, exist_ok=True)
    (FIGURES / f"{name}.json").write_text(json.dumps(figures, indent=2) + "\n")


def wait_training(c: httpx.Client, task_id: str, states: tuple[str, ...], timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    st: dict[str, Any] = {}
    while time.monotonic() < deadline:
        st = c.get(f"/v2/task/{task_id}/training/").json()
        if st["state"] in states:
            return st
        time.sleep(0.1)
    raise AssertionError(f"training not {states} after {timeout} s: {st}")


def labelled_task(c: httpx.Client, per_label: int, first_seed: int = 0) -> tuple[str, list[str]]:
    """A task with two labels of ``per_label`` distinct images each."""
    task = c.post("/v2/task/", json={"name": "reliability"}).json()
    labels = []
    for i, name in enumerate(("red", "blue")):
        label = c.post("/v2/label/", json={"name": name, "task": task["id"]}).json()["id"]
        labels.append(label)
        for n in range(per_label):
            data = unique_png(first_seed + i * 10_000 + n)
            r = c.post("/v2/training-image/", data={"labels": label},
                       files={"img_path": (f"{name}{n}.png", data, "image/png")})  # fmt: skip
            assert r.status_code == 201, r.text
    return task["id"], labels
