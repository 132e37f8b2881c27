"""The data-health computations on hand-made descriptors (no backbone, no database)."""

from __future__ import annotations

import numpy as np
import pytest

from vize.ml import noise
from vize.ml.predictor import normalise_features
from vize.ml.trainer import (
    TrainParams,
    cross_val_accuracy,
    cross_val_predictions,
    evaluate,
    head_scores,
    train_head,
)
from vize.services import insights
from vize.services import similarity as sim

LAYOUT_DIM = sim.LAYOUT_SIDE * sim.LAYOUT_SIDE * 3


def _vectors(cnn: np.ndarray, layout: np.ndarray) -> sim.Vectors:
    return sim.Vectors([f"i{r}" for r in range(len(cnn))], sim.combine([cnn], layout))


def _unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_near_duplicates_need_both_content_and_look() -> None:
    rng = np.random.default_rng(0)
    cnn, layout = _unit(rng, 6, 64), _unit(rng, 6, LAYOUT_DIM)
    cnn[1] = cnn[0] + 0.4 * _unit(rng, 1, 64)[0]  # 1: a copy of 0 (content ~0.93, look same)
    layout[1] = layout[0] + 0.1 * _unit(rng, 1, LAYOUT_DIM)[0]
    layout[2] = layout[0]  # 2: the same look, other content
    cnn[3] = cnn[0]  # 3: the same content, another look
    cnn, layout = (a / np.linalg.norm(a, axis=1, keepdims=True) for a in (cnn, layout))
    hood = sim.neighbourhood(_vectors(cnn, layout), k=2, block=4)  # blocks: 4 + 2 rows
    assert [(i, j) for i, j, _ in hood.pairs] == [(0, 1)]
    assert 0.9 < hood.pairs[0][2] <= 1.0
    assert hood.near.shape == (6, 2) and 0 not in hood.near[0]  # never its own neighbour
    assert list(hood.sims[0]) == sorted(hood.sims[0], reverse=True)


def test_groups_leaks_and_suspects() -> None:
    ids = ["a", "b", "c", "d", "e"]
    info = {
        "a": (["x"], False),
        "b": (["y"], False),
        "c": (["x"], True),
        "d": (["y"], False),
        "e": (["y"], False),
    }
    pairs = [(0, 1, 0.95), (1, 2, 0.9), (3, 4, 0.97)]
    groups = insights._groups(ids, pairs, info)
    # Connected pairs form one group; groups whose labels differ come first.
    assert groups[0] == {"images": ["a", "b", "c"], "similarity": 0.95, "labels_differ": True}
    assert groups[1] == {"images": ["d", "e"], "similarity": 0.97, "labels_differ": False}
    leaks = insights._leaks(ids, pairs, info)
    assert leaks == [{"test_image": "c", "train_image": "b", "similarity": 0.9}]
    hood = sim.Neighbourhood(
        near=np.array([[2, 1], [3, 4], [0, 1], [4, 1], [3, 1]]),
        sims=np.full((5, 2), 0.8, dtype=np.float32),
        pairs=[],
    )
    # Single labels: suspicion from the stored (cleaned) probabilities, given_prob the
    # training's own cross-validated probability ("plain").
    predictions = {
        "a": {"given": ["x"], "probs": {"x": 0.9, "y": 0.1}, "plain": 0.95},
        "b": {"given": ["y"], "probs": {"x": 0.8, "y": 0.2}, "plain": 0.3},
        "d": {"given": ["y"], "probs": {"x": 0.6, "y": 0.4}, "plain": 0.3},
        "e": {"given": ["x"], "probs": {"x": 0.1, "y": 0.9}},  # relabelled since (now y)
    }
    out = insights.suspects(ids, hood, info, predictions)
    assert [s["id"] for s in out] == ["b", "d", "a"]  # e not reported: its label changed
    assert out[0]["suspicion"] == 0.8 and out[0]["given_prob"] == 0.3
    assert out[0]["predicted"] == {"id": "x", "prob": 0.8}
    # Stored before "plain" existed: given_prob is the probability itself.
    del predictions["a"]["plain"]
    assert insights.suspects(ids, hood, info, predictions)[2]["given_prob"] == 0.9


