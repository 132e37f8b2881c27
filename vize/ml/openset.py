"""When to answer "unknown": per-label thresholds calibrated at each training (numpy only).

multi_class: the head always picks one of its labels, so an image of something it never saw
gets one too. Each answer gets a *known score*; below its label's threshold the answer is
"unknown". The score (``METHOD``) is the sum of two parts, each standardised on the correct
cross-validated answers:

* the energy of the logits, ``logsumexp(z)``: high when the image is close to *some*
  training class in the head's view (it keeps the magnitude the softmax throws away);
* the relative Mahalanobis distance: the squared distance of the image to its predicted
  label's mean, under the covariance the labels share, minus its distance to the training
  images as a whole (the second part cancels what is merely unusual about the image). It is
  measured on signed-square-rooted, per-backbone L2-normalised embeddings (Tukey's power
  transform: pooled activations are skewed, the root makes them closer to Gaussian). With
  far fewer images than dimensions, the covariance is its principal directions plus a floor
  (``FLOOR`` x the mean variance) in every direction.

bench/openset_scores.py compares scores offline on cifar10-dev (5 seen / 5 unseen labels,
k=20, 60 splits): AUROC correct-seen vs. unseen 0.814 for the top softmax probability, 0.842
for the earlier energy + 3-NN score, 0.867 for this one (BENCHMARKS.md, "Which unknown
score?"); bench/openset_bench.py measures the shipped score through the API.

Thresholds come from the cross-validated answers, fold-honestly: each training image is scored
by the head *and* the means/covariances of the folds that did not see it. A label's threshold
keeps ``KEEP`` of the correct answers of that label. No unknown images are needed: the
thresholds only say how far from its training data an answer may be. multi_label: each tag's
probability threshold maximises that tag's F1 on the cross-validated probabilities.

Models calibrated before this score (``KNN_METHOD``: energy + mean cosine to the 3 nearest
training images of the label) keep their stored references and are decided as they were.

The calibration travels inside the model artifact (extra ``openset_*`` arrays of the head's
npz, which ``Head.from_bytes`` ignores), so a model and its thresholds cannot drift apart.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vize.ml.predictor import Head, decision_scores, normalise_features

METHOD = "energy+relmaha"
KNN_METHOD = "energy+knn3"  # models trained before METHOD: still decided with it
PROB_METHOD = "probability"  # multi_label: a threshold per tag on its probability
KEEP = 0.915
FLOOR = 0.5
# Principal directions kept per covariance: bounds the artifact (256 x 1280 x 4 B = 1.3 MB
# per covariance) and the per-request cost; the directions beyond have the smallest variances
# and get the floor, like every direction the training images do not span.
MAX_AXES = 256
MAX_FIT_ROWS = 1000
K_NEIGHBOURS = 3
PREFIX = "openset_"
SIMILARITY_BLOCK = 1024
_EMPTY = np.zeros(0)


@dataclass(frozen=True, eq=False)
class Gaussian:
    """Gaussians with one shared, shrunk covariance: ``centres`` (C, d); the covariance is
    ``axes.T @ diag(variances) @ axes + floor * I`` (``axes``: orthonormal rows)."""

    centres: np.ndarray
    axes: np.ndarray
    variances: np.ndarray
    floor: float

    @classmethod
    def fit(cls, feats: np.ndarray, groups: np.ndarray, n_groups: int) -> Gaussian:
        """One centre per group (NaN for a group without members: distance NaN)."""
        centres = np.full((n_groups, feats.shape[1]), np.nan)
        for j in range(n_groups):
            if (groups == j).any():
                centres[j] = feats[groups == j].mean(axis=0)
        variances, axes = _principal(feats - centres[groups])
        floor = max(FLOOR * float(variances.mean()), 1e-9)
        r = min(MAX_AXES, len(variances))
        return cls(centres, axes[:r], variances[:r], floor)

    def distances(self, feats: np.ndarray) -> np.ndarray:
        """(N, C) squared Mahalanobis distances: along the axes ``1/(variance + floor)``,
        ``1/floor`` elsewhere, i.e. ``|d|^2/floor + sum_r p_r^2 (1/(v_r+floor) - 1/floor)``."""
        sq = (
            (feats**2).sum(axis=1)[:, None]
            - 2.0 * feats @ self.centres.T
            + (self.centres**2).sum(axis=1)[None, :]
        )
        proj, centre_proj = feats @ self.axes.T, self.centres @ self.axes.T
        weights = 1.0 / (self.variances + self.floor) - 1.0 / self.floor
        along = np.stack([((proj - c) ** 2) @ weights for c in centre_proj], axis=1)
        return np.asarray(np.maximum(sq, 0.0) / self.floor + along.reshape(sq.shape))

    def arrays(self, tag: str) -> dict[str, np.ndarray]:
        return {
            f"{PREFIX}{tag}_centres": self.centres.astype(np.float32),
            f"{PREFIX}{tag}_axes": self.axes.astype(np.float32),
            f"{PREFIX}{tag}_variances": self.variances.astype(np.float64),
            f"{PREFIX}{tag}_floor": np.array(self.floor, np.float64),
        }

    @classmethod
    def from_arrays(cls, get: dict[str, np.ndarray], tag: str) -> Gaussian | None:
        if f"{tag}_centres" not in get:
            return None
        return cls(
            get[f"{tag}_centres"].astype(np.float64),
            get[f"{tag}_axes"].astype(np.float64),
            get[f"{tag}_variances"].astype(np.float64),
            float(get[f"{tag}_floor"]),
        )


def _principal(residuals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Variances (descending, ``min(n, d)`` of them) and principal directions (rows) of the
    residuals: the eigen-decomposition of the smaller Gram matrix, faster than an SVD of a
    tall or wide matrix (a training calibrates 12 of them). Beyond ``MAX_FIT_ROWS`` images a
    deterministic sample estimates the covariance."""
    n = len(residuals)
    if n > MAX_FIT_ROWS:
        rows = np.random.default_rng(0).choice(n, MAX_FIT_ROWS, replace=False)
        residuals, n = residuals[np.sort(rows)], MAX_FIT_ROWS
    if n <= residuals.shape[1]:
        values, vectors = np.linalg.eigh(residuals @ residuals.T)
        values, vectors = values[::-1], vectors[:, ::-1]
        scale = np.sqrt(np.maximum(values, 0.0))
        live = scale > 1e-9 * max(float(scale[0]), 1e-300)
        axes = np.zeros((n, residuals.shape[1]))
        axes[live] = (vectors[:, live].T @ residuals) / scale[live, None]
    else:
        values, vectors = np.linalg.eigh(residuals.T @ residuals)
        values, axes = values[::-1], vectors[:, ::-1].T
    return np.maximum(values, 0.0) / n, axes


