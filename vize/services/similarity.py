"""Similarity of training images: one descriptor per image, cosine search, near-duplicates.

The descriptor joins two unit vectors: the backbone embeddings (what the image shows, from the
embedding cache the trainings fill) and a 12x12 colour layout of the thumbnail, made
left-right symmetric (what the image looks like, blind to mirroring). Scaled by
sqrt(weight) and sqrt(1 - weight), their concatenation is a unit vector whose cosine is the
weighted mean of the two cosines, so 1 still means identical (a flat image has no layout:
its vector is shorter and matches nothing fully). On 32-pixel CIFAR images a
90 %-resized, JPEG q=75, mirrored copy keeps only ~0.78 backbone cosine to its original
(89 % top hits with the embeddings alone), while its colour layout barely moves; the layout
alone, however, cannot tell a blue sky from a blue sea. See docs/recognition.md and
bench/similar_bench.py for the measurements."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image as PILImage
from sqlalchemy import exists, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from vize.db.tables import Embedding, Image, ImageLabel, TaskLabel
from vize.services.embeddings import ensure_embeddings
from vize.services.fairpool import Priority
from vize.services.imaging import make_thumbnail
from vize.services.recognition import Prepared, Recognizer, cached_embeddings
from vize.storage import BlobStore

LAYOUT = "layout12"  # its rows in the embedding cache: backbone=LAYOUT, view="orig"
LAYOUT_SIDE = 12
CNN_WEIGHT = 0.5
# Near-duplicates need both: the same content (backbone cosine) and the same look (layout
# cosine). On cifar10-dev (bench/similar_bench.py) copies mirrored, resized to 90 % and
# re-encoded at JPEG q=75 keep a layout cosine >= 0.97 in 99 % of cases and a backbone cosine
# >= 0.58; ~1 in 100 000 distinct pairs pass both. A threshold on the mean alone also let
# through pictures that differ but share a colour layout (plain backgrounds).
DUPLICATE_CNN = 0.55
DUPLICATE_LAYOUT = 0.93
MAX_K = 100
SCAN_CHUNK = 2000  # images read at once by a search (and ids per IN list)
UPLOAD_LAYOUTS = 200  # colour layouts an upload's near-duplicate check may compute


@dataclass
class Vectors:
    """Descriptors of a set of images: row i is ``ids[i]``."""

    ids: list[str]
    matrix: np.ndarray

    def row(self, image_id: str) -> np.ndarray | None:
        try:
            return self.matrix[self.ids.index(image_id)]
        except ValueError:
            return None


# -- the descriptor ----------------------------------------------------------------------------
def layout_of_thumbnail(thumb: bytes) -> np.ndarray:
    """The colour layout of a stored thumbnail: 12x12 RGB box means, mirror-symmetric,
    zero-mean, unit length (a flat image gives zeros: it resembles nothing by layout)."""
    with PILImage.open(io.BytesIO(thumb)) as img:
        small = img.convert("RGB").resize((LAYOUT_SIDE, LAYOUT_SIDE), PILImage.Resampling.BOX)
    a = np.asarray(small, dtype=np.float32)
    a = a + a[:, ::-1]  # symmetric: a mirrored copy has the same layout
    v = (a - a.mean()).ravel()
    norm = float(np.linalg.norm(v))
    return (v / norm if norm > 1e-3 else np.zeros_like(v)).astype(np.float32)


def layout_of_image(img: PILImage.Image) -> np.ndarray:
    """Same as for a stored image: through the same thumbnail, so an uploaded copy of a
    stored image gets the same layout."""
    return layout_of_thumbnail(make_thumbnail(img))


def combine(blocks: Sequence[np.ndarray], layout: np.ndarray) -> np.ndarray:
    """Backbone blocks (each (N, d)) and layouts (N, 432) -> descriptors (N, D)."""
    unit = [b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12) for b in blocks]
    cnn = np.concatenate(unit, axis=1) / np.sqrt(len(unit))
    # Not renormalised: the parts stay separable (``part_similarities``); a flat image (zero
    # layout) then scores at most CNN_WEIGHT against anything.
    out = np.concatenate([np.sqrt(CNN_WEIGHT) * cnn, np.sqrt(1 - CNN_WEIGHT) * layout], axis=1)
    return out.astype(np.float32)


def part_similarities(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(backbone cosines, layout cosines) of descriptor rows ``a`` against rows ``b``."""
    cut = a.shape[1] - LAYOUT_SIDE * LAYOUT_SIDE * 3
    cnn = (a[:, :cut] @ b[:, :cut].T) / CNN_WEIGHT
    layout = (a[:, cut:] @ b[:, cut:].T) / (1 - CNN_WEIGHT)
    return cnn, layout


