"""Sweep files no row references: left by a crash between writing a blob and committing its
row (an upload or a training killed mid-way), or by a deleted task's models."""

from __future__ import annotations

import logging
import time

from sqlalchemy import select
from sqlalchemy.orm import Session

from vize.db.tables import Image, Model
from vize.storage import BlobStore
from vize.storage.blobs import TMP_PREFIX

log = logging.getLogger("vize.storage")
# Only these folders hold blobs: whatever else shares the storage folder is never touched.
SWEPT = ("images/", "thumbs/", "models/")


def referenced_keys(db: Session) -> set[str]:
    keys: set[str] = set()
    for blob_key, thumb_key in db.execute(select(Image.blob_key, Image.thumb_key)):
        keys.update((blob_key, thumb_key))
    keys.update(k for k in db.scalars(select(Model.artifact_key)) if k)
    return keys


def sweep_orphans(db: Session, blobs: BlobStore, grace_seconds: float) -> list[str]:
    """Delete unreferenced files older than ``grace_seconds``; returns their keys.

    The grace period protects uploads in flight in other processes sharing the storage: their
    file is written a moment before their row is committed."""
    cutoff = time.time() - grace_seconds
    # Files first, then the keys: a file written after the listing is never a candidate, and
    # one listed before its row was committed is young (within the grace period).
    candidates = [key for key, mtime in blobs.scan() if key.startswith(SWEPT) and mtime <= cutoff]
    if not candidates:
        return []
    used = referenced_keys(db)
    removed = []
    for key in candidates:
        if key not in used or key.rsplit("/", 1)[-1].startswith(TMP_PREFIX):
            blobs.delete(key)
            removed.append(key)
    if removed:
        log.warning("removed %d orphaned file(s) from storage", len(removed))
    return removed
