"""Training-image intake at the service level: dedupe (also under a race), files content
addressed per owner and removed only when no committed row uses them, deletion."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session, sessionmaker

from tests.helpers import png_bytes
from tests.services.conftest import me
from vize.config import Settings
from vize.db.tables import Image, User
from vize.errors import StorageError
from vize.services import images as images_service
from vize.services import labels as labels_service
from vize.services.orphans import sweep_orphans
from vize.storage import LocalBlobStore
from vize.storage.blobs import TMP_PREFIX, TRASH_MARK


class AfterWrites:
    """The real store; after its ``n``-th write it runs ``action`` once (another request
    acting at that very moment)."""

    def __init__(self, blobs: LocalBlobStore, n: int, action: Callable[[], None]) -> None:
        self._blobs, self._left, self._action = blobs, n, action

    def put(self, key: str, data: bytes) -> None:
        self._blobs.put(key, data)
        self._left -= 1
        if self._left == 0:
            self._action()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._blobs, name)


def keys(blobs: LocalBlobStore) -> list[str]:
    return sorted(k for k, _ in blobs.scan())


def commit_upload(
    sessions: sessionmaker[Session], blobs: LocalBlobStore, settings: Settings, user: User,
    data: bytes,
) -> Image:  # fmt: skip
    """A whole upload, as the routes do it: insert, commit, then make sure of the files."""
    with sessions.begin() as db:
        up = images_service.upload_image(db, blobs, settings, me(user), data)
    images_service.ensure_stored(sessions, blobs, up)
    return up.image


def test_upload_dedupes_per_user_and_files_are_content_addressed_per_owner(
    sessions: sessionmaker[Session], blobs: LocalBlobStore, settings: Settings, carol: User,
    dave: User,
) -> None:  # fmt: skip
    data = png_bytes(1)
    sha = hashlib.sha256(data).hexdigest()
    with sessions.begin() as db:
        first = images_service.upload_image(db, blobs, settings, me(carol), data, file_name="a.png")
        again = images_service.upload_image(db, blobs, settings, me(carol), data)
        other = images_service.upload_image(db, blobs, settings, me(dave), data)
    assert first.created and not again.created and other.created
    assert again.image.id == first.image.id != other.image.id
    # One file per owner and content: never shared across users, so one user's delete can
    # never remove the file another user's upload is committing a row for.
    assert first.image.blob_key == f"images/{me(carol).workspace_id}/{sha[:2]}/{sha}"
    assert first.image.thumb_key == f"thumbs/{me(carol).workspace_id}/{sha[:2]}/{sha}.jpg"
    assert other.image.blob_key == f"images/{me(dave).workspace_id}/{sha[:2]}/{sha}"
    assert keys(blobs) == sorted([first.image.blob_key, first.image.thumb_key,
                                  other.image.blob_key, other.image.thumb_key])  # fmt: skip
    assert blobs.get(first.image.blob_key) == blobs.get(other.image.blob_key) == data


def test_the_same_bytes_again_after_a_delete_use_the_same_key(
    sessions: sessionmaker[Session], blobs: LocalBlobStore, settings: Settings, carol: User
) -> None:
    data = png_bytes(12)
    first = commit_upload(sessions, blobs, settings, carol, data)
    with sessions.begin() as db:
        to_check = images_service.delete_image(db, db.get(Image, first.id))  # type: ignore[arg-type]
    images_service.purge_unused_blobs(sessions, blobs, to_check)
    assert keys(blobs) == []
    second = commit_upload(sessions, blobs, settings, carol, data)
    assert second.id != first.id and second.blob_key == first.blob_key
    assert blobs.get(second.blob_key) == data and blobs.exists(second.thumb_key)


def test_file_name_is_cleaned(
    db: Session, blobs: LocalBlobStore, settings: Settings, carol: User
) -> None:
    up = images_service.upload_image(
        db, blobs, settings, me(carol), png_bytes(2), file_name="C:\\dir/../evil\x00\n" + "n" * 300
    )
    assert up.image.file_name.startswith("evil") and len(up.image.file_name) == 255
    assert "\x00" not in up.image.file_name and "\n" not in up.image.file_name


def test_concurrent_uploads_of_the_same_content_make_one_row(
    sessions: sessionmaker[Session], blobs: LocalBlobStore, settings: Settings, carol: User
) -> None:
    """Both requests pass the "already there?" check before either commits: the unique
    constraint decides, and the loser answers with the winner's row instead of a 500."""
    data = png_bytes(3)
    first = sessions()
    winner = images_service.upload_image(first, blobs, settings, me(carol), data)  # flushed only
    results: list[object] = []

    def second() -> None:
        try:
            with sessions.begin() as db:
                results.append(images_service.upload_image(db, blobs, settings, me(carol), data))
        except BaseException as exc:  # reported below
            results.append(exc)

    thread = threading.Thread(target=second)
    thread.start()
    time.sleep(0.5)  # let it reach the insert and wait on the first transaction's lock
    first.commit()
    first.close()
    thread.join(60)
    [loser] = results
    assert isinstance(loser, images_service.Upload), loser
    assert not loser.created and loser.image.id == winner.image.id
    with sessions() as db:
        assert db.scalar(select(func.count()).select_from(Image)) == 1
    # The loser wrote the winner's keys (same owner, same bytes) and must leave them.
    assert keys(blobs) == sorted([winner.image.blob_key, winner.image.thumb_key])
    assert blobs.get(winner.image.blob_key) == data


