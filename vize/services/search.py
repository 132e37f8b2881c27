"""``POST /v2/similar``: the caller's training images most similar to up to 10 query images.

Two steps, like classification: ``admit`` (authentication done by the caller; the body, the
task, the charge, each record's bytes or image id, embedding a few index images not cached
yet) runs in the general thread pool, because fetching URLs and embedding wait on other
things; ``answer`` (decoding, the backbones, the scan of the index) runs in the inference
pool, keyed by the user like classification.

The cost of one search is bounded whatever the task: at most 10 records and ``k`` <= 100;
every image embedded for it (the queries, and at most ``INLINE_EMBED`` images of the task
without cached vectors) counts like a classified image against the user's rate limit and
monthly quota; the other unembedded images are left to the background embedding and not
searched (``not_indexed``); the index is read ``SCAN_CHUNK`` images at a time, and a scan
of a large task is a costly task of its user in the fair pool (at most their share of the
workers)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload, sessionmaker

from vize.config import Settings
from vize.db.tables import Image, Label, Task
from vize.errors import InvalidInput, NotFound, VizeError
from vize.services import batch
from vize.services import similarity as sim
from vize.services import usage as usage_service
from vize.services.classify import MAX_RECORDS, decode_records, record_data
from vize.services.common import get_owned, int_field
from vize.services.embeddings import ensure_embeddings
from vize.services.fairpool import Priority
from vize.services.fetch import FetchBudget
from vize.services.imaging import check_image
from vize.services.jsonvalue import check_echoed_records
from vize.services.limits import Limiter
from vize.services.recognition import Prepared, Recognizer
from vize.services.tasks import get_task
from vize.services.workspaces import Caller
from vize.storage import BlobStore

DEFAULT_K = 10
# A search is a request someone waits for: its embedding work is interactive (by user).
ASK = Priority.INTERACTIVE
INLINE_EMBED = 32  # unembedded task images a search embeds itself (charged); more wait
NEW_LAYOUTS = 2000  # colour layouts a search computes from thumbnails (cheap, but I/O)
COSTLY_INDEX = 20_000  # a scan of more images is a costly task of its user in the pool


@dataclass
class Query:
    """One record: an image id of the caller's (its descriptor known), or bytes to embed."""

    image_id: str | None = None
    vector: np.ndarray | None = None
    data: bytes | None = None
    error: VizeError | None = None
    hits: list[tuple[str, float]] | None = None


@dataclass
class Admitted:
    caller: Caller  # whose search: usage is counted for them and their workspace
    task: Task
    k: int
    records: list[Any]
    queries: list[Query]
    rows: list[tuple[str, str, str]]  # the index: task images with cached vectors
    pending: int = 0  # task images not searched: their embedding is left to the background
    skipped: int = field(default=0)  # index images without vectors when scanned

    @property
    def user_id(self) -> str:
        """The key of the search's work in the fair pool."""
        return self.caller.actor

    @property
    def costly(self) -> bool:
        """A long scan: one user may not run several at once (see ``FairPool``)."""
        return len(self.rows) > COSTLY_INDEX

    @property
    def not_indexed(self) -> int:
        return self.pending + self.skipped


def parse_k(value: Any) -> int:
    k = DEFAULT_K if value in (None, "") else int_field(value, "k")
    if not 1 <= k <= sim.MAX_K:
        raise InvalidInput(f"'k' must be between 1 and {sim.MAX_K}.", code="invalid_field")
    return k


def _label_id(db: Session, caller: Caller, task: Task, value: Any) -> str | None:
    if value in (None, ""):
        return None
    label = get_owned(db, Label, value, caller.workspace_id, "Label")
    if label.id not in {lbl.id for lbl in task.labels}:
        raise NotFound("Label not found in this task.", code="not_found")
    return label.id


def admit(
    sessions: sessionmaker[Session],
    blobs: BlobStore,
    recognizer: Recognizer,
    settings: Settings,
    caller: Caller,
    fields: dict[str, Any],
    budget: FetchBudget,
    limiter: Limiter | None = None,
    on_pending: Callable[[Caller, int], None] | None = None,
) -> Admitted:
    """Check the request, charge it, embed what it may, fetch its URLs. ``on_pending``
    (the caller) queues the background embedding of the images left out."""
    if not fields.get("task_id") and not fields.get("task"):
        raise InvalidInput("Field 'task_id' is required.", code="required")
    records = batch.check_records(fields.get("records"), MAX_RECORDS)
    check_echoed_records(records)  # before any fetch: the response echoes them
    k = parse_k(fields.get("k"))
    backbones = recognizer.backbones
    with sessions() as db:
        task = get_task(db, caller, fields.get("task_id") or fields.get("task"))
        label_id = _label_id(db, caller, task, fields.get("label"))
        rows = sim.task_image_rows(db, caller.workspace_id, task.id, label_id)
        id_rows, queries = _id_queries(db, caller, records)
        missing = sim.unembedded(db, [i for i, _, _ in rows], backbones)
        id_missing = sim.unembedded(db, [i for i, _, _ in id_rows], backbones)
    inline = set(missing[:INLINE_EMBED]) | set(id_missing)
    left_out = set(missing[INLINE_EMBED:]) - inline
    to_embed = [(i, b) for i, b, _ in {r[0]: r for r in rows + id_rows}.values() if i in inline]
    n_bytes = sum(1 for r in records if not _is_id(r))
    if limiter is not None and (to_embed or n_bytes):
        # Every image embedded for the search counts like a classified one (429 beyond).
        limiter.check(caller, len(to_embed) + n_bytes)
    if to_embed:
        done = ensure_embeddings(
            sessions, blobs, recognizer, to_embed, ("orig",), key=caller.actor, priority=ASK
        )
        with sessions.begin() as db:
            usage_service.record_classifications(db, caller, len(done.image_ids))
    if left_out and on_pending is not None:
        on_pending(caller, len(left_out))
    index_rows = [r for r in rows if r[0] not in left_out]
    known = sim.load_vectors(sessions, blobs, recognizer, id_rows, caller.actor, ASK)
    data = record_data(settings, [r if not _is_id(r) else {} for r in records], budget)
    for q, item in zip(queries, data, strict=True):
        if q.image_id is not None:
            q.vector = known.row(q.image_id)
            if q.vector is None:
                q.error = NotFound("Image not found (or its file is gone).", code="not_found")
        elif q.error is None:
            if isinstance(item, VizeError):
                q.error = item
            else:
                q.data = item
    return Admitted(caller, task, k, records, queries, index_rows, len(left_out))


