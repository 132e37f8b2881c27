"""Plain helpers shared by the whole suite (no fixtures here: those are in tests/fixtures.py).

- Users straight in the database: ``make_user`` / ``token_user``.
- Images: ``png_bytes`` (a tiny synthetic picture per seed) and the committed labelled set,
  ``tests/data/images/<label>/<label>_NNN.png`` (CIFAR-10 32x32 PNGs, cut by
  tests/data/make_images.py), named by number so a test that classifies ``cat_090`` after
  training on ``cat_000``-``cat_005`` knows it classifies an unseen picture.
- Training through the API: ``upload_label``, ``task_with_images``, ``wait_training``.
"""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

from PIL import Image

from tests.inprocess import AppClient
from vize.config import Settings
from vize.db.engine import make_engine, make_sessionmaker, session_scope
from vize.db.migrate import upgrade
from vize.services import users as users_service

IMAGES = Path(__file__).resolve().parent / "data" / "images"


# ---- users ----------------------------------------------------------------------------------
def make_user(settings: Settings, username: str, password: str | None = None) -> dict[str, str]:
    engine = make_engine(settings)
    upgrade(engine)
    with session_scope(make_sessionmaker(engine)) as db:
        user = users_service.create_user(  # as `vize users create`: the address vouched for
            db, username, email=f"{username}@example.com", password=password, email_verified=True
        )
        out = {"id": user.id, "username": username, "token": user.api_token}
    engine.dispose()
    return out


def token_user(settings: Settings, username: str, password: str | None = None) -> dict[str, Any]:
    """A user plus ready ``headers``. Without a password unless given: argon2 hashing costs
    about 0.25 s of CPU a user, most of a typical API test's time."""
    user = make_user(settings, username, password)
    return {**user, "headers": {"Authorization": f"Token {user['token']}"}}


# ---- images ---------------------------------------------------------------------------------
def png_bytes(seed: int, size: tuple[int, int] = (32, 32), fmt: str = "PNG") -> bytes:
    """A small distinct image per seed."""
    img = Image.new("RGB", size, ((seed * 37) % 256, (seed * 91) % 256, (seed * 53) % 256))
    img.putpixel((seed % size[0], (seed // size[0]) % size[1]), (255 - seed % 256, 0, 0))
    out = io.BytesIO()
    img.save(out, fmt)
    return out.getvalue()


def image(label: str, number: int) -> Path:
    """``<label>_<number>.png`` of the committed set; a clear error if it is not committed."""
    path = IMAGES / label / f"{label}_{number:03d}.png"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is not in the committed set (tests/data/make_images.py)")
    return path


def images(label: str, start: int, stop: int) -> list[Path]:
    """Images ``start`` .. ``stop - 1`` of a label, every one of them committed."""
    return [image(label, n) for n in range(start, stop)]


# ---- training through the API ---------------------------------------------------------------
def upload_label(client: AppClient, h: dict, task_id: str, name: str, files: list[Path]) -> str:
    """Create label ``name`` in the task, upload ``files`` to it; returns the label id."""
    label = client.post("/v2/label/", headers=h, json={"name": name, "task": task_id}).json()
    for f in files:
        r = client.post(
            "/v2/training-image/",
            headers=h,
            data={"labels": label["id"]},
            files={"img_path": (f.name, f.read_bytes(), "image/png")},
        )
        assert r.status_code == 201, r.text
    return str(label["id"])


def task_with_images(client: AppClient, h: dict, n: int = 6, kind: str = "multi_class") -> dict:
    """A task with labels cat and ship of ``n`` images each: ``{"task": ..., "labels": ...}``."""
    task = client.post("/v2/task/", headers=h, json={"name": "t", "type": kind}).json()
    ids = {
        name: upload_label(client, h, task["id"], name, images(name, 0, n))
        for name in ("cat", "ship")
    }
    return {"task": task, "labels": ids}


def wait_training(client: AppClient, h: dict, task_id: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    st: dict[str, Any] = {}
    while time.monotonic() < deadline:
        st = client.get(f"/v2/task/{task_id}/training/", headers=h).json()
        if st["state"] in ("succeeded", "failed"):
            return st
        time.sleep(0.1)
    raise AssertionError(f"training did not finish: {st}")
