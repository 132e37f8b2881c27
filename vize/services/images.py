"""Training images: intake with per-user dedupe by content, files content addressed per
owner, filters."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import delete, exists, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload, sessionmaker

from vize.config import Settings
from vize.db.engine import savepoint
from vize.db.tables import Image, ImageLabel, Label, Prediction, TaskLabel, new_id
from vize.errors import InvalidInput, VizeError
from vize.ml.preprocess import Budget
from vize.services.common import (
    Page,
    get_owned,
    in_workspace,
    like_pattern,
    paginate,
)
from vize.services.conflicts import check_new_image, place_label
from vize.services.imaging import CheckedImage, check_image, make_thumbnail
from vize.services.jsonvalue import check_json
from vize.services.workspaces import Caller
from vize.storage import BlobStore

MAX_META_CHARS = 64 * 1024
T = TypeVar("T")
log = logging.getLogger("vize.storage")


@dataclass
class Upload:
    image: Image
    created: bool  # False: the same content was already there
    # What this upload wrote, by key: ``ensure_stored`` puts back what a remover took.
    files: dict[str, bytes] = field(default_factory=dict)


def blob_keys(workspace_id: str, sha256: str) -> tuple[str, str]:
    # Content addressed per workspace: equal bytes in one workspace are one file, which only
    # rows of that workspace can reference, and (workspace, sha256) is unique, so at most one
    # row does. (Files stored before workspaces are under their user's id: still their rows'.)
    base = f"{workspace_id}/{sha256[:2]}/{sha256}"
    return f"images/{base}", f"thumbs/{base}.jpg"


def key_in_use(sessions: sessionmaker[Session], key: str) -> bool:
    """Whether a committed row references ``key``. A transaction of its own, begun now: an
    older one could read a snapshot from before a commit that happened after the file moved."""
    with sessions() as db:
        used = select(Image.id).where(or_(Image.blob_key == key, Image.thumb_key == key))
        if db.scalar(used.limit(1)) is not None:
            return True
        # Images kept for review share the content-addressed keys (vize.services.review).
        kept = select(Prediction.id).where(
            or_(Prediction.blob_key == key, Prediction.thumb_key == key)
        )
        return db.scalar(kept.limit(1)) is not None


def remove_blob(sessions: sessionmaker[Session], blobs: BlobStore, key: str) -> bool:
    """Delete an image or thumbnail file unless a committed row references it (now or by the
    time the check reads): never a plain delete, another upload may share the key."""
    return blobs.delete_unless(key, lambda: key_in_use(sessions, key))


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

    def delete_unless(self, key: str, in_use: Callable[[], bool]) -> bool:
        return self.blobs.delete_unless(key, in_use)

    def scan(self) -> Iterator[tuple[str, float]]:
        return self.blobs.scan()


@contextmanager
def discard_on_failure(blobs: BlobStore, sessions: sessionmaker[Session]) -> Iterator[BlobStore]:
    """The store for one upload: if the block fails (a storage error, the commit, a crash of
    the request) the files it wrote are removed, so no file outlives a row never committed.
    Not those a committed row references: a concurrent upload of the same bytes by the same
    user wrote the same key. Open it outside the transaction, so it checks after the rollback."""
    tracked = _Tracked(blobs)
    try:
        yield tracked
    except BaseException:
        for key in dict.fromkeys(tracked.written):
            # Cleaning up after a failure must not hide that failure (a database down too).
            with suppress(Exception):
                remove_blob(sessions, blobs, key)
        raise


def ensure_stored(sessions: sessionmaker[Session], blobs: BlobStore, upload: Upload) -> None:
    """Right after the upload's commit: put back a file a concurrent remover took between our
    write and our commit (it asked before our row was there). Same key, same bytes. The row
    may be gone by now too (deleted right after the commit): the put file then goes through
    the removal protocol, which keeps it only if a row references it."""
    for key, data in upload.files.items():
        if not blobs.exists(key):
            blobs.put(key, data)
            remove_blob(sessions, blobs, key)


def store_upload(
    sessions: sessionmaker[Session],
    blobs: BlobStore,
    store: Callable[[Session, BlobStore], tuple[Upload, T]],
) -> tuple[Upload, T]:
    """One upload as one unit: ``store`` runs in its own transaction with a store that takes
    back what it wrote if anything fails, and after the commit its files are checked."""
    with discard_on_failure(blobs, sessions) as tracked, sessions.begin() as db:
        up, extra = store(db, tracked)
    ensure_stored(sessions, blobs, up)
    return up, extra


def upload_image(
    db: Session,
    blobs: BlobStore,
    settings: Settings,
    caller: Caller,
    data: bytes,
    *,
    file_name: str = "",
    labels: list[Label] | None = None,
    meta_data: dict[str, Any] | None = None,
    test_image: bool = False,
    budget: Budget | None = None,
) -> Upload:
    """Validate, store the blob (before the row, so a row never points at nothing), insert.
    After the commit, the caller passes the result to ``ensure_stored``. ``budget`` bounds the
    memory of the decodes running at once (uploads run in a pool of tens of threads)."""
    sha = hashlib.sha256(data).hexdigest()
    existing = db.scalar(
        select(Image).where(in_workspace(Image, caller.workspace_id), Image.sha256 == sha)
    )
    if existing is not None:
        missing = _missing(blobs, settings, existing, data, budget)
        return Upload(existing, created=False, files=missing)
    check_new_image(db, list(labels or []), file_name)  # before any work on the bytes
    checked = _check(data, settings, budget)
    meta_data = check_meta_data(meta_data or {})
    key, thumb_key = blob_keys(caller.workspace_id, sha)
    files = {key: data, thumb_key: make_thumbnail(checked.image)}
    for k, content in files.items():
        blobs.put(k, content)
    image = Image(
        id=new_id(),
        owner_id=caller.user_id,
        workspace_id=caller.workspace_id,
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
    return _insert(db, image, files)


def _insert(db: Session, image: Image, files: dict[str, bytes]) -> Upload:
    try:
        with savepoint(db):
            db.add(image)
            db.flush()
    except IntegrityError:
        # A concurrent upload of the same content won the race: answer with its row. Our
        # files are its files (same workspace, same bytes, same keys): nothing to take back, and
        # they are ours to check after our commit, like any upload's.
        space, sha = image.workspace_id, image.sha256
        winner = db.scalar(select(Image).where(in_workspace(Image, space), Image.sha256 == sha))
        if winner is None:  # and deleted since: nothing is lost, but nothing was stored
            raise VizeError(
                "The same image was being uploaded and deleted at once; send it again.",
                code="upload_conflict",
                status=409,
            ) from None
        ours = {k: v for k, v in files.items() if k in (winner.blob_key, winner.thumb_key)}
        return Upload(winner, created=False, files=ours)
    return Upload(image, created=True, files=files)


def _missing(
    blobs: BlobStore, settings: Settings, image: Image, data: bytes, budget: Budget | None
) -> dict[str, bytes]:
    """The files of the row already there for these bytes that are missing now: a remover may
    have taken them just before its upload's commit, and its upload not have put them back yet
    (or ever, if it crashed). Sending the same bytes again is how a client repairs that."""
    files: dict[str, bytes] = {}
    if not blobs.exists(image.blob_key):
        files[image.blob_key] = data
    if not blobs.exists(image.thumb_key):
        with suppress(VizeError):  # limits lowered since: the image itself matters more
            files[image.thumb_key] = make_thumbnail(_check(data, settings, budget).image)
    return files


def _check(data: bytes, settings: Settings, budget: Budget | None = None) -> CheckedImage:
    return check_image(
        data,
        max_bytes=settings.max_upload_bytes,
        max_pixels=settings.max_image_pixels,
        max_decode_bytes=settings.max_decode_bytes,
        budget=budget,
    )


def check_meta_data(value: dict[str, Any]) -> dict[str, Any]:
    """Free-form, but bounded: it is stored in every image row and sent with every listing."""
    result: dict[str, Any] = check_json(value, "meta_data", max_chars=MAX_META_CHARS)
    return result


def _clean_name(name: str) -> str:
    # Keep only the last path component: the name is shown, never used as a path.
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    return "".join(ch for ch in base if ch.isprintable())[:255]


def get_image(db: Session, caller: Caller, image_id: object) -> Image:
    return get_owned(db, Image, image_id, caller.workspace_id, "Training image")


def images_by_id(db: Session, caller: Caller, ids: list[str]) -> dict[str, Image]:
    """The workspace's images among ``ids`` (those deleted since are simply absent)."""
    if not ids:
        return {}
    stmt = (
        select(Image)
        .where(in_workspace(Image, caller.workspace_id), Image.id.in_(ids))
        .options(selectinload(Image.labels))
    )
    return {img.id: img for img in db.scalars(stmt)}