def is_near(cnn: np.ndarray, layout: np.ndarray) -> np.ndarray:
    return (cnn >= DUPLICATE_CNN) & (layout >= DUPLICATE_LAYOUT)


# -- which images ------------------------------------------------------------------------------
def task_image_rows(
    db: Session, workspace_id: str, task_id: str, label_id: str | None = None
) -> list[tuple[str, str, str]]:
    """(id, blob key, thumb key) of the workspace's images under a label of the task (or under
    ``label_id`` alone), in id order."""
    in_task = (
        select(ImageLabel.image_id)
        .join(TaskLabel, TaskLabel.label_id == ImageLabel.label_id)
        .where(TaskLabel.task_id == task_id, ImageLabel.image_id == Image.id)
    )
    if label_id is not None:
        in_task = in_task.where(ImageLabel.label_id == label_id)
    rows = db.execute(
        select(Image.id, Image.blob_key, Image.thumb_key)
        .where(Image.workspace_id == workspace_id, exists(in_task))
        .order_by(Image.id)
    ).all()
    return [(i, b, t) for i, b, t in rows]


# -- cached descriptors ------------------------------------------------------------------------
def ensure_layouts(
    sessions: sessionmaker[Session], blobs: BlobStore, images: list[tuple[str, str]]
) -> dict[str, np.ndarray]:
    """Layouts of (image id, thumb key), computed from the thumbnail once and cached."""
    return layouts_of(sessions, blobs, images)[0]


def layouts_of(
    sessions: sessionmaker[Session],
    blobs: BlobStore,
    images: list[tuple[str, str]],
    limit: int | None = None,
) -> tuple[dict[str, np.ndarray], int]:
    """(Layouts of the images, how many were computed now): at most ``limit`` new ones, the
    others are left out of the answer."""
    ids = [i for i, _ in images]
    with sessions() as db:
        have = cached_embeddings(db, ids, LAYOUT, "orig")
    new: dict[str, np.ndarray] = {}
    for image_id, thumb_key in images:
        if image_id in have:
            continue
        if limit is not None and len(new) >= limit:
            break
        try:
            new[image_id] = layout_of_thumbnail(blobs.get(thumb_key))
        except KeyError:  # deleted meanwhile
            continue
    if new:
        store_vectors(sessions, LAYOUT, new)
    return {**have, **new}, len(new)


def store_vectors(sessions: sessionmaker[Session], backbone: str, new: dict[str, Any]) -> None:
    rows = [
        {"image_id": i, "backbone": backbone, "view": "orig", "vector": v.tobytes()}
        for i, v in new.items()
    ]
    with sessions() as db:
        insert = (
            pg_insert
            if db.bind is not None and db.bind.dialect.name == "postgresql"
            else sqlite_insert
        )
        try:
            db.execute(insert(Embedding).values(rows).on_conflict_do_nothing())
            db.commit()
        except IntegrityError:  # an image deleted meanwhile: its vector is not needed
            db.rollback()