@dataclass(frozen=True, eq=False)
class Calibration:
    """What deciding "unknown" needs besides the head."""

    method: str
    thresholds: np.ndarray  # (labels,) on the known score (multi_class) or probability
    kept: np.ndarray  # (labels,) share of correct cross-validated answers kept
    # multi_class: standardisation (mean, std) of the energy and of the second part.
    energy_stats: np.ndarray = field(default_factory=lambda: _EMPTY)
    part_stats: np.ndarray = field(default_factory=lambda: _EMPTY)
    # METHOD: the labels' Gaussians and the training images' one (in the Tukey features).
    classes: Gaussian | None = None
    background: Gaussian | None = None
    # KNN_METHOD: reference embeddings (normalised features) with their label index.
    references: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    reference_labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def arrays(self) -> dict[str, np.ndarray]:
        out = {
            PREFIX + "method": np.array(self.method),
            PREFIX + "thresholds": self.thresholds.astype(np.float64),
            PREFIX + "kept": self.kept.astype(np.float64),
            PREFIX + "energy_stats": self.energy_stats.astype(np.float64),
        }
        if self.method == KNN_METHOD:
            out[PREFIX + "knn_stats"] = self.part_stats.astype(np.float64)
            out[PREFIX + "references"] = self.references.astype(np.float16)
            out[PREFIX + "reference_labels"] = self.reference_labels.astype(np.int32)
        else:
            out[PREFIX + "relmaha_stats"] = self.part_stats.astype(np.float64)
        for tag, gaussian in (("classes", self.classes), ("background", self.background)):
            if gaussian is not None:
                out.update(gaussian.arrays(tag))
        return out


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
    method = str(get["method"])
    part = get.get("knn_stats") if method == KNN_METHOD else get.get("relmaha_stats")
    return Calibration(
        method=method,
        thresholds=get["thresholds"].astype(np.float64),
        kept=get["kept"].astype(np.float64),
        energy_stats=get["energy_stats"].astype(np.float64),
        part_stats=_EMPTY if part is None else part.astype(np.float64),
        classes=Gaussian.from_arrays(get, "classes"),
        background=Gaussian.from_arrays(get, "background"),
        references=get.get("references", np.zeros((0, 0))).astype(np.float32),
        reference_labels=get.get("reference_labels", np.zeros(0)).astype(np.int64),
    )


# -- scores ----------------------------------------------------------------------------------
def energy(logits: np.ndarray) -> np.ndarray:
    top = logits.max(axis=1)
    return np.asarray(top + np.log(np.exp(logits - top[:, None]).sum(axis=1)))


def tukey(raw: np.ndarray, block_dims: Sequence[int]) -> np.ndarray:
    """Signed square root of the raw embeddings, then per-backbone L2 normalisation."""
    x = np.asarray(raw, dtype=np.float64)
    return normalise_features(np.sign(x) * np.sqrt(np.abs(x)), block_dims)


