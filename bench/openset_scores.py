"""Which "unknown" score? Offline comparison on a backbone's embeddings (issue 17).

    .venv/bin/python bench/openset_scores.py --dataset /work/shared/datasets/cifar10-dev \\
        [--splits 20] [--keep 0.85 0.9 0.93 0.95] [--cache emb.npz] [--json out.json]

Not through the API (bench/openset_bench.py is): it explores scores the service does not
ship. The recipe is openset_bench's: per split (seeded), 5 random seen labels with 20 random
training images each; the 900 other images are classified (held-out seen + all unseen). The
head and the 5 folds are the service's (``vize.ml.trainer``), on Lite0 fp32 whole-image
embeddings (``vize.ml.embedder``, computed once and cached with ``--cache``).

Each score is standardised on the correct out-of-fold answers. Its per-label threshold keeps
``keep`` of them, from scores computed fold-honestly: a held-out image is scored with the
statistics of the other folds only. Reported, as medians over the splits: the share of unseen
images answered "unknown", the share of seen images answered with their label, and the AUROC
of correct seen answers against unseen images. The baseline is the top softmax probability
at 0.5.

Scores: ``msp`` top softmax; ``energy`` log-sum-exp of the logits; ``knn3`` mean cosine to
the 3 nearest training images of the predicted label (``vize.ml.openset``); ``relmaha``
relative Mahalanobis distance (class means, a shared covariance with a floor of half its mean
eigenvalue, minus the same distance to the training data's mean: ``vize.ml.openset``);
``relmaha_tukey`` the same on signed-square-rooted embeddings (what the service ships, with
the energy); sums of standardised ones.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.openset_bench import auroc
from vize.ml import openset, trainer
from vize.ml.predictor import decision_scores, normalise_features

BACKBONE = "efficientnet_lite0"
SEEN, K, FOLDS = 5, 20, 5
COMBOS = {
    "msp": ["msp"],
    "energy+relmaha, Tukey (shipped)": ["energy", "relmaha_tukey"],
    "relmaha, Tukey": ["relmaha_tukey"],
    "energy+knn3 (shipped before)": ["energy", "knn3"],
    "knn3": ["knn3"],
    "relmaha": ["relmaha"],
    "energy+relmaha": ["energy", "relmaha"],
    "relmaha+knn3": ["relmaha", "knn3"],
}


def embed_dataset(dataset: Path, cache: Path | None) -> tuple[np.ndarray, np.ndarray]:
    if cache is not None and cache.exists():
        with np.load(cache) as z:
            return z["X"], z["Y"]
    from vize.ml.backbones import get_backbone_config
    from vize.ml.embedder import Embedder
    from vize.ml.preprocess import preprocess

    cfg = get_backbone_config(BACKBONE)
    with tempfile.TemporaryDirectory() as onnx:
        emb = Embedder(Path(onnx), intra_op_threads=2)
        xs, ys = [], []
        for j, label in enumerate(sorted(p.name for p in dataset.iterdir() if p.is_dir())):
            files = sorted((dataset / label).glob("*.png"))
            batch = np.stack([preprocess(f.read_bytes(), cfg) for f in files])
            xs += [emb.embed(BACKBONE, batch[s : s + 10]) for s in range(0, len(batch), 10)]
            ys += [j] * len(files)
    X, Y = np.concatenate(xs), np.array(ys)
    if cache is not None:
        np.savez(cache, X=X, Y=Y)
    return X, Y


def _relmaha(
    train: np.ndarray, train_y: np.ndarray, query: np.ndarray, pred: np.ndarray
) -> np.ndarray:
    """The service's relative Mahalanobis part (``vize.ml.openset``) for the predicted label."""
    n = int(train_y.max()) + 1
    classes = openset.Gaussian.fit(train, train_y, n)
    background = openset.Gaussian.fit(train, np.zeros(len(train), np.int64), 1)
    scores = openset.relative_mahalanobis(classes, background, query)
    return np.asarray(scores[np.arange(len(query)), pred])


