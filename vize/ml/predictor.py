"""Trained heads: feature normalisation, probabilities, and (de)serialisation to bytes."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

HeadKind = Literal["multi_class", "multi_label"]
HEAD_KINDS: tuple[HeadKind, ...] = ("multi_class", "multi_label")
# 2 added ``view``; a version 1 head (trained before) reads as the whole-image view it used.
HEAD_FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
NORMALISATION = "l2_per_backbone"
# How an image becomes the backbone's input (vize.ml.preprocess): the whole image resized.
WHOLE_VIEW = "whole"


class HeadFormatError(ValueError):
    """Bytes that are not a serialised head of a supported version."""


@dataclass(frozen=True, eq=False)
class Head:
    """A linear head over the concatenated embeddings of ``backbones``.

    Features are each backbone's embedding divided by its L2 norm (so every backbone weighs
    the same regardless of its activation scale), concatenated in ``backbones`` order.
    ``backbones`` are feature names (backbone and precision, ``vize.ml.backbones``) and
    ``view`` the preprocessing the head was trained on: what serving must reproduce.
    """

    kind: HeadKind
    label_ids: tuple[str, ...]
    weights: np.ndarray  # (feature_dim, n_labels) float32
    bias: np.ndarray  # (n_labels,) float32
    backbones: tuple[str, ...]
    block_dims: tuple[int, ...]  # embedding dim of each backbone, same order
    threshold: float = 0.5  # multi_label decision threshold
    normalisation: str = NORMALISATION
    view: str = WHOLE_VIEW

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        np.savez_compressed(
            buf,
            format_version=np.array(HEAD_FORMAT_VERSION),
            kind=np.array(self.kind),
            label_ids=np.array(self.label_ids, dtype=np.str_),
            weights=self.weights.astype(np.float32),
            bias=self.bias.astype(np.float32),
            backbones=np.array(self.backbones, dtype=np.str_),
            block_dims=np.array(self.block_dims, dtype=np.int64),
            threshold=np.array(self.threshold),
            normalisation=np.array(self.normalisation),
            view=np.array(self.view),
        )
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> Head:
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                version = int(z["format_version"])
                if version not in READABLE_VERSIONS:
                    raise HeadFormatError(f"unsupported head format version {version}")
                kind = str(z["kind"])
                if kind not in HEAD_KINDS:
                    raise HeadFormatError(f"unknown head kind {kind!r}")
                return cls(
                    kind=kind,  # checked against HEAD_KINDS above
                    label_ids=tuple(str(s) for s in z["label_ids"]),
                    weights=z["weights"].astype(np.float32),
                    bias=z["bias"].astype(np.float32),
                    backbones=tuple(str(s) for s in z["backbones"]),
                    block_dims=tuple(int(d) for d in z["block_dims"]),
                    threshold=float(z["threshold"]),
                    normalisation=str(z["normalisation"]),
                    view=str(z["view"]) if version >= 2 else WHOLE_VIEW,
                )
        except (OSError, KeyError, ValueError) as exc:
            if isinstance(exc, HeadFormatError):
                raise
            raise HeadFormatError(f"not a serialised head: {exc}") from exc


def normalise_features(x: np.ndarray, block_dims: Sequence[int]) -> np.ndarray:
    """L2-normalise each backbone's block of columns, returning float64 features."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != sum(block_dims):
        raise ValueError(f"expected features of width {sum(block_dims)}, got shape {x.shape}")
    out = np.empty_like(x)
    start = 0
    for dim in block_dims:
        block = x[:, start : start + dim]
        norms = np.linalg.norm(block, axis=1, keepdims=True)
        out[:, start : start + dim] = block / np.maximum(norms, 1e-12)
        start += dim
    return out


def concat_embeddings(embeddings: Mapping[str, np.ndarray], backbones: Sequence[str]) -> np.ndarray:
    """Concatenate per-backbone raw embeddings in the order a head expects."""
    missing = [b for b in backbones if b not in embeddings]
    if missing:
        raise KeyError(f"embeddings missing for backbones: {', '.join(missing)}")
    return np.concatenate([np.asarray(embeddings[b], np.float32) for b in backbones], axis=1)


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return np.asarray(e / e.sum(axis=1, keepdims=True))


def sigmoid(z: np.ndarray) -> np.ndarray:
    # Split by sign so that exp never overflows.
    out = np.empty_like(z)
    pos = z >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-z[pos]))
    ez = np.exp(z[~pos])
    out[~pos] = ez / (1.0 + ez)
    return out


def decision_scores(head: Head, features: np.ndarray) -> np.ndarray:
    """Logits of the head for already *normalised* features."""
    return np.asarray(features @ head.weights.astype(np.float64) + head.bias)


def predict_proba(head: Head, embeddings: np.ndarray | Mapping[str, np.ndarray]) -> np.ndarray:
    """Probabilities (N, n_labels) from raw embeddings.

    ``embeddings`` is either a mapping backbone name -> (N, dim) raw embeddings, or one array of
    the raw embeddings already concatenated in ``head.backbones`` order. multi_class rows sum
    to 1; multi_label columns are independent sigmoids.
    """
    x = embeddings if isinstance(embeddings, np.ndarray) else None
    if x is None:
        x = concat_embeddings(embeddings, head.backbones)  # type: ignore[arg-type]
    z = decision_scores(head, normalise_features(x, head.block_dims))
    probs = softmax(z) if head.kind == "multi_class" else sigmoid(z)
    return probs.astype(np.float32)