def test_the_dedupe_race_loser_leaves_the_winners_files(
    sessions: sessionmaker[Session], blobs: LocalBlobStore, settings: Settings, carol: User
) -> None:
    """The same race made deterministic on every database: the winner commits after the
    loser's "already there?" check and its file writes, just before the loser's insert."""
    data = png_bytes(13)
    winners: list[Image] = []

    def winner_commits_first() -> None:
        winners.append(commit_upload(sessions, blobs, settings, carol, data))

    # Hooked on the loser's last file write, just before its insert. (Not at its flush: on
    # SQLite the insert holds the write lock from there, so no other commit can come between.)
    with sessions.begin() as db:
        store = AfterWrites(blobs, 2, winner_commits_first)
        loser = images_service.upload_image(db, store, settings, me(carol), data)
    [winner] = winners
    assert not loser.created and loser.image.id == winner.id
    assert sorted(loser.files) == sorted([winner.blob_key, winner.thumb_key])  # to check too
    assert keys(blobs) == sorted([winner.blob_key, winner.thumb_key])
    assert blobs.get(winner.blob_key) == data


def test_sending_the_bytes_again_puts_back_missing_files(
    sessions: sessionmaker[Session], blobs: LocalBlobStore, settings: Settings, carol: User
) -> None:
    """A crash between an upload's commit and its check can leave its row without the files a
    remover took meanwhile: the client's retry finds the row and puts them back."""
    data = png_bytes(20)
    image = commit_upload(sessions, blobs, settings, carol, data)
    thumb = blobs.get(image.thumb_key)
    for key in (image.blob_key, image.thumb_key):
        (blobs.root / key).unlink()
    with sessions.begin() as db:
        again = images_service.upload_image(db, blobs, settings, me(carol), data)
    assert not again.created and again.image.id == image.id
    images_service.ensure_stored(sessions, blobs, again)
    assert blobs.get(image.blob_key) == data and blobs.get(image.thumb_key) == thumb
    with sessions.begin() as db:  # nothing missing: nothing to put
        assert images_service.upload_image(db, blobs, settings, me(carol), data).files == {}


def test_two_deletes_of_one_image_purge_once(
    sessions: sessionmaker[Session], blobs: LocalBlobStore, settings: Settings, carol: User
) -> None:
    image = commit_upload(sessions, blobs, settings, carol, png_bytes(23))
    with sessions() as first, sessions() as second:
        seen = [images_service.get_image(db, me(carol), image.id) for db in (first, second)]
        assert images_service.delete_image(first, seen[0]) == [image.blob_key, image.thumb_key]
        first.commit()
        assert images_service.delete_image(second, seen[1]) == []  # the first one purges
        second.commit()
    with sessions() as db:
        assert db.get(Image, image.id) is None


