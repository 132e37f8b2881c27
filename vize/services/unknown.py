"""The "unknown" answer of a classification: which threshold applies, and the records rewritten
by it. Called once per classification, after the records are built (``Classifier.infer``).

The setting is the task's ``unknown`` (``off`` | ``auto`` | a probability), overridden by a
request's ``threshold`` field. ``off`` leaves the answer as the model gives it."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from vize.errors import InvalidInput
from vize.ml import openset
from vize.ml.predictor import Head
from vize.services.modelcache import ModelCache
from vize.storage import BlobStore

OFF, AUTO = "off", "auto"
UNKNOWN_NAME = "unknown"
# A calibration holds up to 200 float32 reference embeddings per label (~1 MB per label).
CACHE_SIZE = 64
INVALID = "'{field}' must be 'off', 'auto' or a probability between 0 and 1."


def parse_setting(value: Any, field: str = "threshold") -> str | None:
    """A request's ``threshold`` (or the task's ``unknown``) in its stored form: "off",
    "auto" or a probability as text; None when not given."""
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.strip().lower() in (OFF, AUTO):
        return value.strip().lower()
    if isinstance(value, bool):
        raise InvalidInput(INVALID.format(field=field), code="invalid_threshold")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidInput(INVALID.format(field=field), code="invalid_threshold") from None
    if not math.isfinite(number) or not 0.0 <= number <= 1.0:
        raise InvalidInput(INVALID.format(field=field), code="invalid_threshold")
    return repr(number)


def calibrations() -> ModelCache[openset.Calibration | None]:
    """The app's cache of model calibrations (held by its classifier); a model trained before
    calibrations existed caches None."""
    return ModelCache(CACHE_SIZE)


def calibration(
    cache: ModelCache[openset.Calibration | None],
    model_id: str,
    artifact_key: str,
    blobs: BlobStore,
) -> openset.Calibration | None:
    return cache.get(model_id, lambda: openset.from_artifact(blobs.get(artifact_key)))


def apply(
    setting: str,
    head: Head,
    cal: openset.Calibration | None,
    probs: np.ndarray,
    desc: np.ndarray,
    records: list[dict[str, Any]],
) -> np.ndarray | None:
    """Rewrite the answered records (those with ``best_label``, one per row of ``probs``)
    for ``setting``; returns each row's decision score (None for "off")."""
    if setting == OFF or not len(probs):
        return None
    threshold = None if setting == AUTO else float(setting)
    decision = openset.decide(head, probs, desc, threshold, cal if setting == AUTO else None)
    answered = [r for r in records if "best_label" in r]
    for record, passed in zip(answered, decision.passed, strict=True):
        present = {head.label_ids[j] for j in np.flatnonzero(passed)}
        if head.kind == "multi_label":
            record["tags"] = [lbl for lbl in record["labels"] if lbl["id"] in present]
        if not present:
            prob = record["best_label"]["prob"]
            record["best_label"] = {"id": None, "name": UNKNOWN_NAME, "prob": prob}
        elif record["best_label"]["id"] not in present:  # a tag's own threshold: the best
            record["best_label"] = next(lb for lb in record["labels"] if lb["id"] in present)
    return decision.scores
