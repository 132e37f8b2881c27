"""Sweep files no row references: left by a crash between writing a blob and committing its
row (an upload or a training killed mid-way), or by a deleted task's models."""

from __future__ import annotations

import logging
import time
from contextlib import suppress

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from vize.db.tables import Image, Model
from vize.services.images import key_in_use, remove_blob
from vize.storage import BlobStore
from vize.storage.blobs import TMP_PREFIX, trash_origin

log = logging.getLogger("vize.storage")
# Only these folders hold blobs: whatever else shares the storage folder is never touched.
SWEPT = ("images/", "thumbs/", "models/")


def referenced_keys(db: Session) -> set[str]:
    keys: set[str] = set()
    for blob_key, thumb_key in db.execute(select(Image.blob_key, Image.thumb_key)):
        keys.update((blob_key, thumb_key))
    keys.update(k for k in db.scalars(select(Model.artifact_key)) if k)
    return keys


def sweep_orphans(
    sessions: sessionmaker[Session], blobs: BlobStore, grace_seconds: float
) -> list[str]:
    """Delete unreferenced files older than ``grace_seconds``; returns their keys.

    The grace period protects uploads in flight in other processes sharing the storage: their
    file is written a moment before their row is committed."""
    cutoff = time.time() - grace_seconds
    # Files first, then the keys: a file written after the listing is never a candidate, and
    # one listed before its row was committed is young (within the grace period).
    candidates = [key for key, mtime in blobs.scan() if key.startswith(SWEPT) and mtime <= cutoff]
    if not candidates:
        return []
    with sessions() as db:
        used = referenced_keys(db)
    removed = [k for k in candidates if k not in used and _sweep(sessions, blobs, k)]
    if removed:
        log.warning("removed %d orphaned file(s) from storage", len(removed))
    return removed


def _sweep(sessions: sessionmaker[Session], blobs: BlobStore, key: str) -> bool:
    name = key.rsplit("/", 1)[-1]
    if key.startswith("models/") or name.startswith(TMP_PREFIX):
        # Model keys are unique, and nothing else writes a temporary or trash file's name.
        if (origin := trash_origin(key)) is not None:
            _recover(sessions, blobs, key, origin)
        blobs.delete(key)
        return True
    # Images and thumbnails are content addressed: an upload of the same bytes may be
    # committing a row for this very key since ``used`` was read.
    return remove_blob(sessions, blobs, key)


def _recover(sessions: sessionmaker[Session], blobs: BlobStore, trash: str, origin: str) -> None:
    # A removal cut short (a crash) between moving a file away and putting it back: a row may
    # still need it. Put back by copy, which a concurrent writer of the same bytes cannot spoil.
    if not blobs.exists(origin) and key_in_use(sessions, origin):
        with suppress(KeyError):
            blobs.put(origin, blobs.get(trash))
