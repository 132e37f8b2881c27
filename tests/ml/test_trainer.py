from __future__ import annotations

import json

import numpy as np
import pytest

from vize.ml.predictor import Head, HeadFormatError, predict_proba
from vize.ml.trainer import TrainParams, evaluate, stratified_split, train_head

Slice = tuple[np.ndarray, list[str], list[str]]
LABELS = ["airplane", "cat", "frog", "truck"]


def test_multi_class_accuracy_well_above_chance(cifar_slice: Slice):
    x, y, ids = cifar_slice
    report = evaluate(x, y, LABELS, "multi_class", ids)
    json.dumps(report)  # JSON-serialisable as is
    assert report["n_test"] == 12 and report["n_train"] == 48
    assert report["accuracy"] >= 0.6  # chance is 0.25
    assert report["cv_accuracy"] >= 0.6 and report["cv_folds"] == 5
    cm = np.array(report["confusion_matrix"])
    assert cm.shape == (4, 4) and cm.sum() == 12 and np.trace(cm) / 12 == report["accuracy"]
    assert set(report["per_label"]) == set(LABELS)
    assert all(v["support"] == 3 for v in report["per_label"].values())
    rows = report["test"]
    assert [r["id"] for r in rows] == report["test_ids"]
    assert all(r["correct"] == (r["true"] == r["predicted"]) for r in rows)


def test_split_is_deterministic_stratified_and_order_independent():
    ids = [f"s{i:03d}" for i in range(50)]
    strata = ["a"] * 30 + ["b"] * 20
    train, test = stratified_split(ids, strata, 0.2, seed=7)
    assert len(test) == 10 and sorted(np.concatenate([train, test]).tolist()) == list(range(50))
    assert sum(strata[i] == "a" for i in test) == 6
    again = stratified_split(ids, strata, 0.2, seed=7)
    assert np.array_equal(again[1], test)
    perm = np.random.default_rng(0).permutation(50)
    _, test_perm = stratified_split([ids[i] for i in perm], [strata[i] for i in perm], 0.2, 7)
    assert sorted(ids[perm[i]] for i in test_perm) == sorted(ids[i] for i in test)
    assert not np.array_equal(stratified_split(ids, strata, 0.2, seed=8)[1], test)


def test_pinned_samples_land_in_test(cifar_slice: Slice):
    x, y, ids = cifar_slice
    pinned = [False] * len(ids)
    for i in (0, 1, 2, 3, 20):
        pinned[i] = True
    report = evaluate(x, y, LABELS, "multi_class", ids, pinned_test=pinned)
    assert {ids[i] for i in (0, 1, 2, 3, 20)} <= set(report["test_ids"])
    # The airplane stratum has 4 pinned samples (> its quota of 3): all of them are kept.
    assert sum(i.startswith("airplane") for i in report["test_ids"]) == 4


def test_head_roundtrip_and_probabilities(cifar_slice: Slice):
    x, y, _ = cifar_slice
    head = train_head(x, y, LABELS, "multi_class", TrainParams(C=10))
    data = head.to_bytes()
    assert len(data) < 64_000
    back = Head.from_bytes(data)
    assert back.label_ids == tuple(LABELS) and back.kind == "multi_class"
    assert back.backbones == ("efficientnet_lite0",) and back.block_dims == (1280,)
    probs = predict_proba(back, x)
    assert np.allclose(probs.sum(axis=1), 1, atol=1e-5)
    assert np.array_equal(probs, predict_proba(head, {"efficientnet_lite0": x}))
    assert np.mean(np.array(LABELS)[probs.argmax(1)] == np.array(y)) > 0.95  # training fit
    with pytest.raises(HeadFormatError):
        Head.from_bytes(b"garbage")


def test_multi_label_head(cifar_slice: Slice):
    x, y, ids = cifar_slice
    labels = ["animal", "vehicle", "cat"]
    ymat = np.array(
        [[c in ("cat", "frog"), c in ("airplane", "truck"), c == "cat"] for c in y], dtype=int
    )
    head = train_head(x, ymat, labels, "multi_label")
    probs = predict_proba(Head.from_bytes(head.to_bytes()), x)
    assert probs.shape == (60, 3)
    assert np.mean((probs >= 0.5) == ymat.astype(bool)) > 0.95
    report = evaluate(x, ymat, labels, "multi_label", ids)
    json.dumps(report)
    assert report["accuracy"] >= 0.6
    assert report["per_label"]["animal"]["f1"] > 0.7
    assert isinstance(report["test"][0]["true"], list)


def test_invalid_inputs_are_rejected(cifar_slice: Slice):
    x, y, _ = cifar_slice
    with pytest.raises(ValueError, match="not in the label list"):
        train_head(x, y, ["airplane", "cat"], "multi_class")
    with pytest.raises(ValueError, match="0/1 matrix"):
        train_head(x, np.full((60, 2), 2), ["a", "b"], "multi_label")
