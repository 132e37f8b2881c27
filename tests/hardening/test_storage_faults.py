"""A failing blob store (disk full) and the orphan sweep.

The full disk is a real ``LocalBlobStore`` whose write fails with ENOSPC after writing part of
the file, exactly where a full disk fails; it is put in ``state.blobs`` by an app extension.
(The tests run as root, for whom a read-only folder is still writable.)"""

from __future__ import annotations

import base64
import errno
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from tests.api.helpers import assert_error, upload
from tests.helpers import png_bytes, task_with_images, token_user
from tests.inprocess import AppClient, app_client
from vize.api.deps import AppState
from vize.app import create_app
from vize.config import Settings
from vize.db.tables import Image
from vize.services.orphans import sweep_orphans
from vize.storage import LocalBlobStore

ROUNDS = 80


class FullDisk(LocalBlobStore):
    """Writes fail with ENOSPC half-way while ``full``; ``only`` limits it to some keys."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.full = True
        self.only = ""

    def put(self, key: str, data: bytes) -> None:
        self._failing = self.full and key.startswith(self.only)
        super().put(key, data)

    def _write(self, fh: BinaryIO, data: bytes) -> None:  # type: ignore[override]
        if not self._failing:
            return LocalBlobStore._write(fh, data)
        fh.write(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.fixture
def disk(settings: Settings) -> Iterator[tuple[AppClient, FullDisk, dict[str, Any]]]:
    store = FullDisk(settings.blob_dir)

    def use_full_disk(app: FastAPI, state: AppState) -> None:
        state.blobs = store

    with app_client(create_app(settings, extensions=[use_full_disk])) as client:
        yield client, store, token_user(settings, "alice")


def files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def rows(client: AppClient) -> int:
    async def count() -> int:
        state = client.transport.app.state.vize  # type: ignore[attr-defined]
        with state.sessions() as db:
            return int(db.scalar(select(func.count()).select_from(Image)) or 0)

    return int(client.call(count))


def test_full_disk_is_a_clean_507(disk: Any, settings: Settings) -> None:
    client, store, alice = disk
    h = alice["headers"]
    for prefix in ("", "thumbs/"):  # the image itself fails, or the image is stored first
        store.only = prefix
        r = upload(client, h, png_bytes(1))
        body = assert_error(r, 507, "storage_error")
        assert "No space left on device" in body["detail"]
        record = {"_base64": base64.b64encode(png_bytes(2)).decode()}
        batch = client.post("/v2/training-image/", headers=h, json={"records": [record]})
        status = batch.json()["records"][0]["_status"]
        assert (status["code"], status["error"]) == (507, "storage_error")
        # No row, and no file: neither the half-written temporary one nor a finished image
        # whose thumbnail then failed.
        assert rows(client) == 0 and files(settings.blob_dir) == []
    store.full = False  # space freed: the same uploads now work, nothing to clean up
    assert upload(client, h, png_bytes(1)).status_code == 201
    assert rows(client) == 1 and len(files(settings.blob_dir)) == 2
    assert client.get("/health").status_code == 200


def test_sweep_removes_only_old_unreferenced_files(
    settings: Settings, client: AppClient, alice: dict
) -> None:
    """What a crash between the blob write and the commit leaves, the next start removes."""
    assert upload(client, alice["headers"], png_bytes(3)).status_code == 201
    store = LocalBlobStore(settings.blob_dir)
    kept = files(settings.blob_dir)
    old = time.time() - 7200
    for key in ("images/x/ab/orphan", "thumbs/x/ab/orphan.jpg", "models/t/m.npz",
                "images/x/ab/.tmp-half", "elsewhere/not-ours"):  # fmt: skip
        store.put(key, b"left over")
        os.utime(store.root / key, (old, old))
    store.put("images/x/ab/young", b"an upload in flight")  # within the grace period
    for path in kept:  # referenced files, however old, stay
        os.utime(store.root / path, (old, old))

    async def sweep() -> list[str]:
        state = client.transport.app.state.vize  # type: ignore[attr-defined]
        return sweep_orphans(state.sessions, store, grace_seconds=3600)

    removed = client.call(sweep)
    assert sorted(removed) == ["images/x/ab/.tmp-half", "images/x/ab/orphan", "models/t/m.npz",
                               "thumbs/x/ab/orphan.jpg"]  # fmt: skip
    assert files(settings.blob_dir) == sorted([*kept, "elsewhere/not-ours", "images/x/ab/young"])


def test_sweep_runs_after_start_up(settings: Settings) -> None:
    """In the background (issue 19): the server answers before the sweep has finished."""
    store = LocalBlobStore(settings.blob_dir)
    store.put("images/u/ab/crashed", b"written, never committed")
    old = time.time() - 7200
    os.utime(store.root / "images/u/ab/crashed", (old, old))
    with app_client(create_app(settings)) as client:
        sweeper = client.transport.app.state.vize.services.sweeper  # type: ignore[attr-defined]
        deadline = time.monotonic() + 30
        while sweeper.rounds < 1:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert not store.exists("images/u/ab/crashed")


def test_task_deleted_during_training_leaves_no_model_file(settings: Settings) -> None:
    """The training finds its task gone when it commits: no failure, no file left behind."""
    slow = settings.model_copy(
        update={"embedded_worker": True, "embed_on_upload": False, "flip_augment": True}
    )
    with app_client(create_app(slow)) as client:
        h = token_user(slow, "alice")["headers"]
        task_id = task_with_images(client, h, n=10)["task"]["id"]
        job_id = client.post(f"/v2/task/{task_id}/train/", headers=h).json()["job_id"]
        while client.get(f"/v2/job/{job_id}/", headers=h).json()["state"] == "queued":
            time.sleep(0.01)
        assert client.delete(f"/v2/task/{task_id}/", headers=h).status_code == 204
        deadline = time.monotonic() + 60
        while (job := client.get(f"/v2/job/{job_id}/", headers=h).json())["state"] == "running":
            assert time.monotonic() < deadline, job
            time.sleep(0.05)
    assert job["state"] == "succeeded", job
    assert "deleted" in job["message"] or "Nothing to do" in job["message"], job
    assert [p for p in slow.blob_dir.rglob("*.npz")] == []  # no model file


def stored_versus_rows(client: AppClient) -> tuple[set[str], set[str]]:
    """(files no row references, keys rows reference but no file holds)."""

    async def compare() -> tuple[set[str], set[str]]:
        state = client.transport.app.state.vize  # type: ignore[attr-defined]
        with state.sessions() as db:
            rows = db.execute(select(Image.blob_key, Image.thumb_key)).all()
        keys = {k for row in rows for k in row}
        files = {k for k, _ in state.blobs.scan()}
        return files - keys, keys - files

    return client.call(compare)  # type: ignore[no-any-return]


def test_same_bytes_uploaded_and_deleted_by_two_users_at_once(
    client: AppClient, alice: dict, bob: dict
) -> None:
    """Issue 5: with one file per content, one user's delete could remove the file another's
    concurrent upload of the same bytes was committing a row for (its image then 404s)."""
    data = png_bytes(5)
    problems: list[str] = []

    def churn(headers: dict[str, str]) -> None:
        for _ in range(ROUNDS):
            image = upload(client, headers, data).json()
            got = client.get(image["img_path"], headers=headers)
            if got.status_code != 200 or got.content != data:
                problems.append(f"{got.status_code} {got.text[:80]}")
            client.delete(f"/v2/training-image/{image['id']}/", headers=headers)

    threads = [threading.Thread(target=churn, args=(u["headers"],)) for u in (alice, bob)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert problems == []


def test_same_bytes_uploaded_and_deleted_by_one_user_at_once(
    client: AppClient, alice: dict
) -> None:
    """Files are content addressed per owner: one user's concurrent uploads and deletes of
    the same bytes all use one key. A delete's purge must not take the file of a row another
    request commits meanwhile; an upload must not end without its file. A read may find the
    image deleted by another thread (404 not_found), never its file missing."""
    data = png_bytes(6)
    h = alice["headers"]
    problems: list[str] = []

    def churn() -> None:
        for _ in range(ROUNDS):
            r = upload(client, h, data)
            if r.status_code not in (200, 201):
                problems.append(f"upload {r.status_code} {r.text[:80]}")
                continue
            got = client.get(r.json()["img_path"], headers=h)
            if got.status_code != 200 and got.json().get("code") != "not_found":
                problems.append(f"read {got.status_code} {got.text[:80]}")
            elif got.status_code == 200 and got.content != data:
                problems.append("read other bytes")
            client.delete(f"/v2/training-image/{r.json()['id']}/", headers=h)
        last = upload(client, h, data)  # one image stays: its files must be there
        if last.status_code not in (200, 201):
            problems.append(f"last upload {last.status_code} {last.text[:80]}")

    threads = [threading.Thread(target=churn) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert problems == []
    assert rows(client) == 1
    assert stored_versus_rows(client) == (set(), set())  # no row without its files, no trash
    [image] = client.get("/v2/training-image/", headers=h).json()["results"]
    assert client.get(image["img_path"], headers=h).content == data