def load_vectors(
    sessions: sessionmaker[Session],
    blobs: BlobStore,
    recognizer: Recognizer,
    rows: list[tuple[str, str, str]],
    key: str,
    priority: Priority = Priority.BACKGROUND,
) -> Vectors:
    """Descriptors of (id, blob key, thumb key) rows; images without cached embeddings are
    embedded first, in the recognizer's fair pool as ``key`` (the owner's id, so one user's
    large task shares the workers with the others): do not call this from inside the pool."""
    if not rows:
        return Vectors([], np.zeros((0, 0), np.float32))
    images = [(i, b) for i, b, _ in rows]
    emb = ensure_embeddings(
        sessions, blobs, recognizer, images, ("orig",), key=key, priority=priority
    )
    thumbs = {i: t for i, _, t in rows}
    layouts = ensure_layouts(sessions, blobs, [(i, thumbs[i]) for i in emb.image_ids])
    ids = [i for i in emb.image_ids if i in layouts]
    keep = [r for r, i in enumerate(emb.image_ids) if i in layouts]
    if not ids:
        return Vectors([], np.zeros((0, 0), np.float32))
    blocks = [emb.vectors[(bb, "orig")][keep] for bb in recognizer.backbones]
    return Vectors(ids, combine(blocks, np.stack([layouts[i] for i in ids])))


def query_vectors(
    recognizer: Recognizer, prepared: Sequence[Prepared], images: Sequence[PILImage.Image]
) -> np.ndarray:
    """Descriptors of decoded query images (runs the backbones: call it in the pool)."""
    emb = recognizer.embed_prepared(prepared)
    layouts = np.stack([layout_of_image(img) for img in images])
    return combine([emb[bb] for bb in recognizer.backbones], layouts)


def unembedded(db: Session, ids: list[str], backbones: Sequence[str]) -> list[str]:
    """The ids (in their order) lacking the cached vector of one of the backbones."""
    counts: dict[str, int] = {}
    for start in range(0, len(ids), SCAN_CHUNK):
        rows = db.execute(
            select(Embedding.image_id, func.count())
            .where(
                Embedding.image_id.in_(ids[start : start + SCAN_CHUNK]),
                Embedding.backbone.in_(list(backbones)),
                Embedding.view == "orig",
            )
            .group_by(Embedding.image_id)
        ).all()
        counts.update({i: int(n) for i, n in rows})
    return [i for i in ids if counts.get(i, 0) < len(backbones)]


def cached_vectors(
    sessions: sessionmaker[Session],
    blobs: BlobStore,
    backbones: Sequence[str],
    rows: list[tuple[str, str, str]],
    new_layouts: int | None = None,
) -> tuple[Vectors, int]:
    """Descriptors of the rows whose backbone vectors are cached (never embeds: safe inside
    the pool), and how many layouts it computed from the thumbnails (at most
    ``new_layouts``)."""
    ids = [i for i, _, _ in rows]
    with sessions() as db:
        blocks = [cached_embeddings(db, ids, bb, "orig") for bb in backbones]
    thumbs = [(i, t) for i, _, t in rows if all(i in b for b in blocks)]
    layouts, made = layouts_of(sessions, blobs, thumbs, new_layouts)
    have = [i for i, _ in thumbs if i in layouts]
    if not have:
        return Vectors([], np.zeros((0, 0), np.float32)), made
    matrices = [np.stack([b[i] for i in have]) for b in blocks]
    return Vectors(have, combine(matrices, np.stack([layouts[i] for i in have]))), made


# -- search ------------------------------------------------------------------------------------
@dataclass
class Scan:
    """The best hits of each query over a whole index read chunk by chunk, and how many
    images of the index were left out (no vectors yet)."""

    hits: list[list[tuple[str, float]]]
    searched: int
    skipped: int