def still_exists(db: Session, image: Image) -> bool:
    """A fresh look for the row (not the session's copy): a concurrent delete may have won."""
    return db.scalar(select(Image.id).where(Image.id == image.id)) is not None


def list_images(
    db: Session,
    caller: Caller,
    offset: int,
    limit: int,
    *,
    task_id: str | None = None,
    label_ids: list[str] | None = None,
    not_label_ids: list[str] | None = None,
    test: bool | None = None,
    real: bool | None = None,
    search: str | None = None,
) -> Page[Image]:
    stmt = (
        select(Image)
        .where(in_workspace(Image, caller.workspace_id))
        .options(selectinload(Image.labels), selectinload(Image.label_links))
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
    if not_label_ids:
        carries = select(ImageLabel.image_id).where(
            ImageLabel.image_id == Image.id, ImageLabel.label_id.in_(not_label_ids)
        )
        stmt = stmt.where(~exists(carries))
    if test is not None:
        stmt = stmt.where(Image.test_image.is_(test))
    if real is not None:
        stmt = stmt.where(Image.real_image.is_(real))
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
    if fields.get("real") is not None:
        image.real_image = bool(fields["real"])
    db.flush()
    return image


@dataclass
class BulkChange:
    """What ``training-image/update`` changes on each image (None: leave the flag alone)."""

    add: list[Label]
    remove: list[Label]
    test: bool | None
    real: bool | None
    move: bool = False  # a label added in a categorization task replaces the image's other


def bulk_update(
    db: Session, caller: Caller, images: list[Image], label_filter: list[str], change: BulkChange
) -> int:
    """Apply ``change`` to ``images`` and to every image of the workspace carrying any label of
    ``label_filter``; returns how many images that is."""
    targets = {img.id: img for img in images}
    if label_filter:
        carries = select(ImageLabel.image_id).where(ImageLabel.label_id.in_(label_filter))
        stmt = select(Image).where(in_workspace(Image, caller.workspace_id), Image.id.in_(carries))
        for img in db.scalars(stmt.options(selectinload(Image.labels))):
            targets.setdefault(img.id, img)
    for img in targets.values():
        for label in change.remove:
            if label in img.labels:
                img.labels.remove(label)
        for label in change.add:
            place_label(db, img, label, move=change.move)
        if change.test is not None:
            img.test_image = change.test
        if change.real is not None:
            img.real_image = change.real
    db.flush()
    return len(targets)


def set_label_value(db: Session, image: Image, label: Label, value: float | None) -> Image:
    """The value of ``label`` on ``image``; 400 if the image does not carry the label."""
    link = db.get(ImageLabel, (image.id, label.id))
    if link is None:
        raise InvalidInput(
            "The image does not carry this label; add it first (add-label).",
            code="label_not_on_image",
        )
    link.value = value
    db.flush()
    db.expire(image, ["label_links"])  # the read-only copy of the links reloads with it
    return image


def add_label(db: Session, image: Image, label: Label, *, move: bool = False) -> list[Label]:
    """Put ``label`` on ``image`` (see ``conflicts.place_label``); returns the labels that
    ``move`` took off."""
    return place_label(db, image, label, move=move)


def remove_label(db: Session, image: Image, label: Label) -> Image:
    if label in image.labels:
        image.labels.remove(label)
        db.flush()
    return image


def delete_image(db: Session, image: Image) -> list[str]:
    """Remove the row; returns the keys to pass to ``purge_unused_blobs`` after the commit."""
    keys = [image.blob_key, image.thumb_key]
    # Not ``db.delete``: a concurrent delete of the same image may have won, and the ORM
    # warns about a row that was not there. The database cascades to labels and embeddings.
    gone = db.execute(delete(Image).where(Image.id == image.id))
    return keys if gone.rowcount else []  # type: ignore[attr-defined]  # the winner purges


def purge_unused_blobs(sessions: sessionmaker[Session], blobs: BlobStore, keys: list[str]) -> None:
    """Delete the files of a deleted image unless a committed row references them (called
    after the commit): a concurrent upload of the same bytes by the same user may have just
    committed one. Images stored before files were per owner may share a file per content
    across users; it stays until the last of them goes. The delete is committed already, so a
    failure here is logged, not raised: the start-up sweep removes what is left."""
    for key in keys:
        try:
            remove_blob(sessions, blobs, key)
        except Exception:
            log.exception("could not remove %s after its image was deleted", key)
