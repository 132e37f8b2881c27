"""Training and evaluation of light heads on cached embeddings (numpy only).

multi_class: multinomial logistic regression (softmax); multi_label: one logistic regression
per label. Both minimise ``mean(loss) + ||W||^2 / (2 * C * n)`` (the scikit-learn convention
``C * sum(loss) + ||W||^2 / 2`` rescaled; the bias is not penalised) on per-backbone
L2-normalised features, with a small self-contained L-BFGS: the problems are convex, smooth
and small (n <= a few thousand, d = 1280-2560), so it converges in well under a second.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from vize.ml.predictor import (
    HEAD_KINDS,
    Head,
    HeadKind,
    decision_scores,
    normalise_features,
    sigmoid,
    softmax,
)

# Recommended feature set for new heads (bench/ml_accuracy.py, cifar10-dev, k=20, 3 seeds):
# Lite0 0.803, Lite2 0.841, Lite0+Lite2 0.841; flip augmentation and C in [1, 100] change
# results by < 0.5 points. Lite2 alone matches the concatenation at ~2x Lite0's cost (not 3x).

Objective = Callable[[np.ndarray], tuple[float, np.ndarray]]


@dataclass(frozen=True)
class TrainParams:
    """Hyper-parameters; defaults are the measured best on cifar10-dev (bench/ml_accuracy.py)."""

    C: float = 10.0  # inverse L2 strength, scikit-learn convention
    max_iter: int = 500
    gtol: float = 1e-5  # stop when the largest gradient component is below this
    test_fraction: float = 0.2
    cv_folds: int = 5
    seed: int = 0
    threshold: float = 0.5  # multi_label decision threshold


def _lbfgs(fun: Objective, x0: np.ndarray, max_iter: int, gtol: float, m: int = 10) -> np.ndarray:
    """Minimise a smooth convex function: L-BFGS two-loop recursion + Armijo backtracking."""
    x = x0
    fx, g = fun(x)
    s_hist: list[np.ndarray] = []
    y_hist: list[np.ndarray] = []
    for _ in range(max_iter):
        if np.max(np.abs(g)) < gtol:
            break
        d = _two_loop(g, s_hist, y_hist)
        gd = float(g @ d)
        if gd >= 0:  # not a descent direction (numerical trouble): restart from steepest descent
            s_hist.clear()
            y_hist.clear()
            d, gd = -g, -float(g @ g)
        t = 1.0
        while True:
            x_new = x + t * d
            f_new, g_new = fun(x_new)
            if f_new <= fx + 1e-4 * t * gd or t < 1e-12:
                break
            t *= 0.5
        s, y = x_new - x, g_new - g
        if float(s @ y) > 1e-12:  # keep the curvature pair only if it is positive definite
            s_hist.append(s)
            y_hist.append(y)
            if len(s_hist) > m:
                s_hist.pop(0)
                y_hist.pop(0)
        x, fx, g = x_new, f_new, g_new
    return x


def _two_loop(g: np.ndarray, s_hist: list[np.ndarray], y_hist: list[np.ndarray]) -> np.ndarray:
    q = g.copy()
    alphas: list[float] = []
    for s, y in zip(reversed(s_hist), reversed(y_hist), strict=True):
        a = float(s @ q) / float(y @ s)
        q -= a * y
        alphas.append(a)
    if s_hist:
        q *= float(s_hist[-1] @ y_hist[-1]) / float(y_hist[-1] @ y_hist[-1])
    else:
        q /= max(1.0, float(np.linalg.norm(g)))  # first step: unit length
    for s, y, a in zip(s_hist, y_hist, reversed(alphas), strict=True):
        b = float(y @ q) / float(y @ s)
        q += (a - b) * s
    return -q


def _objective(x: np.ndarray, targets: np.ndarray, kind: HeadKind, c: float) -> Objective:
    n, d = x.shape
    k = targets.shape[1]
    lam = 1.0 / (c * n)

    def fun(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = theta[: d * k].reshape(d, k), theta[d * k :]
        z = x @ w + b
        if kind == "multi_class":
            zmax = z.max(axis=1, keepdims=True)
            lse = zmax[:, 0] + np.log(np.exp(z - zmax).sum(axis=1))
            loss = float(np.mean(lse - (z * targets).sum(axis=1)))
            resid = softmax(z) - targets
        else:
            # Binary cross-entropy, stable form: log(1 + e^z) - t z.
            loss = float(np.mean((np.logaddexp(0.0, z) - targets * z).sum(axis=1)))
            resid = sigmoid(z) - targets
        resid /= n
        grad_w = x.T @ resid + lam * w
        value = loss + 0.5 * lam * float((w * w).sum())
        return value, np.concatenate([grad_w.ravel(), resid.sum(axis=0)])

    return fun


def _targets(y: Any, labels: Sequence[str], kind: HeadKind) -> np.ndarray:
    """One-hot (multi_class, y = label ids) or 0/1 matrix (multi_label) as float64."""
    if kind == "multi_class":
        index = {lab: i for i, lab in enumerate(labels)}
        unknown = {v for v in y if v not in index}
        if unknown:
            raise ValueError(f"labels not in the label list: {sorted(map(str, unknown))}")
        out = np.zeros((len(y), len(labels)))
        out[np.arange(len(y)), [index[v] for v in y]] = 1.0
        return out
    arr = np.asarray(y, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != len(labels) or not np.isin(arr, (0.0, 1.0)).all():
        raise ValueError(f"multi_label y must be a 0/1 matrix with {len(labels)} columns")
    return arr


def train_head(
    X: np.ndarray,
    y: Any,
    labels: Sequence[str],
    kind: HeadKind,
    params: TrainParams | None = None,
    *,
    backbones: Sequence[str] = ("efficientnet_lite0",),
    block_dims: Sequence[int] | None = None,
    augment: np.ndarray | None = None,
) -> Head:
    """Fit a head on raw embeddings ``X`` (N, sum(block_dims)), concatenated per backbone.

    ``y``: for multi_class a sequence of N label ids from ``labels``; for multi_label an
    (N, len(labels)) 0/1 matrix. ``augment``: optional extra raw embeddings of the same N
    samples (e.g. of the horizontally flipped images), used as additional training rows.
    """
    if kind not in HEAD_KINDS:
        raise ValueError(f"kind must be one of {HEAD_KINDS}, got {kind!r}")
    params = params or TrainParams()
    dims = tuple(block_dims) if block_dims is not None else (int(X.shape[1]),)
    if len(dims) != len(backbones):
        raise ValueError("block_dims must give one dimension per backbone")
    if len(labels) < (2 if kind == "multi_class" else 1):
        raise ValueError("a multi_class head needs at least two labels")
    feats = normalise_features(X, dims)
    targets = _targets(y, labels, kind)
    if len(feats) != len(targets):
        raise ValueError(f"{len(feats)} embeddings but {len(targets)} targets")
    if augment is not None:
        feats = np.concatenate([feats, normalise_features(augment, dims)])
        targets = np.concatenate([targets, targets])
    d, k = feats.shape[1], len(labels)
    theta = _lbfgs(
        _objective(feats, targets, kind, params.C),
        np.zeros(d * k + k),
        params.max_iter,
        params.gtol,
    )
    return Head(
        kind=kind,
        label_ids=tuple(str(lab) for lab in labels),
        weights=theta[: d * k].reshape(d, k).astype(np.float32),
        bias=theta[d * k :].astype(np.float32),
        backbones=tuple(backbones),
        block_dims=dims,
        threshold=params.threshold,
    )


def head_scores(head: Head, X: np.ndarray) -> np.ndarray:
    """Probabilities of a head for raw concatenated embeddings (float64)."""
    z = decision_scores(head, normalise_features(X, head.block_dims))
    return softmax(z) if head.kind == "multi_class" else sigmoid(z)


# --------------------------------------------------------------------------------------------
# Evaluation: deterministic stratified split, metrics, k-fold cross-validation.


def _strata(targets: np.ndarray, kind: HeadKind) -> list[str]:
    """Stratification key per sample: its label, or its label set for multi_label."""
    if kind == "multi_class":
        return [str(i) for i in targets.argmax(axis=1)]
    return [",".join(map(str, np.flatnonzero(row))) for row in targets]


def stratified_split(
    ids: Sequence[Any],
    strata: Sequence[str],
    test_fraction: float,
    seed: int,
    pinned_test: Sequence[bool] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic stratified split -> (train indices, test indices), both sorted.

    Independent of input order (samples are ordered by id within each stratum). Each stratum
    with >= 2 samples gets round(n * test_fraction) test samples, at least 1 and at most n-1;
    pinned samples always go to test and count towards that quota.
    """
    pinned = np.zeros(len(ids), bool) if pinned_test is None else np.asarray(pinned_test, bool)
    rng = np.random.default_rng(seed)
    test: list[int] = []
    by_stratum: dict[str, list[int]] = {}
    for i, key in enumerate(strata):
        by_stratum.setdefault(key, []).append(i)
    for key in sorted(by_stratum):
        members = sorted(by_stratum[key], key=lambda i: str(ids[i]))
        n = len(members)
        quota = min(max(round(n * test_fraction), 1), n - 1) if n >= 2 else 0
        forced = [i for i in members if pinned[i]]
        free = [i for i in members if not pinned[i]]
        take = max(quota - len(forced), 0)
        order = rng.permutation(len(free))
        test.extend(forced + [free[j] for j in order[:take]])
    test_idx = np.array(sorted(test), dtype=np.int64)
    train_idx = np.setdiff1d(np.arange(len(ids)), test_idx)
    return train_idx, test_idx