def scan(
    sessions: sessionmaker[Session],
    blobs: BlobStore,
    backbones: Sequence[str],
    rows: list[tuple[str, str, str]],
    queries: np.ndarray,
    k: int,
    exclude: Sequence[str | None],
    new_layouts: int = 0,
) -> Scan:
    """Top ``k`` per query row over ``rows``, ``SCAN_CHUNK`` images at a time: memory stays
    one chunk of vectors whatever the size of the task (time grows with it: the caller
    places it in the fair pool as a costly task of its user)."""
    best_ids: list[list[str]] = [[] for _ in range(len(queries))]
    best_sims = [np.zeros(0, np.float32) for _ in range(len(queries))]
    searched, budget = 0, new_layouts
    for start in range(0, len(rows), SCAN_CHUNK):
        part = rows[start : start + SCAN_CHUNK]
        index, made = cached_vectors(sessions, blobs, backbones, part, budget)
        searched, budget = searched + len(index.ids), budget - made
        if not index.ids:
            continue
        sims = index.matrix @ queries.T  # (chunk, queries)
        for q in range(len(queries)):
            column = sims[:, q].copy()
            skip = exclude[q]
            if skip is not None and skip in index.ids:
                column[index.ids.index(skip)] = -np.inf
            ids = best_ids[q] + index.ids
            both = np.concatenate([best_sims[q], column])
            keep = np.argsort(-both, kind="stable")[:k]
            keep = keep[np.isfinite(both[keep])]
            best_ids[q], best_sims[q] = [ids[j] for j in keep], both[keep]
    hits = [
        [(i, round(min(float(v), 1.0), 6)) for i, v in zip(ids, sims, strict=True)]
        for ids, sims in zip(best_ids, best_sims, strict=True)
    ]
    return Scan(hits, searched, len(rows) - searched)


def top_k(
    index: Vectors, query: np.ndarray, k: int, exclude: str | None = None
) -> list[tuple[str, float]]:
    """The ``k`` most similar images to one descriptor, best first (brute force: one
    matrix-vector product; bench/similar_bench.py measures it at 10k and 100k images)."""
    if not index.ids:
        return []
    sims = index.matrix @ query
    if exclude is not None and exclude in index.ids:
        sims[index.ids.index(exclude)] = -np.inf
    k = min(k, len(sims) - (1 if exclude in index.ids else 0))
    if k <= 0:
        return []
    best = np.argpartition(-sims, k - 1)[:k]
    best = best[np.argsort(-sims[best], kind="stable")]
    return [(index.ids[j], round(float(min(sims[j], 1.0)), 6)) for j in best]


@dataclass
class Neighbourhood:
    """For every row: its ``k`` nearest other rows by backbone cosine (best first) and those
    cosines; and every near-duplicate pair (i < j) with its descriptor similarity."""

    near: np.ndarray  # (N, k) row indices
    sims: np.ndarray  # (N, k)
    pairs: list[tuple[int, int, float]]


def neighbourhood(index: Vectors, k: int, block: int = 1024) -> Neighbourhood:
    """One blocked pass over all pairs (memory block x N, whatever the number of images)."""
    m, n = index.matrix, len(index.ids)
    k = max(0, min(k, n - 1))
    near = np.zeros((n, k), dtype=np.int64)
    sims_out = np.zeros((n, k), dtype=np.float32)
    pairs: list[tuple[int, int, float]] = []
    for start in range(0, n, block):
        cnn, layout = part_similarities(m[start : start + block], m)
        sims = CNN_WEIGHT * cnn + (1 - CNN_WEIGHT) * layout
        rows = np.arange(len(sims))
        cnn[rows, start + rows] = -np.inf  # not its own neighbour
        hit_r, hit_c = np.nonzero(is_near(cnn, layout))
        for r, c in zip(hit_r.tolist(), hit_c.tolist(), strict=True):
            if start + r < c:
                pairs.append((start + r, c, float(min(sims[r, c], 1.0))))
        if k:  # neighbours by content (backbone cosine): what label they should share
            part = np.argpartition(-cnn, k - 1, axis=1)[:, :k]
            vals = np.take_along_axis(cnn, part, axis=1)
            order = np.argsort(-vals, axis=1, kind="stable")
            near[start : start + len(sims)] = np.take_along_axis(part, order, axis=1)
            sims_out[start : start + len(sims)] = np.take_along_axis(vals, order, axis=1)
    return Neighbourhood(near, sims_out, pairs)


