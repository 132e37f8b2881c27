"""When to answer "unknown": per-label thresholds calibrated at each training (numpy only).

multi_class: the head always picks one of its labels, so an image of something it never saw
gets one too. Each answer gets a *known score*; below its label's threshold the answer is
"unknown". The score is the sum of two standardised parts (``METHOD``):

* the energy of the logits, ``logsumexp(z)``: high when the image is close to *some*
  training class in the head's view (it keeps the magnitude the softmax throws away);
* the mean cosine similarity of the image to its ``K_NEIGHBOURS`` nearest training images
  of the predicted label (per-backbone L2-normalised embeddings, like the head's input).

Measured against the top softmax probability on cifar10-dev (5 seen / 5 unseen labels, k=20,
8 random splits; bench/openset_bench.py measures the same through the API): AUROC seen vs.
unseen 0.794 (softmax), 0.823 (energy), 0.819 (3-NN), 0.845 (the sum).

Thresholds come from the cross-validated predictions (each training image scored by a head
that did not see it): a label's threshold keeps ``KEEP`` of the correct answers of that label.
No unknown images are needed: the thresholds only say how far from its training data an
answer may be. multi_label: each tag's probability threshold maximises that tag's F1 on the
cross-validated probabilities.

The calibration travels inside the model artifact (extra ``openset_*`` arrays of the head's
npz, which ``Head.from_bytes`` ignores), so a model and its thresholds cannot drift apart.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np

from vize.ml.predictor import Head, decision_scores, normalise_features

METHOD = "energy+knn3"
PROB_METHOD = "probability"  # multi_label: a threshold per tag on its probability
KEEP = 0.85
K_NEIGHBOURS = 3
# Reference embeddings kept per label (a deterministic sample beyond): bounds the artifact
# (float16: 200 x 1280 x 2 B = 0.5 MB per label) and the per-request similarity cost.
MAX_REFERENCES_PER_LABEL = 200
PREFIX = "openset_"
SIMILARITY_BLOCK = 1024


@dataclass(frozen=True, eq=False)
class Calibration:
    """What deciding "unknown" needs besides the head."""

    method: str
    thresholds: np.ndarray  # (labels,) on the known score (multi_class) or probability
    # multi_class only (empty otherwise): standardisation of the two score parts and the
    # reference embeddings (normalised features) with their label index.
    energy_stats: np.ndarray  # (mean, std)
    knn_stats: np.ndarray  # (mean, std)
    references: np.ndarray  # (M, feature_dim) float16
    reference_labels: np.ndarray  # (M,) int
    kept: np.ndarray  # (labels,) share of correct cross-validated answers kept

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            PREFIX + "method": np.array(self.method),
            PREFIX + "thresholds": self.thresholds.astype(np.float64),
            PREFIX + "energy_stats": self.energy_stats.astype(np.float64),
            PREFIX + "knn_stats": self.knn_stats.astype(np.float64),
            PREFIX + "references": self.references.astype(np.float16),
            PREFIX + "reference_labels": self.reference_labels.astype(np.int32),
            PREFIX + "kept": self.kept.astype(np.float64),
        }


def bundle(head: Head, calibration: Calibration | None) -> bytes:
    """The model artifact: the head's npz plus the calibration's arrays."""
    data = head.to_bytes()
    if calibration is None:
        return data
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        arrays: dict[str, Any] = {key: z[key] for key in z.files}
    arrays.update(calibration.arrays())
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def from_artifact(data: bytes) -> Calibration | None:
    """The calibration inside a model artifact; None for models trained before it existed."""
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        if PREFIX + "method" not in z.files:
            return None
        get = {key[len(PREFIX) :]: z[key] for key in z.files if key.startswith(PREFIX)}
    return Calibration(
        method=str(get["method"]),
        thresholds=get["thresholds"].astype(np.float64),
        energy_stats=get["energy_stats"].astype(np.float64),
        knn_stats=get["knn_stats"].astype(np.float64),
        references=get["references"].astype(np.float32),
        reference_labels=get["reference_labels"].astype(np.int64),
        kept=get["kept"].astype(np.float64),
    )


# -- scores ----------------------------------------------------------------------------------
def energy(logits: np.ndarray) -> np.ndarray:
    top = logits.max(axis=1)
    return np.asarray(top + np.log(np.exp(logits - top[:, None]).sum(axis=1)))


def knn_similarity(
    feats: np.ndarray,
    references: np.ndarray,
    ref_labels: np.ndarray,
    n_labels: int,
    exclude_self: bool = False,
) -> np.ndarray:
    """(N, labels): mean cosine similarity to the ``K_NEIGHBOURS`` nearest references of
    each label. ``feats`` are per-backbone normalised, so their dot products are the mean
    of the backbones' cosines (scaled by the number of backbones, the same for all)."""
    # Serving holds the references as float32 (converted once, at load): no per-request copy.
    dtype = np.float32 if references.dtype == np.float32 else np.float64
    refs = references.astype(dtype, copy=False)
    feats = feats.astype(dtype, copy=False)
    out = np.full((len(feats), n_labels), -np.inf)
    # Row blocks: calibrating compares every training image with every other one, which
    # whole would be an N x N matrix (800 MB at 10,000 images).
    for start in range(0, len(feats), SIMILARITY_BLOCK):
        sims = feats[start : start + SIMILARITY_BLOCK] @ refs.T
        if exclude_self:  # cross-validation: a training image is not its own neighbour
            rows = np.arange(len(sims))
            sims[rows, start + rows] = -np.inf
        for j in range(n_labels):
            cols = sims[:, ref_labels == j]
            k = min(K_NEIGHBOURS, cols.shape[1] - (1 if exclude_self else 0))
            if k >= 1:
                top = -np.partition(-cols, k - 1, axis=1)[:, :k]
                out[start : start + len(sims), j] = top.mean(axis=1)
    return out


