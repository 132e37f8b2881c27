"""The BlobStore contract, the safe-removal protocol, the orphan sweep and the upload races,
each on both backends (local folder and S3 via moto's server): what callers rely on must not
depend on where the bytes live."""

from __future__ import annotations

import base64
import threading
import time

import pytest
from sqlalchemy.orm import Session, sessionmaker

from tests.api.helpers import assert_error, upload
from tests.helpers import png_bytes, task_with_images, token_user, wait_training
from tests.inprocess import app_client
from tests.services.conftest import me
from tests.services.test_images_service import AfterWrites, commit_upload
from tests.storage.conftest import Backend
from vize.app import create_app
from vize.config import Settings
from vize.db.tables import User
from vize.services import images as images_service
from vize.services.orphans import sweep_orphans
from vize.storage import BlobStore, open_blob_store
from vize.storage.blobs import TMP_PREFIX, TRASH_MARK

KEY = "images/u1/ab/abcdef"


def keys(blobs: BlobStore) -> list[str]:
    return sorted(k for k, _ in blobs.scan())


def test_settings_choose_the_backend(backend: Backend) -> None:
    store = open_blob_store(backend.settings)
    assert type(store) is type(backend.store)
    store.put("models/t/m.npz", b"head")
    assert backend.store.get("models/t/m.npz") == b"head"  # the same storage, by settings


def test_put_get_exists_delete(blobs: BlobStore) -> None:
    assert not blobs.exists(KEY)
    with pytest.raises(KeyError):
        blobs.get(KEY)
    blobs.put(KEY, b"first")
    assert blobs.exists(KEY) and blobs.get(KEY) == b"first"
    blobs.put(KEY, b"second")  # a whole replacement
    assert blobs.get(KEY) == b"second"
    blobs.delete(KEY)
    blobs.delete(KEY)  # deleting what is gone is no error
    assert not blobs.exists(KEY) and keys(blobs) == []


@pytest.mark.parametrize("bad", ["", "/abs", "a/../b", "a//b", "./a", "a/."])
def test_bad_keys_are_refused(blobs: BlobStore, bad: str) -> None:
    with pytest.raises(ValueError):
        blobs.put(bad, b"x")
    with pytest.raises(ValueError):
        blobs.get(bad)


def test_scan_lists_every_key_with_its_time(blobs: BlobStore) -> None:
    before = time.time() - 5  # S3 times have one-second resolution; clocks may differ a bit
    for key in ("images/a/00/x", "thumbs/a/00/x.jpg", "models/t/1.npz"):
        blobs.put(key, key.encode())
    listed = dict(blobs.scan())
    assert sorted(listed) == ["images/a/00/x", "models/t/1.npz", "thumbs/a/00/x.jpg"]
    assert all(before <= t <= time.time() + 5 for t in listed.values())


def test_delete_unless_deletes_only_what_no_row_uses(blobs: BlobStore) -> None:
    blobs.put(KEY, b"bytes")
    assert blobs.delete_unless(KEY, lambda: True) is False
    assert blobs.get(KEY) == b"bytes" and keys(blobs) == [KEY]  # put back, no trash left
    assert blobs.delete_unless(KEY, lambda: False) is True
    assert keys(blobs) == []
    assert blobs.delete_unless(KEY, lambda: False) is False  # nothing there


def test_delete_unless_asks_only_once_the_file_is_away_and_reads_still_work(
    blobs: BlobStore,
) -> None:
    """While the database is asked the key is gone (a writer's post-commit check would see
    it missing) yet a reader still gets the bytes, from the trash copy."""
    blobs.put(KEY, b"bytes")
    seen: dict[str, object] = {}

    def in_use() -> bool:
        seen["exists"] = blobs.exists(KEY)
        seen["read"] = blobs.get(KEY)
        seen["trash"] = [k for k in keys(blobs) if TMP_PREFIX + TRASH_MARK in k]
        return True

    assert blobs.delete_unless(KEY, in_use) is False
    assert seen["exists"] is False and seen["read"] == b"bytes"
    assert len(seen["trash"]) == 1  # type: ignore[arg-type]
    assert keys(blobs) == [KEY]


def test_a_write_during_the_decision_survives(blobs: BlobStore) -> None:
    """A writer of the same bytes puts the key while the remover decides "unused": the
    remover drops only its trash copy, the writer's object stays."""
    blobs.put(KEY, b"bytes")

    def writer_meanwhile() -> bool:
        blobs.put(KEY, b"bytes")
        return False

    assert blobs.delete_unless(KEY, writer_meanwhile) is True
    assert keys(blobs) == [KEY] and blobs.get(KEY) == b"bytes"


def test_an_undecided_removal_keeps_the_file(blobs: BlobStore) -> None:
    blobs.put(KEY, b"bytes")

    def database_down() -> bool:
        raise ConnectionError("database unreachable")

    with pytest.raises(ConnectionError):
        blobs.delete_unless(KEY, database_down)
    assert keys(blobs) == [KEY] and blobs.get(KEY) == b"bytes"