def _predict_labels(probs: np.ndarray, kind: HeadKind, threshold: float) -> np.ndarray:
    """Predicted indicator matrix (N, L)."""
    if kind == "multi_class":
        out = np.zeros_like(probs, dtype=bool)
        out[np.arange(len(probs)), probs.argmax(axis=1)] = True
        return out
    return probs >= threshold


def _metrics(truth: np.ndarray, pred: np.ndarray, labels: Sequence[str]) -> dict[str, Any]:
    """Accuracy (exact match), per-label P/R/F1/support and a labels x labels matrix."""
    t, p = truth.astype(bool), pred.astype(bool)
    accuracy = float(np.mean((t == p).all(axis=1))) if len(t) else None
    # confusion[i, j] = test samples with true label i that were predicted label j.
    confusion = t.T.astype(np.int64) @ p.astype(np.int64)
    per_label: dict[str, dict[str, float | int]] = {}
    for j, lab in enumerate(labels):
        tp = int((t[:, j] & p[:, j]).sum())
        fp = int((~t[:, j] & p[:, j]).sum())
        fn = int((t[:, j] & ~p[:, j]).sum())
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_label[str(lab)] = {
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "support": int(t[:, j].sum()),
        }
    return {"accuracy": accuracy, "per_label": per_label, "confusion_matrix": confusion.tolist()}