def _is_id(record: Any) -> bool:
    return isinstance(record, dict) and record.get("_id") not in (None, "")


def _id_queries(
    db: Session, caller: Caller, records: list[Any]
) -> tuple[list[tuple[str, str, str]], list[Query]]:
    """Records that name a training image: the image must be the caller's (404 otherwise,
    for that record only)."""
    rows, queries = [], []
    for record in records:
        if not _is_id(record):
            queries.append(Query())
            continue
        try:
            image = get_owned(db, Image, record["_id"], caller.workspace_id, "Image")
        except NotFound as exc:
            queries.append(Query(error=exc))
            continue
        rows.append((image.id, image.blob_key, image.thumb_key))
        queries.append(Query(image_id=image.id))
    return rows, queries


def answer(
    sessions: sessionmaker[Session],
    blobs: BlobStore,
    recognizer: Recognizer,
    settings: Settings,
    job: Admitted,
) -> list[Query]:
    """Embed the byte records (decode errors become that record's error), then scan the
    index for every query; in the pool (the scan only reads cached vectors)."""
    todo = [q for q in job.queries if q.data is not None and q.error is None]
    data: list[bytes | VizeError] = [q.data for q in todo if q.data is not None]
    # The index holds the server's backbones' descriptors: the queries get the same.
    prepared = decode_records(recognizer, data, recognizer.backbones)
    good: list[tuple[Query, Prepared, Any]] = []
    for q, p in zip(todo, prepared, strict=True):
        if isinstance(p, VizeError):
            q.error = p
            continue
        try:
            img = check_image(
                q.data or b"",
                max_bytes=settings.max_upload_bytes,
                max_pixels=settings.max_image_pixels,
            ).image
        except VizeError as exc:
            q.error = exc
            continue
        good.append((q, p, img))
    if good:
        vectors = sim.query_vectors(recognizer, [p for _, p, _ in good], [i for _, _, i in good])
        for (q, _, _), vec in zip(good, vectors, strict=True):
            q.vector = vec
        with sessions.begin() as db:
            usage_service.record_classifications(db, job.caller, len(good))
    asked = [q for q in job.queries if q.vector is not None]
    if asked:
        found = sim.scan(
            sessions,
            blobs,
            recognizer.backbones,
            job.rows,
            np.stack([q.vector for q in asked if q.vector is not None]),
            job.k,
            [q.image_id for q in asked],
            NEW_LAYOUTS,
        )
        for q, hits in zip(asked, found.hits, strict=True):
            q.hits = hits
        job.skipped = found.skipped
    return job.queries


def results(
    sessions: sessionmaker[Session], job: Admitted, thumb_url: Any
) -> tuple[list[dict[str, Any]], int]:
    """The records echoed with ``_status`` and ``similar`` (best first); and how many failed."""
    found = [q.hits for q in job.queries]
    ids = {i for hits in found if hits for i, _ in hits}
    with sessions() as db:
        images = db.scalars(
            select(Image).where(Image.id.in_(ids)).options(selectinload(Image.labels))
        ).all()
        labels = {im.id: [{"id": lb.id, "name": lb.name} for lb in im.labels] for im in images}
    out, failed = [], 0
    for record, q, hits in zip(job.records, job.queries, found, strict=True):
        echo = (
            {k: v for k, v in record.items() if k != "_base64"} if isinstance(record, dict) else {}
        )
        if hits is None:
            err = q.error or InvalidInput("Nothing to search with.", code="invalid_record")
            out.append(
                {**echo, "_status": {"code": err.status, "text": err.detail, "error": err.code}}
            )
            failed += 1
            continue
        similar = [
            {"id": i, "similarity": s, "labels": labels.get(i, []), "thumb_img_path": thumb_url(i)}
            for i, s in hits
            if i in labels  # deleted since the index was read: left out
        ]
        out.append({**echo, "_status": {"code": 200, "text": "OK"}, "similar": similar})
    return out, failed