def test_orphan_sweep(
    blobs: BlobStore, sessions: sessionmaker[Session], settings: Settings, carol: User
) -> None:
    """Old unreferenced files go, referenced and young ones stay, other folders are not ours,
    and a trash copy a crashed removal left is put back when a row still needs its file."""
    image = commit_upload(sessions, blobs, settings, carol, png_bytes(1))
    blobs.delete(image.thumb_key)
    crashed = image.thumb_key.replace("/", f"/{TMP_PREFIX}{TRASH_MARK}0123abcd-", -1)
    crashed = image.thumb_key.rsplit("/", 1)
    trash = f"{crashed[0]}/{TMP_PREFIX}{TRASH_MARK}0123abcd-{crashed[1]}"
    blobs.put(trash, b"the thumbnail")
    for key in ("images/x/ab/orphan", "models/t/m.npz", "elsewhere/not-ours"):
        blobs.put(key, b"left over")
    time.sleep(2.1)  # object stores keep whole seconds: age the files above by real time
    blobs.put("images/x/ab/young", b"an upload in flight")
    removed = sweep_orphans(sessions, blobs, grace_seconds=1.0)
    assert sorted(removed) == sorted(["images/x/ab/orphan", "models/t/m.npz", trash])
    assert keys(blobs) == sorted([image.blob_key, image.thumb_key, "elsewhere/not-ours",
                                  "images/x/ab/young"])  # fmt: skip
    assert blobs.get(image.thumb_key) == b"the thumbnail"


def test_the_dedupe_race_loser_leaves_the_winners_files(
    sessions: sessionmaker[Session], blobs: BlobStore, settings: Settings, carol: User
) -> None:
    """The winner commits between the loser's file writes and its insert: the loser's
    failed-upload cleanup must keep the files the winner's row references."""
    data = png_bytes(13)
    winners = []

    def winner_commits_first() -> None:
        winners.append(commit_upload(sessions, blobs, settings, carol, data))

    with images_service.discard_on_failure(blobs, sessions) as tracked, sessions.begin() as db:
        store = AfterWrites(tracked, 2, winner_commits_first)  # type: ignore[arg-type]
        loser = images_service.upload_image(db, store, settings, me(carol), data)
    [winner] = winners
    assert not loser.created and loser.image.id == winner.id
    assert keys(blobs) == sorted([winner.blob_key, winner.thumb_key])
    assert blobs.get(winner.blob_key) == data


def test_uploads_and_deletes_of_the_same_bytes_at_once_through_the_api(
    backend: Backend,
) -> None:
    """Issue 5's race on this backend: four threads of one user upload, read and delete the
    same bytes; no read finds its file missing, and the image that stays has its files."""
    settings = backend.settings.model_copy(update={"embedded_worker": False})
    data = png_bytes(6)
    problems: list[str] = []
    with app_client(create_app(settings)) as client:
        h = token_user(settings, "alice")["headers"]

        def churn() -> None:
            for _ in range(15):
                r = upload(client, h, data)
                if r.status_code not in (200, 201):
                    problems.append(f"upload {r.status_code} {r.text[:80]}")
                    continue
                got = client.get(r.json()["img_path"], headers=h)
                if got.status_code == 200 and got.content != data:
                    problems.append("read other bytes")
                elif got.status_code != 200 and got.json().get("code") != "not_found":
                    problems.append(f"read {got.status_code} {got.text[:80]}")
                client.delete(f"/v2/training-image/{r.json()['id']}/", headers=h)
            if upload(client, h, data).status_code not in (200, 201):
                problems.append("last upload failed")

        threads = [threading.Thread(target=churn) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(180)
        assert problems == []
        [image] = client.get("/v2/training-image/", headers=h).json()["results"]
        assert client.get(image["img_path"], headers=h).content == data
        assert len(keys(backend.store)) == 2  # its image and thumbnail, no trash, no orphan
        assert client.delete(f"/v2/training-image/{image['id']}/", headers=h).status_code == 204
    assert keys(backend.store) == []


def test_a_trained_head_lives_in_the_store_and_goes_with_its_task(backend: Backend) -> None:
    """Model heads on this backend: written by the training, read back by classify, removed
    (safe-removal protocol) when the task is deleted; another task's head stays."""
    settings = backend.settings.model_copy(
        update={"embedded_worker": True, "embed_on_upload": False}
    )
    with app_client(create_app(settings)) as client:
        users = [token_user(settings, name)["headers"] for name in ("alice", "bob")]
        made = [task_with_images(client, h, n=5)["task"]["id"] for h in users]
        for h, task_id in zip(users, made, strict=True):
            assert client.post(f"/v2/task/{task_id}/train/", headers=h).status_code == 202
            assert wait_training(client, h, task_id)["state"] == "succeeded"
        h = users[0]
        heads = [k for k in keys(backend.store) if k.startswith("models/")]
        assert sorted(k.split("/")[1] for k in heads) == sorted(made)
        record = {"_base64": base64.b64encode(png_bytes(3)).decode()}
        r = client.post("/v2/classify", headers=h, json={"task_id": made[0], "records": [record]})
        assert r.status_code == 200, r.text
        assert client.delete(f"/v2/task/{made[0]}/", headers=h).status_code == 204
        left = [k for k in keys(backend.store) if k.startswith("models/")]
        assert [k.split("/")[1] for k in left] == [made[1]]  # no trash copy left either


def test_unreachable_storage_is_a_clean_error(
    backend: Backend, monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    """Storage that does not answer: the upload fails with the envelope and leaves no row."""
    if backend.name == "local":
        # A file where the folder should be: the local store cannot write under it.
        settings = backend.settings.model_copy(update={"embedded_worker": False})
        settings.blob_dir.parent.mkdir(parents=True, exist_ok=True)
        expected = (507, "storage_error")
    else:
        monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # discard port: refused
        settings = backend.settings.model_copy(update={"embedded_worker": False})
        expected = (503, "storage_unavailable")
    with app_client(create_app(settings)) as client:
        if backend.name == "local":
            import shutil

            shutil.rmtree(settings.blob_dir)
            settings.blob_dir.write_bytes(b"not a folder")
        h = token_user(settings, "alice")["headers"]
        body = assert_error(upload(client, h, png_bytes(2)), *expected)
        assert "vize-test" not in body["detail"] and "127.0.0.1" not in body["detail"]
        assert client.get("/v2/training-image/", headers=h).json()["results"] == []
