"""Training images: intake with per-user dedupe by content, one file per image, filters."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import exists, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from vize.config import Settings
from vize.db.tables import Image, ImageLabel, Label, TaskLabel, User, new_id
from vize.errors import InvalidInput
from vize.services.common import Page, append_link, get_owned, like_pattern, paginate
from vize.services.imaging import check_image, make_thumbnail
from vize.storage import BlobStore

MAX_META_CHARS = 64 * 1024


@dataclass
class Upload:
    image: Image
    created: bool  # False: the same content was already there


def blob_keys(owner_id: str, image_id: str) -> tuple[str, str]:
    # One file per image row, never shared (not even for equal bytes): deleting an image can
    # then never remove a file that a concurrent upload of the same content is about to
    # commit a row for. Dedupe is per user anyway, by the (owner, sha256) constraint.
    base = f"{owner_id}/{image_id[:2]}/{image_id}"
    return f"images/{base}", f"thumbs/{base}.jpg"


class _Tracked:
    """A blob store that remembers what it wrote, to take it back."""

    def __init__(self, blobs: BlobStore) -> None:
        self.blobs = blobs
        self.written: list[str] = []

    def put(self, key: str, data: bytes) -> None:
        self.written.append(key)  # first: a failed put may leave a file too
        self.blobs.put(key, data)

    def get(self, key: str) -> bytes:
        return self.blobs.get(key)

    def exists(self, key: str) -> bool:
        return self.blobs.exists(key)

    def delete(self, key: str) -> None:
        self.blobs.delete(key)

    def path(self, key: str) -> Path | None:
        return self.blobs.path(key)

    def scan(self) -> Iterator[tuple[str, float]]:
        return self.blobs.scan()


@contextmanager
def discard_on_failure(blobs: BlobStore) -> Iterator[BlobStore]:
    """The store for one upload: if the block fails (a storage error, the commit, a crash of
    the request) the files it wrote are deleted, so no file outlives a row never committed."""
    tracked = _Tracked(blobs)
    try:
        yield tracked
    except BaseException:
        for key in tracked.written:
            _delete_quietly(blobs, key)
        raise


def _delete_quietly(blobs: BlobStore, key: str) -> None:
    with suppress(OSError):  # cleaning up after a failure must not hide that failure
        blobs.delete(key)


def upload_image(
    db: Session,
    blobs: BlobStore,
    settings: Settings,
    user: User,
    data: bytes,
    *,
    file_name: str = "",
    labels: list[Label] | None = None,
    meta_data: dict[str, Any] | None = None,
    test_image: bool = False,
) -> Upload:
    """Validate, store the blob (before the row, so a row never points at nothing), insert."""
    sha = hashlib.sha256(data).hexdigest()
    existing = db.scalar(select(Image).where(Image.owner_id == user.id, Image.sha256 == sha))
    if existing is not None:
        return Upload(existing, created=False)
    checked = check_image(
        data, max_bytes=settings.max_upload_bytes, max_pixels=settings.max_image_pixels
    )
    meta_data = check_meta_data(meta_data or {})
    image_id = new_id()
    key, thumb_key = blob_keys(user.id, image_id)
    thumb = make_thumbnail(checked.image)
    blobs.put(key, data)
    blobs.put(thumb_key, thumb)
    image = Image(
        id=image_id,
        owner_id=user.id,
        sha256=sha,
        blob_key=key,
        thumb_key=thumb_key,
        content_type=checked.content_type,
        size=len(data),
        width=checked.width,
        height=checked.height,
        file_name=_clean_name(file_name),
        meta_data=meta_data,
        test_image=test_image,
        labels=list(labels or []),
    )
    return _insert(db, blobs, image)


def _insert(db: Session, blobs: BlobStore, image: Image) -> Upload:
    try:
        with db.begin_nested():
            db.add(image)
            db.flush()
    except IntegrityError:
        # A concurrent upload of the same content won the race: answer with its row, and
        # take back the files written for ours.
        owner, sha = image.owner_id, image.sha256
        winner = db.scalar(select(Image).where(Image.owner_id == owner, Image.sha256 == sha))
        if winner is None:
            raise
        for key in (image.blob_key, image.thumb_key):
            _delete_quietly(blobs, key)
        return Upload(winner, created=False)
    return Upload(image, created=True)


def check_meta_data(value: dict[str, Any]) -> dict[str, Any]:
    """Free-form, but bounded: it is stored in every image row and sent with every listing."""
    if len(json.dumps(value, ensure_ascii=False)) > MAX_META_CHARS:
        raise InvalidInput(
            f"meta_data is larger than {MAX_META_CHARS // 1024} KB.", code="invalid_meta_data"
        )
    return value


def _clean_name(name: str) -> str:
    # Keep only the last path component: the name is shown, never used as a path.
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    return "".join(ch for ch in base if ch.isprintable())[:255]


def get_image(db: Session, user: User, image_id: object) -> Image:
    return get_owned(db, Image, image_id, user.id, "Training image")


def list_images(
    db: Session,
    user: User,
    offset: int,
    limit: int,
    *,
    task_id: str | None = None,
    label_ids: list[str] | None = None,
    test: bool | None = None,
    search: str | None = None,
) -> Page[Image]:
    stmt = (
        select(Image)
        .where(Image.owner_id == user.id)
        .options(selectinload(Image.labels))
        .order_by(Image.created.desc(), Image.id)
    )
    if task_id is not None:
        in_task = (
            select(ImageLabel.image_id)
            .join(TaskLabel, TaskLabel.label_id == ImageLabel.label_id)
            .where(TaskLabel.task_id == task_id, ImageLabel.image_id == Image.id)
        )
        stmt = stmt.where(exists(in_task))
    for label_id in label_ids or []:
        stmt = stmt.where(
            exists().where(ImageLabel.image_id == Image.id, ImageLabel.label_id == label_id)
        )
    if test is not None:
        stmt = stmt.where(Image.test_image.is_(test))
    if search:
        by_name = Image.file_name.ilike(like_pattern(search), escape="\\")
        stmt = stmt.where(or_(by_name, Image.id == search.replace("\x00", "")))
    return paginate(db, stmt, offset, limit)


def update_image(db: Session, image: Image, fields: dict[str, Any]) -> Image:
    if "meta_data" in fields and fields["meta_data"] is not None:
        if not isinstance(fields["meta_data"], dict):
            raise InvalidInput("meta_data must be a JSON object.", code="invalid_meta_data")
        image.meta_data = check_meta_data(fields["meta_data"])
    if fields.get("test_image") is not None:
        image.test_image = bool(fields["test_image"])
    db.flush()
    return image


def add_label(db: Session, image: Image, label: Label) -> Image:
    append_link(db, image, "labels", label)
    return image


def remove_label(db: Session, image: Image, label: Label) -> Image:
    if label in image.labels:
        image.labels.remove(label)
        db.flush()
    return image


def delete_image(db: Session, image: Image) -> list[str]:
    """Remove the row; returns the keys ``purge_unused_blobs`` should check after commit."""
    keys = [image.blob_key, image.thumb_key]
    db.delete(image)
    db.flush()
    return keys


def purge_unused_blobs(db: Session, blobs: BlobStore, keys: list[str]) -> None:
    """Delete files no row references any more (called after commit). New images never
    share a file; images stored before that did share one per content, and keep it until
    the last of them goes (no new row can start using such a key)."""
    for key in keys:
        used = select(Image.id).where(or_(Image.blob_key == key, Image.thumb_key == key))
        if db.scalar(used.limit(1)) is None:
            blobs.delete(key)
