"""Backbones and heads: turning images into embeddings and a trained head's probabilities.

The server builds one ``Recognizer`` in its lifespan (an embedded job runner trains with it
too); a ``vize worker`` builds its own. ONNX sessions load lazily, one per backbone any
request or training asks for: ``VIZE_BACKBONE`` only chooses the backbones new trainings
use, a model keeps being served with the backbones it was trained with. Heads are cached by
model id (immutable once trained). Blocking work (decoding) runs in the bounded pool ``pool``
(``VIZE_INFERENCE_THREADS`` or ``VIZE_TRAIN_THREADS`` tasks); every forward goes through one
``ForwardBatcher`` thread whose sessions use that many intra-op threads, so one request uses
every core and concurrent ones are merged into batches instead of oversubscribing the CPU.

``VIZE_PRECISION`` picks the precision of new trainings' backbones (feature names such as
``efficientnet_lite0:int8``, see ``vize.ml.backbones``); a model is served with the feature
names its head stores, so models trained in fp32 stay fp32."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image
from sqlalchemy import select
from sqlalchemy.orm import Session

from vize.config import Settings
from vize.db.tables import Embedding
from vize.errors import ConfigError
from vize.ml.backbones import feature_name, get_backbone_config, known_backbones
from vize.ml.batcher import ForwardBatcher, Lane
from vize.ml.embedder import Embedder
from vize.ml.predictor import Head, predict_proba
from vize.ml.preprocess import decode_image, hflip, preprocess
from vize.services.backlog import EmbedBacklog
from vize.services.budget import MemoryBudget
from vize.services.fairpool import FairPool
from vize.services.modelcache import ModelCache
from vize.storage import BlobStore

HEAD_CACHE_SIZE = 2000
VIEWS = ("orig", "flip")
# Images in one forward at most: concurrent requests' images are merged up to this.
MAX_FORWARD_IMAGES = 16


@dataclass(frozen=True)
class Prepared:
    """One decoded image, ready for each backbone it was prepared for."""

    arrays: dict[str, np.ndarray]  # backbone -> CHW float32


class Recognizer:
    def __init__(self, settings: Settings, *, pool_size: int | None = None) -> None:
        self.settings = settings
        # The feature names new trainings use (backbone + precision).
        self.backbones = [
            feature_name(name, settings.precision)
            for name in check_backbones(settings.backbone_list)
        ]
        cores = max(1, pool_size or settings.inference_threads)
        # One forward at a time, on every core (see ForwardBatcher): a lone request is as fast
        # as the machine allows, concurrent ones are batched rather than oversubscribed.
        self.embedder = Embedder(
            settings.onnx_cache_dir, intra_op_threads=cores, max_batch=MAX_FORWARD_IMAGES
        )
        self.batcher = ForwardBatcher(self.embedder, max_images=MAX_FORWARD_IMAGES)
        # Decoding runs in this pool, shared fairly between users (one cannot hold every
        # worker), serving before background embedding; it reserves memory from one budget.
        self.pool = FairPool(cores, name="vize-infer")
        # Images uploaded here that background embedding has not reached yet (the server
        # admits uploads against it; see vize.services.backlog).
        self.backlog = EmbedBacklog(settings.embed_backlog, settings.embed_backlog_seconds)
        self.budget = MemoryBudget(settings.max_decode_bytes)
        self._heads: ModelCache[Head] = ModelCache(HEAD_CACHE_SIZE)
        # (cached, computed) images of each ensure_embeddings run; the server sets its metrics
        # here, a worker process (no /metrics) leaves it unset.
        self.on_embeddings: Callable[[int, int], None] | None = None

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.batcher.close()

    def warm_up(self) -> None:
        """Convert/load every backbone now rather than on the first request."""
        for name in self.backbones:
            self.embedder.session(name)

    # -- preprocessing -------------------------------------------------------------------
    def prepare(self, data: bytes, backbones: Sequence[str] | None = None) -> Prepared:
        """Decode once (at the largest input size), then resize per backbone (default: the
        ones trainings use); keyed by the feature names asked for."""
        names = list(backbones or self.backbones)
        configs = {name: get_backbone_config(name) for name in names}
        largest = max(c.input_size for c in configs.values())
        img: Image.Image = decode_image(
            data,
            largest,
            self.settings.max_image_pixels,
            max_bytes=self.settings.max_decode_bytes,
            budget=self.budget,
        )
        return Prepared({name: preprocess(img, c) for name, c in configs.items()})

    # -- embeddings ----------------------------------------------------------------------
    def embed_prepared(
        self,
        items: Sequence[Prepared],
        flip: bool = False,
        backbones: Sequence[str] = (),
        lane: Lane = Lane.INTERACTIVE,
    ) -> dict[str, np.ndarray]:
        """Raw embeddings per feature name, through the batcher (``lane``: background work
        such as embedding after uploads yields to classification)."""
        out = {}
        for name in backbones or self.backbones:
            batch = np.stack([p.arrays[name] for p in items])
            out[name] = self.batcher.embed(name, hflip(batch) if flip else batch, lane)
        return out

    def head(self, model_id: str, artifact_key: str, blobs: BlobStore) -> Head:
        return self._heads.get(model_id, lambda: Head.from_bytes(blobs.get(artifact_key)))

    def predict(self, head: Head, items: Sequence[Prepared]) -> tuple[np.ndarray, np.ndarray]:
        """(probabilities (N, labels), L2-normalised descriptors (N, dim))."""
        emb = self.embed_prepared(items, backbones=head.backbones)
        probs = predict_proba(head, {name: emb[name] for name in head.backbones})
        desc = np.concatenate([emb[name] for name in head.backbones], axis=1)
        desc = desc / np.maximum(np.linalg.norm(desc, axis=1, keepdims=True), 1e-12)
        return probs, desc


def check_backbones(names: list[str]) -> list[str]:
    """``VIZE_BACKBONE`` as a list, refused at start-up when empty or naming an unknown one."""
    known = known_backbones()
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        raise ConfigError(
            f"VIZE_BACKBONE={','.join(names)!r} is not valid: "
            + (f"unknown backbone(s) {', '.join(unknown)}; " if unknown else "it is empty; ")
            + f"set it to one or more (comma-separated) of: {', '.join(known)}."
        )
    return names


def cached_embeddings(
    db: Session, image_ids: Sequence[str], backbone: str, view: str
) -> dict[str, np.ndarray]:
    rows = db.execute(
        select(Embedding.image_id, Embedding.vector).where(
            Embedding.image_id.in_(list(image_ids)),
            Embedding.backbone == backbone,
            Embedding.view == view,
        )
    ).all()
    return {image_id: np.frombuffer(vec, dtype=np.float32) for image_id, vec in rows}