def test_predictions_and_tag_suspects() -> None:
    probs = np.array([[0.9, 0.2, 0.0001], [0.1, 0.95, 0.3]])
    y = np.array([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0]])
    out = insights.predictions_of(["p", "q"], ["t1", "t2", "t3"], y, "multi_label", probs)
    assert out["p"] == {"given": ["t1"], "probs": {"t1": 0.9, "t2": 0.2}}
    assert out["q"] == {"given": ["t1", "t2"], "probs": {"t1": 0.1, "t2": 0.95, "t3": 0.3}}
    hood = sim.Neighbourhood(np.zeros((2, 0), dtype=np.int64), np.zeros((2, 0)), [])
    info = {"p": (["t1"], False), "q": (["t1", "t2"], False)}
    rows = insights.suspects(["p", "q"], hood, info, out, "multi_label")
    # q is tagged t1 that the model gives 0.1: the worst disagreement of both images.
    assert rows[0]["id"] == "q" and rows[0]["predicted"]["id"] == "t1"
    assert rows[0]["suspicion"] == 0.9 and rows[0]["given_prob"] == 0.1


def test_cross_validated_probabilities_are_out_of_fold() -> None:
    rng = np.random.default_rng(1)
    centres = _unit(rng, 3, 16) * 3
    y = [str(i % 3) for i in range(45)]
    x = np.stack([centres[int(c)] + rng.standard_normal(16) for c in y])
    ids = [f"s{i}" for i in range(45)]
    params = TrainParams()
    targets = np.eye(3)[[int(c) for c in y]]
    probs, folds = cross_val_predictions(
        x, targets, ["0", "1", "2"], "multi_class", params, (16,), ids
    )
    assert folds == 5 and probs is not None and probs.shape == (45, 3)
    assert np.allclose(probs.sum(axis=1), 1.0)
    acc, _ = cross_val_accuracy(x, targets, ["0", "1", "2"], "multi_class", params, (16,), ids)
    assert acc == float((probs.argmax(axis=1) == targets.argmax(axis=1)).mean())
    report = evaluate(x, y, ["0", "1", "2"], "multi_class", ids)
    assert np.allclose(report["cv_probs"], probs, atol=1e-6) and report["cv_accuracy"] == acc


def _noisy_classes(seed: int, n: int = 90, flipped: int = 9) -> tuple[np.ndarray, list, set]:
    """Three classes of points around their centres, ``flipped`` labels moved to another."""
    rng = np.random.default_rng(seed)
    centres = _unit(rng, 3, 32) * 5
    truth = [i % 3 for i in range(n)]
    x = np.stack([centres[c] + rng.standard_normal(32) for c in truth])
    wrong = set(rng.choice(n, flipped, replace=False).tolist())
    y = [str((c + 1) % 3) if i in wrong else str(c) for i, c in enumerate(truth)]
    return x, y, wrong


def test_the_cleaned_cross_validation_ranks_the_flipped_labels_first() -> None:
    x, y, wrong = _noisy_classes(3)
    ids, labels = [f"s{i}" for i in range(len(y))], ["0", "1", "2"]
    targets = np.eye(3)[[int(c) for c in y]]
    first, _ = cross_val_predictions(x, targets, labels, "multi_class", TrainParams(), (32,), ids)
    assert first is not None
    probs = noise.cleaned_cv_probs(x, y, labels, ids, first, [32])
    assert probs is not None and probs.shape == (90, 3) and np.allclose(probs.sum(axis=1), 1)
    given = targets.argmax(axis=1)
    rows = np.arange(90)
    top = set(np.argsort(probs[rows, given])[: len(wrong)].tolist())
    assert len(top & wrong) >= len(wrong) - 1  # the flipped labels rank first


def test_the_span_fit_is_the_trainers_head() -> None:
    """Fewer images than dimensions: fitted in the span of the rows, the same head."""
    rng = np.random.default_rng(5)
    x = normalise_features(rng.standard_normal((20, 64)), [64])
    y = [str(i % 4) for i in range(20)]
    targets = np.eye(4)[[int(c) for c in y]]
    test = normalise_features(rng.standard_normal((5, 64)), [64])
    head = train_head(x, y, ["0", "1", "2", "3"], "multi_class", TrainParams())
    fast = noise._fit_and_score(x, targets, test, TrainParams().C)
    assert np.allclose(fast, head_scores(head, test), atol=2e-3)


def test_no_cleaned_cross_validation_when_too_small_or_too_large(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    x, y, _ = _noisy_classes(4, n=6, flipped=0)
    ids, labels = [f"s{i}" for i in range(6)], ["0", "1", "2"]
    first = np.full((6, 3), 1 / 3)
    assert noise.cleaned_cv_probs(x, y, labels, ids, first, [32]) is not None  # 2 per label
    assert noise.cleaned_cv_probs(x[:4], y[:4], labels, ids[:4], first[:4], [32]) is None
    monkeypatch.setattr(noise, "MAX_IMAGES", 5)
    assert noise.cleaned_cv_probs(x, y, labels, ids, first, [32]) is None