def test_delete_removes_only_the_images_own_files(
    sessions: sessionmaker[Session], blobs: LocalBlobStore, settings: Settings, carol: User,
    dave: User,
) -> None:  # fmt: skip
    data = png_bytes(4)
    with sessions.begin() as db:
        mine = images_service.upload_image(db, blobs, settings, me(carol), data).image
        theirs = images_service.upload_image(db, blobs, settings, me(dave), data).image
    with sessions.begin() as db:
        to_check = images_service.delete_image(db, db.get(Image, mine.id))  # type: ignore[arg-type]
    images_service.purge_unused_blobs(sessions, blobs, to_check)
    assert not blobs.exists(mine.blob_key) and not blobs.exists(mine.thumb_key)
    assert blobs.get(theirs.blob_key) == data and blobs.exists(theirs.thumb_key)


def test_a_file_shared_by_older_rows_stays_until_the_last_goes(
    sessions: sessionmaker[Session], blobs: LocalBlobStore, settings: Settings, carol: User,
    dave: User,
) -> None:  # fmt: skip
    """Images stored before files were per owner share one file per content, across users."""
    data = png_bytes(14)
    with sessions.begin() as db:
        mine = images_service.upload_image(db, blobs, settings, me(carol), data).image
        theirs = images_service.upload_image(db, blobs, settings, me(dave), data).image
        shared = db.get(Image, theirs.id)
        assert shared is not None
        shared.blob_key, shared.thumb_key = mine.blob_key, mine.thumb_key
    keys = [mine.blob_key, mine.thumb_key]
    for image, left in ((mine, True), (theirs, False)):
        with sessions.begin() as db:
            to_check = images_service.delete_image(db, db.get(Image, image.id))  # type: ignore[arg-type]
        images_service.purge_unused_blobs(sessions, blobs, to_check)
        assert all(blobs.exists(k) for k in keys) is left


def test_list_filters_and_labels(
    db: Session, blobs: LocalBlobStore, settings: Settings, carol: User
) -> None:
    label = labels_service.create_label(db, me(carol), {"name": "l"}, None)
    a = images_service.upload_image(
        db, blobs, settings, me(carol), png_bytes(5), labels=[label]
    ).image
    b = images_service.upload_image(
        db, blobs, settings, me(carol), png_bytes(6), test_image=True
    ).image
    page = images_service.list_images(db, me(carol), 0, 10, label_ids=[label.id])
    assert [i.id for i in page.items] == [a.id]
    assert [i.id for i in images_service.list_images(db, me(carol), 0, 10, test=True).items] == [
        b.id
    ]
    images_service.add_label(db, b, label)
    images_service.add_label(db, b, label)
    assert labels_service.counts(db, [label.id]) == {label.id: (2, 0)}
    images_service.remove_label(db, a, label)
    assert labels_service.counts(db, [label.id]) == {label.id: (1, 0)}


def test_concurrent_labelling_of_an_image_is_idempotent(
    sessions: sessionmaker[Session], blobs: LocalBlobStore, settings: Settings, carol: User
) -> None:
    from tests.services.test_tasks_labels import race

    with sessions.begin() as db:
        image_id = images_service.upload_image(
            db, blobs, settings, me(carol), png_bytes(9)
        ).image.id
        label_id = labels_service.create_label(db, me(carol), {"name": "l"}, None).id

    def label_it(db: Session) -> list[str]:
        image = images_service.get_image(db, me(carol), image_id)
        label = labels_service.get_label(db, me(carol), label_id)
        images_service.add_label(db, image, label)
        return [lbl.id for lbl in image.labels]

    first, second = race(sessions, label_it)
    assert first == second == [label_id]


