"""The embedding cache: each image's backbone vectors, computed once and kept in the database,
and the ``embed`` job that fills it for new uploads so a training starts warm."""

from __future__ import annotations

import threading
import time
from collections.abc import Hashable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError

from vize.db.tables import Embedding, Image, Job
from vize.ml.batcher import Lane
from vize.services.context import JobContext, ProgressFn
from vize.services.fairpool import Priority
from vize.services.recognition import Recognizer, cached_embeddings
from vize.storage import BlobStore

EMBED_BATCH = 8
# Embedding after uploads runs while classifications are served: smaller chunks, so a
# classification that finds both workers busy waits for 2 forwards at most, not 8 (on this CPU
# an 8-image forward also cost more per image than a 1-image one).
UPLOAD_BATCH = 2
Vectors = dict[tuple[str, str, str], np.ndarray]  # (image id, backbone, view) -> vector
# Blob reads run ahead of the forwards in I/O threads: on object storage a read takes
# milliseconds to tens of milliseconds, which a pool thread reading its own chunk spent idle
# (bench/scale_bench.py: a worker used 0.76 of its core against moto's S3 server).
FETCH_THREADS = 4
FETCH_AHEAD = 4  # chunks read but not yet embedded, at most (bounds the bytes held)


@dataclass
class EmbeddingSet:
    """Embeddings for a list of images: per backbone, per view, rows in ``image_ids`` order."""

    image_ids: list[str]
    vectors: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)
    gone: list[str] = field(default_factory=list)  # deleted meanwhile: no file to embed


def ensure_embeddings(
    sessions: Any,
    blobs: BlobStore,
    recognizer: Recognizer,
    images: list[tuple[str, str]],
    views: tuple[str, ...],
    progress: ProgressFn | None = None,
    key: Hashable = "embedding",
    priority: Priority = Priority.BACKGROUND,
    batch: int = EMBED_BATCH,
) -> EmbeddingSet:
    """Embed every (image id, blob key) not cached yet, in batches; return all vectors.
    ``key`` and ``priority`` place the chunks in the fair pool: a request embedding for a
    user (a similarity search) passes the user's id, so it shares the pool fairly."""
    ids = [image_id for image_id, _ in images]
    keys = dict(images)
    with sessions() as db:
        have = {
            (bb, view): cached_embeddings(db, ids, bb, view)
            for bb in recognizer.backbones
            for view in views
        }
    missing = [i for i in ids if any(i not in have[k] for k in have)]
    chunks = [missing[s : s + batch] for s in range(0, len(missing), batch)]
    prefetch = _Prefetch(blobs, [[(i, keys[i]) for i in c] for c in chunks])
    futures: list[Future[Vectors]] = []
    try:
        _submit_chunks(futures, recognizer, prefetch, len(chunks), key, priority, views)
        _collect(sessions, chunks, futures, have, progress, len(missing))
    finally:
        for future in futures:
            future.cancel()
        prefetch.close()
    gone = [i for i in missing if any(i not in cache for cache in have.values())]
    if gone:
        dropped = set(gone)
        ids = [i for i in ids if i not in dropped]
    if recognizer.on_embeddings is not None:  # the metrics' cache hits and misses
        recognizer.on_embeddings(len(images) - len(missing), len(missing))
    out = EmbeddingSet(ids, gone=gone)
    for key, cache in have.items():
        out.vectors[key] = np.stack([cache[i] for i in ids]) if ids else np.zeros((0, 0))
    return out


def _submit_chunks(
    futures: list[Future[Vectors]],
    recognizer: Recognizer,
    prefetch: _Prefetch,
    n_chunks: int,
    key: Hashable,
    priority: Priority,
    views: tuple[str, ...],
) -> None:
    """Every chunk's embedding, queued in the recognizer's bounded pool (appended to
    ``futures`` one by one, so the caller cancels what was queued if one fails): every core
    works on a training, and a classification request waits for at most one chunk."""
    for index in range(n_chunks):
        futures.append(
            recognizer.pool.submit_for(
                key,
                priority,  # by default BACKGROUND: classification goes first
                _embed_chunk,
                prefetch,
                index,
                recognizer,
                views,
                Lane(int(priority)),
            )
        )


def _collect(
    sessions: Any,
    chunks: list[list[str]],
    futures: list[Future[Vectors]],
    have: dict[tuple[str, str], dict[str, np.ndarray]],
    progress: ProgressFn | None,
    total: int,
) -> None:
    """Store each chunk's vectors as it comes back, in order, reporting progress."""
    done = 0
    for chunk, future in zip(chunks, futures, strict=True):
        new = future.result()
        _store_vectors(sessions, new)
        for (image_id, bb, view), vec in new.items():
            have[(bb, view)][image_id] = vec
        done += len(chunk)
        if progress:
            progress(done / total, f"Embedded {done} of {total} new images")