def known_scores(cal: Calibration, logits: np.ndarray, feats: np.ndarray) -> np.ndarray:
    """(N, labels): the known score of answering each label (multi_class)."""
    knn = knn_similarity(feats, cal.references, cal.reference_labels, logits.shape[1])
    return _combine(energy(logits), knn, cal.energy_stats, cal.knn_stats)


def _combine(
    e: np.ndarray, knn: np.ndarray, e_stats: np.ndarray, k_stats: np.ndarray
) -> np.ndarray:
    return np.asarray((e[:, None] - e_stats[0]) / e_stats[1] + (knn - k_stats[0]) / k_stats[1])


# -- calibration -----------------------------------------------------------------------------
def calibrate(
    head: Head, X: np.ndarray, targets: np.ndarray, cv_logits: np.ndarray | None
) -> Calibration | None:
    """From the training embeddings ``X`` (raw, concatenated), their 0/1 ``targets`` and
    the out-of-fold logits; None without cross-validation (too few images)."""
    if cv_logits is None:
        return None
    if head.kind == "multi_label":
        return _calibrate_tags(targets, 1.0 / (1.0 + np.exp(-cv_logits)))
    feats = normalise_features(X, head.block_dims)
    truth = targets.argmax(axis=1)
    pred = cv_logits.argmax(axis=1)
    n_labels = targets.shape[1]
    knn = knn_similarity(feats, feats, truth, n_labels, exclude_self=True)
    rows = np.arange(len(feats))
    e, k = energy(cv_logits), knn[rows, pred]
    ok = (pred == truth) & np.isfinite(k)
    if ok.sum() < 2:
        return None
    e_stats, k_stats = _stats(e[ok]), _stats(k[ok])
    score = _combine(e, knn, e_stats, k_stats)[rows, pred]
    thresholds, kept = np.full(n_labels, -np.inf), np.ones(n_labels)
    for j in range(n_labels):
        mine = score[ok & (pred == j)]
        if len(mine):
            thresholds[j] = float(np.quantile(mine, 1.0 - KEEP))
            kept[j] = float(np.mean(mine >= thresholds[j]))
    refs = _sample_references(feats, truth, n_labels)
    return Calibration(
        METHOD, thresholds, e_stats, k_stats, feats[refs].astype(np.float16), truth[refs], kept
    )