def relative_mahalanobis(classes: Gaussian, background: Gaussian, feats: np.ndarray) -> np.ndarray:
    """(N, labels): minus the distance to each label's mean, plus the distance to the
    training images' mean (higher = more like that label's training images)."""
    return np.asarray(background.distances(feats) - classes.distances(feats))


def knn_similarity(
    feats: np.ndarray,
    references: np.ndarray,
    ref_labels: np.ndarray,
    n_labels: int,
) -> np.ndarray:
    """(N, labels): mean cosine similarity to the ``K_NEIGHBOURS`` nearest references of
    each label (``KNN_METHOD``; ``feats`` per-backbone normalised)."""
    # Serving holds the references as float32 (converted once, at load): no per-request copy.
    dtype = np.float32 if references.dtype == np.float32 else np.float64
    refs = references.astype(dtype, copy=False)
    feats = feats.astype(dtype, copy=False)
    out = np.full((len(feats), n_labels), -np.inf)
    for start in range(0, len(feats), SIMILARITY_BLOCK):
        sims = feats[start : start + SIMILARITY_BLOCK] @ refs.T
        for j in range(n_labels):
            cols = sims[:, ref_labels == j]
            k = min(K_NEIGHBOURS, cols.shape[1])
            if k >= 1:
                top = -np.partition(-cols, k - 1, axis=1)[:, :k]
                out[start : start + len(sims), j] = top.mean(axis=1)
    return out


def known_scores(cal: Calibration, head: Head, raw: np.ndarray) -> np.ndarray:
    """(N, labels): the known score of answering each label, from the raw embeddings."""
    feats = normalise_features(raw, head.block_dims)
    logits = decision_scores(head, feats)
    if cal.method == KNN_METHOD:
        part = knn_similarity(feats, cal.references, cal.reference_labels, logits.shape[1])
    else:
        assert cal.classes is not None and cal.background is not None
        part = relative_mahalanobis(cal.classes, cal.background, tukey(raw, head.block_dims))
    return _combine(energy(logits), part, cal.energy_stats, cal.part_stats)


def _combine(
    e: np.ndarray, part: np.ndarray, e_stats: np.ndarray, p_stats: np.ndarray
) -> np.ndarray:
    return np.asarray((e[:, None] - e_stats[0]) / e_stats[1] + (part - p_stats[0]) / p_stats[1])


# -- calibration -----------------------------------------------------------------------------
def calibrate(
    head: Head,
    X: np.ndarray,
    targets: np.ndarray,
    cv_logits: np.ndarray | None,
    cv_fold: np.ndarray | None,
) -> Calibration | None:
    """From the training embeddings ``X`` (raw, concatenated), their 0/1 ``targets``, the
    out-of-fold logits and each image's fold; None without cross-validation."""
    if cv_logits is None or cv_fold is None:
        return None
    if head.kind == "multi_label":
        return _calibrate_tags(targets, 1.0 / (1.0 + np.exp(-cv_logits)))
    feats = tukey(X, head.block_dims)
    truth, pred = targets.argmax(axis=1), cv_logits.argmax(axis=1)
    n_labels = targets.shape[1]
    part = np.full(len(feats), np.nan)
    for f in np.unique(cv_fold):  # each image against the folds that did not see it
        out, rest = np.flatnonzero(cv_fold == f), np.flatnonzero(cv_fold != f)
        classes = Gaussian.fit(feats[rest], truth[rest], n_labels)
        background = Gaussian.fit(feats[rest], np.zeros(len(rest), np.int64), 1)
        scores = relative_mahalanobis(classes, background, feats[out])
        part[out] = scores[np.arange(len(out)), pred[out]]
    e = energy(cv_logits)
    ok = (pred == truth) & np.isfinite(part)
    if ok.sum() < 2:
        return None
    e_stats, p_stats = _stats(e[ok]), _stats(part[ok])
    score = (e - e_stats[0]) / e_stats[1] + (part - p_stats[0]) / p_stats[1]
    thresholds, kept = np.full(n_labels, -np.inf), np.ones(n_labels)
    for j in range(n_labels):
        mine = score[ok & (pred == j)]
        if len(mine):
            thresholds[j] = float(np.quantile(mine, 1.0 - KEEP))
            kept[j] = float(np.mean(mine >= thresholds[j]))
    return Calibration(
        METHOD,
        thresholds,
        kept,
        e_stats,
        p_stats,
        classes=Gaussian.fit(feats, truth, n_labels),
        background=Gaussian.fit(feats, np.zeros(len(feats), np.int64), 1),
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
    return Calibration(PROB_METHOD, thresholds, kept)


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
        score = known_scores(calibration, head, desc)[rows, pred]
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