def _fit_subset(
    X: np.ndarray,
    targets: np.ndarray,
    idx: np.ndarray,
    labels: Sequence[str],
    kind: HeadKind,
    params: TrainParams,
    dims: tuple[int, ...],
    augment: np.ndarray | None,
) -> Head:
    y: Any = (
        [labels[i] for i in targets[idx].argmax(axis=1)]
        if kind == "multi_class"
        else (targets[idx])
    )
    return train_head(
        X[idx],
        y,
        labels,
        kind,
        params,
        backbones=[str(i) for i in range(len(dims))],
        block_dims=dims,
        augment=None if augment is None else augment[idx],
    )


def cross_val_accuracy(
    X: np.ndarray,
    targets: np.ndarray,
    labels: Sequence[str],
    kind: HeadKind,
    params: TrainParams,
    dims: tuple[int, ...],
    ids: Sequence[Any],
    augment: np.ndarray | None = None,
) -> tuple[float | None, int]:
    """Stratified k-fold accuracy (exact match for multi_label) -> (accuracy, folds)."""
    probs, k = cross_val_predictions(X, targets, labels, kind, params, dims, ids, augment)
    if probs is None:
        return None, 0
    return _exact_match(probs, targets, kind, params), k


def _exact_match(
    probs: np.ndarray, targets: np.ndarray, kind: HeadKind, params: TrainParams
) -> float:
    pred = _predict_labels(probs, kind, params.threshold)
    return float((pred == targets.astype(bool)).all(axis=1).mean())


def stratified_folds(strata: Sequence[str], ids: Sequence[Any], k: int, seed: int) -> np.ndarray:
    """Fold number of each sample: each stratum's shuffled members dealt round-robin to the
    ``k`` folds (so folds are stratified), independent of input order."""
    rng = np.random.default_rng(seed + 1)
    fold = np.empty(len(strata), dtype=np.int64)
    position = 0
    for key in sorted(set(strata)):
        members = sorted((i for i, s in enumerate(strata) if s == key), key=lambda i: str(ids[i]))
        for j in rng.permutation(len(members)):
            fold[members[j]] = position % k
            position += 1
    return fold


def cross_val_predictions(
    X: np.ndarray,
    targets: np.ndarray,
    labels: Sequence[str],
    kind: HeadKind,
    params: TrainParams,
    dims: tuple[int, ...],
    ids: Sequence[Any],
    augment: np.ndarray | None = None,
) -> tuple[np.ndarray | None, int]:
    """Out-of-fold probabilities (N, labels) of a stratified k-fold: each sample scored by
    the head that did not see it (what mislabel detection needs) -> (probs, folds)."""
    logits, k = cross_val_logits(X, targets, labels, kind, params, dims, ids, augment)
    if logits is None:
        return None, 0
    return (softmax(logits) if kind == "multi_class" else sigmoid(logits)), k