def target_matrix(head: Head, y: Any) -> np.ndarray:
    """0/1 (N, labels) from a training set's ``y``: label ids (multi_class) or the matrix."""
    if head.kind == "multi_label":
        return np.asarray(y, dtype=np.float64)
    index = {lid: j for j, lid in enumerate(head.label_ids)}
    out = np.zeros((len(y), len(head.label_ids)))
    out[np.arange(len(y)), [index[str(v)] for v in y]] = 1.0
    return out


def _stats(values: np.ndarray) -> np.ndarray:
    return np.array([float(values.mean()), max(float(values.std()), 1e-6)])


def _sample_references(feats: np.ndarray, truth: np.ndarray, n_labels: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    keep = []
    for j in range(n_labels):
        members = np.flatnonzero(truth == j)
        if len(members) > MAX_REFERENCES_PER_LABEL:
            members = np.sort(rng.choice(members, MAX_REFERENCES_PER_LABEL, replace=False))
        keep.append(members)
    return np.concatenate(keep) if keep else np.zeros(0, np.int64)


def _calibrate_tags(targets: np.ndarray, probs: np.ndarray) -> Calibration:
    """Per tag the probability threshold of the best cross-validated F1 (0.5 for a tag
    without positives), clipped to [0.05, 0.95] so one fold's luck cannot silence a tag."""
    n_labels = targets.shape[1]
    thresholds, kept = np.full(n_labels, 0.5), np.ones(n_labels)
    candidates = np.linspace(0.05, 0.95, 91)
    for j in range(n_labels):
        truth = targets[:, j] > 0.5
        if not truth.any():
            continue
        tp = np.array([(truth & (probs[:, j] >= t)).sum() for t in candidates])
        predicted = np.array([(probs[:, j] >= t).sum() for t in candidates])
        f1 = 2 * tp / np.maximum(predicted + truth.sum(), 1)
        thresholds[j] = float(candidates[int(np.argmax(f1))])
        kept[j] = float(np.mean(probs[truth, j] >= thresholds[j]))
    empty = np.zeros(0)
    return Calibration(
        PROB_METHOD, thresholds, empty, empty, np.zeros((0, 0), np.float16), empty, kept
    )


# -- deciding ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Decision:
    """Per record: which labels are answered (multi_class: at most the top one)."""

    passed: np.ndarray  # (N, labels) bool
    scores: np.ndarray  # (N,) the score compared (for multi_class), for the review queue


def decide(
    head: Head,
    probs: np.ndarray,
    desc: np.ndarray,
    threshold: float | None,
    calibration: Calibration | None,
) -> Decision:
    """Which labels pass: ``threshold`` is a global probability threshold, None asks for
    the calibrated thresholds (a model without them falls back to 0.5 on the probability)."""
    n = len(probs)
    if threshold is None and calibration is None:
        threshold = 0.5
    if head.kind == "multi_label":
        limits = np.full(probs.shape[1], threshold) if threshold is not None else None
        limits = calibration.thresholds if limits is None and calibration else limits
        return Decision(probs >= limits, probs.max(axis=1) if n else np.zeros(0))
    pred = probs.argmax(axis=1)
    rows = np.arange(n)
    if threshold is not None:
        score = probs[rows, pred]
        ok = score >= threshold
    else:
        assert calibration is not None
        feats = normalise_features(desc, head.block_dims)  # per-backbone norm: scale-free
        logits = decision_scores(head, feats)
        score = known_scores(calibration, logits, feats)[rows, pred]
        ok = score >= calibration.thresholds[pred]
    passed = np.zeros(probs.shape, bool)
    passed[rows[ok], pred[ok]] = True
    return Decision(passed, score)


def summary(calibration: Calibration | None, names: list[str], ids: list[str]) -> dict[str, Any]:
    """The thresholds as the model's metrics show them (JSON-ready)."""
    if calibration is None:
        return {"method": None, "labels": []}
    return {
        "method": calibration.method,
        "keep": KEEP,
        "labels": [
            {
                "label_id": lid,
                "name": name,
                "threshold": round(float(t), 6) if np.isfinite(t) else None,
                "kept": round(float(k), 4),
            }
            for lid, name, t, k in zip(
                ids, names, calibration.thresholds, calibration.kept, strict=True
            )
        ],
    }