def score_parts(
    head: Any, train_raw: np.ndarray, train_y: np.ndarray, query_raw: np.ndarray
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Predicted label and each score part of ``query_raw`` (raw embeddings)."""
    dims = (train_raw.shape[1],)
    train, query = normalise_features(train_raw, dims), normalise_features(query_raw, dims)
    logits = decision_scores(head, query)
    pred = logits.argmax(1)
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    rows = np.arange(len(query))
    knn = openset.knn_similarity(query, train, train_y, logits.shape[1])[rows, pred]
    parts = {"msp": probs.max(1), "energy": openset.energy(logits), "knn3": knn}
    parts["relmaha"] = _relmaha(train, train_y, query, pred)
    tukey_train, tukey_query = openset.tukey(train_raw, dims), openset.tukey(query_raw, dims)
    parts["relmaha_tukey"] = _relmaha(tukey_train, train_y, tukey_query, pred)
    return pred, parts


def run_split(X: np.ndarray, Y: np.ndarray, seed: int, keeps: list[float]) -> dict[str, Any]:
    rng = np.random.default_rng(1000 + seed)
    seen = sorted(int(j) for j in rng.choice(int(Y.max()) + 1, SEEN, replace=False))
    train_idx, seen_test, unseen_test = [], [], []
    for j in range(int(Y.max()) + 1):
        members = rng.permutation(np.flatnonzero(j == Y))
        if j in seen:
            train_idx += list(members[:K])
            seen_test += list(members[K:])
        else:
            unseen_test += list(members)
    labels = [str(j) for j in seen]
    y = np.array([seen.index(int(Y[i])) for i in train_idx])
    dims, params = (X.shape[1],), trainer.TrainParams()
    raw = X[train_idx]

    def fit(rows: np.ndarray) -> Any:
        return trainer.train_head(
            X[train_idx][rows], [labels[v] for v in y[rows]], labels, "multi_class", params,
            block_dims=dims,
        )  # fmt: skip

    ids = [str(uuid.UUID(int=int(rng.integers(2**63)))) for _ in train_idx]
    fold = trainer.stratified_folds([labels[v] for v in y], ids, FOLDS, params.seed)
    cv_pred = np.zeros(len(y), int)
    cv_parts: dict[str, np.ndarray] = {}
    for f in range(FOLDS):
        out, rest = np.flatnonzero(fold == f), np.flatnonzero(fold != f)
        pred, parts = score_parts(fit(rest), raw[rest], y[rest], raw[out])
        cv_pred[out] = pred
        for name, values in parts.items():
            cv_parts.setdefault(name, np.zeros(len(y)))[out] = values
    test = np.array(seen_test + unseen_test)
    is_seen = np.arange(len(test)) < len(seen_test)
    truth = np.array([seen.index(int(Y[i])) if int(Y[i]) in seen else -1 for i in test])
    pred, parts = score_parts(fit(np.arange(len(y))), raw, y, X[test])
    correct = pred == truth
    ok = cv_pred == y
    result: dict[str, Any] = {
        "softmax 0.5": (
            float((parts["msp"][~is_seen] < 0.5).mean()),
            float((correct & (parts["msp"] >= 0.5))[is_seen].mean()),
            None,
        )
    }
    for name, combo in COMBOS.items():
        stats = {c: (cv_parts[c][ok].mean(), cv_parts[c][ok].std() + 1e-9) for c in combo}
        cv_score = sum((cv_parts[c] - stats[c][0]) / stats[c][1] for c in combo)
        score = sum((parts[c] - stats[c][0]) / stats[c][1] for c in combo)
        auc = auroc(score[is_seen & correct], score[~is_seen])
        for keep in keeps:
            limits = np.full(SEEN, -np.inf)
            for j in range(SEEN):
                mine = cv_score[ok & (cv_pred == j)]
                if len(mine):
                    limits[j] = np.quantile(mine, 1 - keep)
            passed = score >= limits[pred]
            result[f"{name} @ {keep}"] = (
                float((~passed[~is_seen]).mean()),
                float((correct & passed)[is_seen].mean()),
                auc,
            )
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--dataset", type=Path, required=True)
    ap.add_argument("--splits", type=int, default=20)
    ap.add_argument("--keep", type=float, nargs="+", default=[0.9, 0.915, 0.93])
    ap.add_argument("--cache", type=Path, help="embeddings file (.npz), written on first use")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    X, Y = embed_dataset(args.dataset, args.cache)
    splits = [run_split(X, Y, s, args.keep) for s in range(args.splits)]
    table = {}
    for key in splits[0]:
        unseen, seen, auc = zip(*(s[key] for s in splits), strict=True)
        table[key] = {
            "unseen_unknown": round(statistics.median(unseen), 3),
            "seen_correct": round(statistics.median(seen), 3),
            "auroc_correct_vs_unseen": None if auc[0] is None else round(statistics.median(auc), 3),
        }
        print(f"{key:32s} {table[key]}")
    if args.json:
        args.json.write_text(json.dumps(table, indent=1))


if __name__ == "__main__":
    main()