# Removing a content-addressed file: moved away first, then the database is asked (a fresh
# read), and the file comes back if a committed row uses it.


def test_delete_unless_asks_once_the_file_is_away(blobs: LocalBlobStore) -> None:
    key = "images/o/ab/k"
    blobs.put(key, b"bytes")
    seen: list[tuple[bool, bytes]] = []

    def answer(used: bool) -> Callable[[], bool]:
        def in_use() -> bool:
            # Away from its key, yet a reader meanwhile still gets the bytes (from the trash).
            seen.append((blobs.exists(key), blobs.get(key)))
            return used

        return in_use

    assert blobs.delete_unless(key, answer(True)) is False
    assert blobs.get(key) == b"bytes" and keys(blobs) == [key]  # restored, no trash left
    assert blobs.delete_unless(key, answer(False)) is True
    assert keys(blobs) == []  # deleted, no trash left
    assert seen == [(False, b"bytes"), (False, b"bytes")]
    assert blobs.delete_unless(key, answer(True)) is False and len(seen) == 2  # nothing to ask


def test_delete_unless_keeps_the_file_when_it_cannot_ask(blobs: LocalBlobStore) -> None:
    blobs.put("thumbs/o/ab/k.jpg", b"thumb")

    def database_down() -> bool:
        raise ConnectionError("database down")

    with pytest.raises(ConnectionError):
        blobs.delete_unless("thumbs/o/ab/k.jpg", database_down)
    assert keys(blobs) == ["thumbs/o/ab/k.jpg"]


class FailsOnThumbnail(LocalBlobStore):
    """A full disk for thumbnails; ``meanwhile`` runs first (another request's upload)."""

    def __init__(self, root: Path, meanwhile: Callable[[], object]) -> None:
        super().__init__(root)
        self.meanwhile = meanwhile

    def put(self, key: str, data: bytes) -> None:
        if not key.startswith("thumbs/"):
            return super().put(key, data)
        self.meanwhile()
        raise StorageError("Could not store the file: No space left on device.")


def test_a_failed_upload_leaves_files_a_committed_row_uses(
    sessions: sessionmaker[Session], blobs: LocalBlobStore, settings: Settings, carol: User
) -> None:
    """Carol's two requests upload the same bytes: one fails after writing the image file,
    when the other has committed its row for that very key. The cleanup must keep it."""
    data = png_bytes(15)
    committed: list[Image] = []
    store = FailsOnThumbnail(
        blobs.root, lambda: committed.append(commit_upload(sessions, blobs, settings, carol, data))
    )
    with (
        pytest.raises(StorageError),
        images_service.discard_on_failure(store, sessions) as tracked,
        sessions.begin() as db,
    ):
        images_service.upload_image(db, tracked, settings, me(carol), data)
    [image] = committed
    assert blobs.get(image.blob_key) == data and blobs.exists(image.thumb_key)
    assert keys(blobs) == sorted([image.blob_key, image.thumb_key])


def test_a_failed_upload_removes_its_files_when_no_row_uses_them(
    sessions: sessionmaker[Session], blobs: LocalBlobStore, settings: Settings, carol: User
) -> None:
    store = FailsOnThumbnail(blobs.root, lambda: None)
    with (
        pytest.raises(StorageError),
        images_service.discard_on_failure(store, sessions) as tracked,
        sessions.begin() as db,
    ):
        images_service.upload_image(db, tracked, settings, me(carol), png_bytes(16))
    assert keys(blobs) == []


