"""Training-image intake at the service level: dedupe (also under a race), blobs, deletion."""

from __future__ import annotations

import threading
import time

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from tests.conftest import png_bytes
from vize.config import Settings
from vize.db.tables import Image, User
from vize.services import images as images_service
from vize.services import labels as labels_service
from vize.storage import LocalBlobStore


def test_upload_dedupes_per_user(
    sessions: sessionmaker[Session], blobs: LocalBlobStore, settings: Settings, carol: User,
    dave: User,
) -> None:  # fmt: skip
    data = png_bytes(1)
    with sessions.begin() as db:
        first = images_service.upload_image(db, blobs, settings, carol, data, file_name="a.png")
        again = images_service.upload_image(db, blobs, settings, carol, data)
        other = images_service.upload_image(db, blobs, settings, dave, data)
    assert first.created and not again.created and other.created
    assert again.image.id == first.image.id != other.image.id
    # One file per image, even for equal bytes: deleting one can never remove the other's.
    assert first.image.blob_key != other.image.blob_key
    assert blobs.get(first.image.blob_key) == blobs.get(other.image.blob_key) == data


def test_file_name_is_cleaned(
    db: Session, blobs: LocalBlobStore, settings: Settings, carol: User
) -> None:
    up = images_service.upload_image(
        db, blobs, settings, carol, png_bytes(2), file_name="C:\\dir/../evil\x00\n" + "n" * 300
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
    winner = images_service.upload_image(first, blobs, settings, carol, data)  # flushed only
    results: list[object] = []

    def second() -> None:
        try:
            with sessions.begin() as db:
                results.append(images_service.upload_image(db, blobs, settings, carol, data))
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
    # The loser removed the files it had written: only the winner's image and thumbnail.
    assert sorted(k for k, _ in blobs.scan()) == sorted(
        [winner.image.blob_key, winner.image.thumb_key]
    )


def test_delete_removes_only_the_images_own_files(
    sessions: sessionmaker[Session], blobs: LocalBlobStore, settings: Settings, carol: User,
    dave: User,
) -> None:  # fmt: skip
    data = png_bytes(4)
    with sessions.begin() as db:
        mine = images_service.upload_image(db, blobs, settings, carol, data).image
        theirs = images_service.upload_image(db, blobs, settings, dave, data).image
    with sessions.begin() as db:
        to_check = images_service.delete_image(db, db.get(Image, mine.id))  # type: ignore[arg-type]
    with sessions.begin() as db:
        images_service.purge_unused_blobs(db, blobs, to_check)
    assert not blobs.exists(mine.blob_key) and not blobs.exists(mine.thumb_key)
    assert blobs.get(theirs.blob_key) == data and blobs.exists(theirs.thumb_key)


def test_a_file_shared_by_older_rows_stays_until_the_last_goes(
    sessions: sessionmaker[Session], blobs: LocalBlobStore, settings: Settings, carol: User,
    dave: User,
) -> None:  # fmt: skip
    """Images stored before files were per image share one file per content."""
    data = png_bytes(14)
    with sessions.begin() as db:
        mine = images_service.upload_image(db, blobs, settings, carol, data).image
        theirs = images_service.upload_image(db, blobs, settings, dave, data).image
        shared = db.get(Image, theirs.id)
        assert shared is not None
        shared.blob_key, shared.thumb_key = mine.blob_key, mine.thumb_key
    keys = [mine.blob_key, mine.thumb_key]
    for image, left in ((mine, True), (theirs, False)):
        with sessions.begin() as db:
            to_check = images_service.delete_image(db, db.get(Image, image.id))  # type: ignore[arg-type]
        with sessions.begin() as db:
            images_service.purge_unused_blobs(db, blobs, to_check)
        assert all(blobs.exists(k) for k in keys) is left


def test_list_filters_and_labels(
    db: Session, blobs: LocalBlobStore, settings: Settings, carol: User
) -> None:
    label = labels_service.create_label(db, carol, {"name": "l"}, None)
    a = images_service.upload_image(db, blobs, settings, carol, png_bytes(5), labels=[label]).image
    b = images_service.upload_image(db, blobs, settings, carol, png_bytes(6), test_image=True).image
    page = images_service.list_images(db, carol, 0, 10, label_ids=[label.id])
    assert [i.id for i in page.items] == [a.id]
    assert [i.id for i in images_service.list_images(db, carol, 0, 10, test=True).items] == [b.id]
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
        image_id = images_service.upload_image(db, blobs, settings, carol, png_bytes(9)).image.id
        label_id = labels_service.create_label(db, carol, {"name": "l"}, None).id

    def label_it(db: Session) -> list[str]:
        image = images_service.get_image(db, carol, image_id)
        label = labels_service.get_label(db, carol, label_id)
        return [lbl.id for lbl in images_service.add_label(db, image, label).labels]

    first, second = race(sessions, label_it)
    assert first == second == [label_id]