class _Prefetch:
    """Reads the chunks' blobs in a few I/O threads, one read per image (so a chunk's images
    arrive together, not one after the other), in order and at most ``FETCH_AHEAD`` chunks
    ahead of the furthest one taken: the inference pool's threads get bytes that are already
    here and spend their core on decoding and forwards."""

    def __init__(self, blobs: BlobStore, chunks: list[list[tuple[str, str]]]) -> None:
        self._blobs, self._chunks = blobs, chunks
        self._reads: list[list[tuple[str, Future[bytes | None]]]] = []
        self._io = ThreadPoolExecutor(FETCH_THREADS, thread_name_prefix="vize-fetch")
        self._lock = threading.Lock()
        self._submit_until(FETCH_AHEAD)

    def _submit_until(self, end: int) -> None:
        with self._lock:
            while len(self._reads) < min(end, len(self._chunks)):
                chunk = self._chunks[len(self._reads)]
                self._reads.append(
                    [
                        (image_id, self._io.submit(_read, self._blobs, key))
                        for image_id, key in chunk
                    ]
                )

    def take(self, index: int) -> list[tuple[str, bytes]]:
        """Chunk ``index``'s (image id, bytes), without the images deleted meanwhile. Taken
        once: the prefetcher lets go of them, so it holds only the chunks ahead."""
        self._submit_until(index + 1 + FETCH_AHEAD)
        with self._lock:
            reads, self._reads[index] = self._reads[index], []
        got = [(image_id, read.result()) for image_id, read in reads]
        return [(image_id, data) for image_id, data in got if data is not None]

    def close(self) -> None:
        self._io.shutdown(wait=True, cancel_futures=True)


def _read(blobs: BlobStore, key: str) -> bytes | None:
    try:
        return blobs.get(key)
    except KeyError:  # the image was deleted after the training collected it
        return None


def _embed_chunk(
    prefetch: _Prefetch,
    index: int,
    recognizer: Recognizer,
    views: tuple[str, ...],
    lane: Lane,
) -> Vectors:
    present, prepared = [], []
    for image_id, data in prefetch.take(index):
        present.append(image_id)
        prepared.append(recognizer.prepare(data))
    out: Vectors = {}
    if not prepared:
        return out
    for view in views:
        emb = recognizer.embed_prepared(prepared, flip=view == "flip", lane=lane)
        for bb, matrix in emb.items():
            for image_id, vec in zip(present, matrix, strict=True):
                out[(image_id, bb, view)] = vec.astype(np.float32)
    return out


def _store_vectors(sessions: Any, new: Vectors) -> None:
    """One multi-row INSERT; rows another worker stored meanwhile are kept as they are."""
    if not new:  # every image of the chunk was deleted meanwhile
        return
    rows = [
        {"image_id": i, "backbone": bb, "view": view, "vector": vec.tobytes()}
        for (i, bb, view), vec in new.items()
    ]
    with sessions() as db:
        insert = pg_insert if db.bind.dialect.name == "postgresql" else sqlite_insert
        stmt = insert(Embedding).values(rows).on_conflict_do_nothing()
        try:
            db.execute(stmt)
            db.commit()
        except IntegrityError:  # an image deleted meanwhile: its vectors are not needed
            db.rollback()


def embed_new(ctx: JobContext, job: Job, progress: ProgressFn) -> str:
    """The ``embed`` job: embed the workspace's images that have no cached vector yet."""
    first = ctx.recognizer.backbones[0]
    backlog = ctx.recognizer.backlog
    share, started = backlog.started(job.workspace_id), time.perf_counter()  # before the query
    with ctx.sessions() as db:
        cached = select(Embedding.image_id).where(
            Embedding.backbone == first, Embedding.view == "orig"
        )
        rows = db.execute(
            select(Image.id, Image.blob_key)
            .where(Image.workspace_id == job.workspace_id, Image.id.not_in(cached))
            .order_by(Image.created)
        ).all()
    images = [(image_id, key) for image_id, key in rows]
    try:
        ensure_embeddings(
            ctx.sessions,
            ctx.blobs,
            ctx.recognizer,
            images,
            ctx.views,
            progress=progress,
            batch=UPLOAD_BATCH,
        )
    finally:  # done or failed, these uploads leave the backlog (a retry finds them again)
        backlog.finished(job.workspace_id, share, len(images), time.perf_counter() - started)
    return f"Embedded {len(images)} images."