def test_an_upload_puts_back_files_removed_before_its_commit(
    sessions: sessionmaker[Session], blobs: LocalBlobStore, settings: Settings, carol: User
) -> None:
    """A remover (a failed upload of the same bytes, the sweep) that asks after our write but
    before our row is there deletes the files we wrote: after the commit we write them again."""
    data = png_bytes(17)
    removed: list[str] = []
    with sessions.begin() as db:
        # At the insert's flush: the files are written, the row is not there yet.
        @event.listens_for(db, "before_flush")
        def remove_meanwhile(session: Session, *_: object) -> None:
            for image in [o for o in session.new if isinstance(o, Image)]:
                for key in (image.blob_key, image.thumb_key):
                    if images_service.remove_blob(sessions, blobs, key):
                        removed.append(key)

        up = images_service.upload_image(db, blobs, settings, me(carol), data)
    assert sorted(removed) == sorted(up.files) and keys(blobs) == []
    images_service.ensure_stored(sessions, blobs, up)
    assert blobs.get(up.image.blob_key) == data
    assert blobs.get(up.image.thumb_key) == up.files[up.image.thumb_key]


def old(blobs: LocalBlobStore, *keys: str) -> None:
    for key in keys:
        then = time.time() - 7200
        os.utime(blobs.root / key, (then, then))


def test_sweep_keeps_a_file_whose_row_is_committed_after_its_listing(
    sessions: sessionmaker[Session], blobs: LocalBlobStore, settings: Settings, carol: User
) -> None:
    """The sweep lists old files, then reads the keys rows use; an upload of the same bytes
    commits after that read. The sweep's own check, once the file is moved, sees the row."""
    data = png_bytes(18)
    first = commit_upload(sessions, blobs, settings, carol, data)
    with sessions.begin() as db:  # the row goes, its files stay: a crash before the purge
        images_service.delete_image(db, db.get(Image, first.id))  # type: ignore[arg-type]
    old(blobs, first.blob_key, first.thumb_key)
    opened: list[Session] = []

    def upload_after_the_keys_are_read() -> Session:
        if len(opened) == 1:
            commit_upload(sessions, blobs, settings, carol, data)
        opened.append(sessions())
        return opened[-1]

    assert sweep_orphans(upload_after_the_keys_are_read, blobs, 3600) == []  # type: ignore[arg-type]
    assert len(opened) > 1 and keys(blobs) == sorted([first.blob_key, first.thumb_key])
    assert blobs.get(first.blob_key) == data


def test_sweep_puts_back_what_a_removal_cut_short_had_moved_away(
    sessions: sessionmaker[Session], blobs: LocalBlobStore, settings: Settings, carol: User
) -> None:
    """A crash between moving a file aside and putting it back leaves it under a trash name:
    the next start puts it back if a row uses it, and drops it otherwise."""
    image = commit_upload(sessions, blobs, settings, carol, png_bytes(19))
    folder, name = image.blob_key.rsplit("/", 1)
    trash = f"{folder}/{TMP_PREFIX}{TRASH_MARK}0123abcd-{name}"
    os.rename(blobs.root / image.blob_key, blobs.root / trash)
    unused = f"{folder}/{TMP_PREFIX}{TRASH_MARK}4567cdef-{'0' * 64}"
    blobs.put(unused, b"a deleted image's")
    old(blobs, trash, unused, image.thumb_key)
    assert sorted(sweep_orphans(sessions, blobs, 3600)) == sorted([trash, unused])
    assert blobs.get(image.blob_key) == png_bytes(19)
    assert keys(blobs) == sorted([image.blob_key, image.thumb_key])


def test_a_late_check_leaves_no_file_for_a_row_deleted_meanwhile(
    sessions: sessionmaker[Session], blobs: LocalBlobStore, settings: Settings, carol: User
) -> None:
    """The upload's post-commit check finds its files missing because the image was deleted
    (and its files removed) right after the commit: putting them back would leave files no
    row references, so the check hands them to the removal protocol."""
    data = png_bytes(23)
    with sessions.begin() as db:
        up = images_service.upload_image(db, blobs, settings, me(carol), data)
    with sessions.begin() as db:
        gone = images_service.delete_image(db, images_service.get_image(db, me(carol), up.image.id))
    images_service.purge_unused_blobs(sessions, blobs, gone)
    assert keys(blobs) == []
    images_service.ensure_stored(sessions, blobs, up)
    assert keys(blobs) == []