# -- at upload ---------------------------------------------------------------------------------
def near_duplicates_of(
    sessions: sessionmaker[Session],
    blobs: BlobStore,
    recognizer: Recognizer,
    workspace_id: str,
    image_id: str,
) -> list[str]:
    """The workspace's images in the new image's tasks that it nearly duplicates, best first.

    Compared only with images already embedded (the background embedding catches up with
    the rest), so an upload into a task whose images have no vectors yet costs nothing. The
    colour layouts go first: a near-duplicate needs a layout cosine >= ``DUPLICATE_LAYOUT``,
    and a layout costs a thumbnail read where the backbone costs a forward in the pool that
    classifications wait on. Only when some image passes does the upload embed the new image
    now (stored: the background job then skips it). The others' layouts are read
    ``SCAN_CHUNK`` at a time; at most ``UPLOAD_LAYOUTS`` missing ones are computed per upload."""
    with sessions() as db:
        image = db.get(Image, image_id)
        if image is None or image.workspace_id != workspace_id:
            return []
        label_ids = select(ImageLabel.label_id).where(ImageLabel.image_id == image_id)
        task_ids = db.scalars(
            select(TaskLabel.task_id).where(TaskLabel.label_id.in_(label_ids)).distinct()
        ).all()
        rows = {r[0]: r for t in task_ids for r in task_image_rows(db, workspace_id, t)}
        rows.pop(image_id, None)
        missing = set(unembedded(db, sorted(rows), recognizer.backbones))
        mine = (image.id, image.blob_key, image.thumb_key)
    others = [rows[i] for i in sorted(rows) if i not in missing]
    candidates = _same_layout(sessions, blobs, mine, others) if others else []
    if not candidates:
        return []
    # The upload waits for this: the workspace's interactive share of the pool.
    new = load_vectors(sessions, blobs, recognizer, [mine], workspace_id, Priority.INTERACTIVE)
    if not new.ids:
        return []
    found: list[tuple[str, float]] = []
    for start in range(0, len(candidates), SCAN_CHUNK):  # memory and IN lists stay bounded
        part = candidates[start : start + SCAN_CHUNK]
        index, _ = cached_vectors(sessions, blobs, recognizer.backbones, part, 0)
        if not index.ids:
            continue
        cnn, layout = part_similarities(index.matrix, new.matrix[:1])
        sims = CNN_WEIGHT * cnn[:, 0] + (1 - CNN_WEIGHT) * layout[:, 0]
        near = np.flatnonzero(is_near(cnn[:, 0], layout[:, 0]))
        found += [(index.ids[j], float(sims[j])) for j in near]
    found.sort(key=lambda hit: -hit[1])
    return [i for i, _ in found]


def _same_layout(
    sessions: sessionmaker[Session],
    blobs: BlobStore,
    mine: tuple[str, str, str],
    others: list[tuple[str, str, str]],
) -> list[tuple[str, str, str]]:
    """The rows of ``others`` whose colour layout is as close to ``mine``'s as a
    near-duplicate's must be (layouts computed now are cached, within the upload's budget)."""
    own, _ = layouts_of(sessions, blobs, [(mine[0], mine[2])])
    if mine[0] not in own:  # deleted meanwhile
        return []
    found, budget = [], UPLOAD_LAYOUTS
    for start in range(0, len(others), SCAN_CHUNK):
        part = others[start : start + SCAN_CHUNK]
        layouts, made = layouts_of(sessions, blobs, [(i, t) for i, _, t in part], budget)
        budget -= made
        have = [row for row in part if row[0] in layouts]
        if have:
            cosines = np.stack([layouts[row[0]] for row in have]) @ own[mine[0]]
            found += [row for row, c in zip(have, cosines, strict=True) if c >= DUPLICATE_LAYOUT]
    return found
