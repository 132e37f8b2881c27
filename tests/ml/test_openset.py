"""vize.ml.openset on synthetic embeddings: calibration, the known score, the decision, and the
calibration's round trip through the model artifact."""

from __future__ import annotations

import numpy as np
import pytest

from vize.errors import InvalidInput
from vize.ml import openset
from vize.ml.predictor import Head, predict_proba
from vize.ml.trainer import TrainParams, evaluate, train_head
from vize.services.unknown import parse_setting

DIM = 32


def _clusters(seed: int, n: int, centres: np.ndarray) -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    x = np.concatenate([c + 0.35 * rng.standard_normal((n, DIM)) for c in centres])
    return x.astype(np.float32), [str(j) for j in range(len(centres)) for _ in range(n)]


def _trained(kind: str = "multi_class") -> tuple[Head, np.ndarray, np.ndarray, openset.Calibration]:
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((4, DIM))  # 3 seen, 1 never trained on
    x, y = _clusters(1, 30, centres[:3])
    labels = ["0", "1", "2"]
    if kind == "multi_class":
        targets: object = y
    else:
        targets = np.eye(3)[[int(v) for v in y]]
    head = train_head(x, targets, labels, kind, block_dims=[DIM], backbones=["b"])  # type: ignore[arg-type]
    report = evaluate(
        x, targets, labels, kind, list(range(len(x))), TrainParams(), block_dims=[DIM]
    )  # type: ignore[arg-type]
    cal = openset.calibrate(
        head, x, openset.target_matrix(head, targets), np.asarray(report["cv_logits"])
    )
    assert cal is not None
    unseen, _ = _clusters(2, 40, centres[3:])
    seen, _ = _clusters(3, 40, centres[:3])
    return head, seen, unseen, cal


def test_calibrated_thresholds_keep_most_seen_and_refuse_most_unseen() -> None:
    head, seen, unseen, cal = _trained()
    assert cal.method == openset.METHOD and cal.thresholds.shape == (3,)
    assert np.all(cal.kept >= openset.KEEP - 0.05)
    answers = {}
    for name, x in (("seen", seen), ("unseen", unseen)):
        probs = predict_proba(head, x)
        answers[name] = openset.decide(head, probs, x, None, cal).passed.any(axis=1).mean()
    assert answers["seen"] >= 0.7 and answers["unseen"] <= 0.3, answers


def test_known_score_separates_better_than_the_softmax_here() -> None:
    head, seen, unseen, cal = _trained()

    def score(x: np.ndarray) -> np.ndarray:
        probs = predict_proba(head, x)
        return openset.decide(head, probs, x, None, cal).scores

    # Every seen image scores above the median unseen one.
    assert np.mean(score(seen) > np.median(score(unseen))) >= 0.9


def test_global_threshold_and_round_trip() -> None:
    head, seen, _, cal = _trained()
    probs = predict_proba(head, seen)
    none = openset.decide(head, probs, seen, 1.01, None)
    assert not none.passed.any()
    everything = openset.decide(head, probs, seen, 0.0, None)
    assert everything.passed.sum(axis=1).tolist() == [1] * len(seen)
    data = openset.bundle(head, cal)
    again = openset.from_artifact(data)
    assert again is not None and again.method == cal.method
    np.testing.assert_allclose(again.thresholds, cal.thresholds)
    assert Head.from_bytes(data).label_ids == head.label_ids  # the head reads as before
    assert openset.from_artifact(head.to_bytes()) is None  # a model trained before


def test_tags_get_their_best_f1_threshold() -> None:
    head, seen, _, cal = _trained("multi_label")
    assert cal.method == openset.PROB_METHOD
    assert np.all((cal.thresholds >= 0.05) & (cal.thresholds <= 0.95))
    probs = predict_proba(head, seen)
    passed = openset.decide(head, probs, seen, None, cal).passed
    assert passed.any(axis=1).mean() >= 0.8


@pytest.mark.parametrize("value", ["maybe", 1.5, -0.2, True, float("nan"), [0.5]])
def test_bad_threshold_settings_are_refused(value: object) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_setting(value)
    assert info.value.code == "invalid_threshold"


def test_threshold_settings() -> None:
    assert parse_setting(None) is None and parse_setting("") is None
    assert parse_setting(" AUTO ") == "auto" and parse_setting("off") == "off"
    assert parse_setting("0.7") == "0.7" and parse_setting(1) == "1.0"