def cross_val_logits(
    X: np.ndarray,
    targets: np.ndarray,
    labels: Sequence[str],
    kind: HeadKind,
    params: TrainParams,
    dims: tuple[int, ...],
    ids: Sequence[Any],
    augment: np.ndarray | None = None,
) -> tuple[np.ndarray | None, int]:
    """``cross_val_predictions`` before the softmax/sigmoid: the unknown-answer calibration
    needs the logits (their log-sum-exp), which the probabilities no longer hold."""
    k = min(params.cv_folds, len(X))
    if k < 2:
        return None, 0
    strata = _strata(targets, kind)
    fold = stratified_folds(strata, ids, k, params.seed)
    logits = np.zeros((len(X), len(labels)))
    for f in range(k):
        test, train = np.flatnonzero(fold == f), np.flatnonzero(fold != f)
        if len({strata[i] for i in train}) < 2 and kind == "multi_class":
            return None, 0
        head = _fit_subset(X, targets, train, labels, kind, params, dims, augment)
        logits[test] = decision_scores(head, normalise_features(X[test], head.block_dims))
    return logits, k


def evaluate(
    X: np.ndarray,
    y: Any,
    labels: Sequence[str],
    kind: HeadKind,
    ids: Sequence[Any],
    params: TrainParams | None = None,
    *,
    pinned_test: Sequence[bool] | None = None,
    block_dims: Sequence[int] | None = None,
    augment: np.ndarray | None = None,
) -> dict[str, Any]:
    """Hold-out evaluation (stratified split) plus k-fold CV accuracy, as a JSON-ready dict;
    ``cv_probs`` is the out-of-fold probability matrix (rows in ``ids`` order) or None.

    ``augment`` rows (flipped-image embeddings) are only ever used for training samples.
    ``test`` lists every test sample with its true and predicted labels and the score of the
    prediction, so a UI can show the misclassified images.
    """
    params = params or TrainParams()
    dims = tuple(block_dims) if block_dims is not None else (int(X.shape[1]),)
    targets = _targets(y, labels, kind)
    train_idx, test_idx = stratified_split(
        ids, _strata(targets, kind), params.test_fraction, params.seed, pinned_test
    )
    result: dict[str, Any] = {"kind": kind, "labels": [str(lab) for lab in labels]}
    result |= {"n_train": len(train_idx), "n_test": len(test_idx)}
    if len(train_idx) and len(test_idx):
        head = _fit_subset(X, targets, train_idx, labels, kind, params, dims, augment)
        probs = head_scores(head, X[test_idx])
        pred = _predict_labels(probs, kind, params.threshold)
        result |= _metrics(targets[test_idx], pred, labels)
        result["test"] = [
            _test_row(ids[i], targets[i], pred[r], probs[r], labels, kind)
            for r, i in enumerate(test_idx)
        ]
    else:
        result |= {"accuracy": None, "per_label": {}, "confusion_matrix": [], "test": []}
    result["test_ids"] = [ids[i] for i in test_idx]
    cv_logits, folds = cross_val_logits(X, targets, labels, kind, params, dims, ids, augment)
    cv_probs, cv_acc = None, None
    if cv_logits is not None:
        cv_probs = softmax(cv_logits) if kind == "multi_class" else sigmoid(cv_logits)
        cv_acc = _exact_match(cv_probs, targets, kind, params)
    # Out-of-fold probabilities, rows in ``ids`` order: data-health insights read them.
    probs_json = None if cv_probs is None else cv_probs.round(6).tolist()
    result |= {"cv_accuracy": cv_acc, "cv_folds": folds, "cv_probs": probs_json}
    # The out-of-fold logits and each row's fold, for the unknown calibration (vize.ml.openset).
    result["cv_logits"] = None if cv_logits is None else cv_logits.tolist()
    result["cv_fold"] = (
        None
        if cv_logits is None
        else stratified_folds(_strata(targets, kind), ids, folds, params.seed).tolist()
    )
    return result


def _test_row(
    sample_id: Any,
    truth: np.ndarray,
    pred: np.ndarray,
    probs: np.ndarray,
    labels: Sequence[str],
    kind: HeadKind,
) -> dict[str, Any]:
    true_labels = [str(labels[int(j)]) for j in np.flatnonzero(truth)]
    pred_labels = [str(labels[int(j)]) for j in np.flatnonzero(pred)]
    if kind == "multi_class":
        return {
            "id": sample_id,
            "true": true_labels[0],
            "predicted": pred_labels[0],
            "score": float(probs.max()),
            "correct": true_labels == pred_labels,
        }
    return {
        "id": sample_id,
        "true": true_labels,
        "predicted": pred_labels,
        "scores": {str(lab): float(p) for lab, p in zip(labels, probs, strict=True)},
        "correct": true_labels == pred_labels,
    }
