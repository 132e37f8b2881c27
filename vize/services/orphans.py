"""Sweep files no row references: left by a crash between writing a blob and committing its
row (an upload or a training killed mid-way), or by a deleted task's models.

It runs in the background of every server (``OrphanSweeper``), one node at a time: a node
that finds another sweeping skips its round."""

from __future__ import annotations

import fcntl
import logging
import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from vize.config import Settings
from vize.db.tables import Image, Model, Prediction
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
    for blob_key, thumb_key in db.execute(select(Prediction.blob_key, Prediction.thumb_key)):
        keys.update((blob_key, thumb_key))
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


# ---- in the background, one node at a time ------------------------------------------------
# Any fixed 64-bit number: the PostgreSQL advisory lock every replica and worker asks for.
SWEEP_LOCK_ID = 0x56495A45_5357  # "VIZESW"


@contextmanager
def sweep_lock(sessions: sessionmaker[Session], settings: Settings) -> Iterator[bool]:
    """Yields whether this process holds the cluster-wide sweep lock (never waits for it).

    PostgreSQL: a session advisory lock on a connection of its own, held for the sweep; a
    process that dies drops its connection and with it the lock. SQLite serves one machine
    only: an exclusive ``flock`` on a file beside the database, dropped by the OS likewise."""
    engine = sessions.kw["bind"]
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            got = bool(conn.scalar(text("SELECT pg_try_advisory_lock(:id)"), {"id": SWEEP_LOCK_ID}))
            try:
                yield got
            finally:
                if got:
                    conn.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": SWEEP_LOCK_ID})
                conn.rollback()
        return
    path = Path(str(engine.url.database or settings.data_dir / "vize")).with_suffix(".sweep-lock")
    with path.open("a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def sweep_if_first(sessions: sessionmaker[Session], blobs: BlobStore, settings: Settings) -> bool:
    """One sweep unless another node is sweeping now; whether this one swept."""
    with sweep_lock(sessions, settings) as mine:
        if not mine:
            log.info("orphan sweep skipped: another node is sweeping")
            return False
        started = time.monotonic()
        removed = sweep_orphans(sessions, blobs, settings.orphan_grace_seconds)
        log.log(
            logging.INFO if removed else logging.DEBUG,
            "orphan sweep done: %d removed in %.2f s",
            len(removed),
            time.monotonic() - started,
        )
        return True


class OrphanSweeper:
    """A daemon thread: a sweep right after start (off the start-up path: the server answers
    meanwhile), then one about every ``orphan_sweep_interval_seconds``, jittered so that
    replicas started together spread out. A failed round (storage or database down) is
    logged and retried at the next one; it never stops the server."""

    def __init__(
        self, sessions: sessionmaker[Session], blobs: BlobStore, settings: Settings
    ) -> None:
        self.sessions, self.blobs, self.settings = sessions, blobs, settings
        self.stopped = threading.Event()
        self.rounds = 0  # finished rounds, swept or skipped (tests wait on it)
        self.thread = threading.Thread(target=self._run, name="vize-orphan-sweep", daemon=True)

    def start(self) -> OrphanSweeper:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopped.set()
        # A sweep in progress finishes its current file; a long listing is not waited for.
        self.thread.join(timeout=5)

    def _run(self) -> None:
        interval = self.settings.orphan_sweep_interval_seconds
        while not self.stopped.is_set():
            try:
                sweep_if_first(self.sessions, self.blobs, self.settings)
            except Exception:
                log.exception("orphan sweep failed; retrying at the next round")
            self.rounds += 1
            if interval <= 0 or self.stopped.wait(interval * random.uniform(0.75, 1.25)):
                return
