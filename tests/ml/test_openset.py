"""vize.ml.openset on synthetic embeddings: calibration, the known score, the decision, and the
calibration's round trip through the model artifact."""

from __future__ import annotations

import io

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from vize.errors import InvalidInput
from vize.ml import model_export, openset
from vize.ml.onnx_export import IR_VERSION, OPSET
from vize.ml.predictor import Head, decision_scores, normalise_features, predict_proba
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
        head,
        x,
        openset.target_matrix(head, targets),
        np.asarray(report["cv_logits"]),
        np.asarray(report["cv_fold"]),
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


def test_gaussian_distances_are_the_mahalanobis_distances_of_the_shrunk_covariance() -> None:
    rng = np.random.default_rng(5)
    feats = rng.standard_normal((12, 6)) * np.array([3.0, 2.0, 1.0, 0.5, 0.2, 0.1])
    groups = np.array([0] * 5 + [1] * 7)
    g = openset.Gaussian.fit(feats, groups, 2)
    centres = np.stack([feats[groups == j].mean(axis=0) for j in range(2)])
    residuals = feats - centres[groups]
    cov = residuals.T @ residuals / len(feats)  # its eigenvalues are g.variances
    eig = np.linalg.eigvalsh(cov)
    floor = openset.FLOOR * eig[-min(len(feats), 6) :].mean()
    inverse = np.linalg.inv(cov + floor * np.eye(6))
    query = rng.standard_normal((4, 6))
    expected = np.array([[(q - c) @ inverse @ (q - c) for c in centres] for q in query])
    np.testing.assert_allclose(g.distances(query), expected, rtol=1e-6)


def test_models_calibrated_with_the_earlier_knn_score_decide_as_before() -> None:
    """An artifact of the earlier method (energy + 3-NN, its arrays as it stored them) still
    loads and decides with that score."""
    head, seen, unseen, _ = _trained()
    x, y = _clusters(1, 30, np.random.default_rng(0).standard_normal((4, DIM))[:3])
    refs = x / np.linalg.norm(x, axis=1, keepdims=True)
    labels = np.array([int(v) for v in y])
    old = {
        "openset_method": np.array("energy+knn3"),
        "openset_thresholds": np.array([0.1, -0.2, 0.0]),
        "openset_energy_stats": np.array([3.0, 0.5]),
        "openset_knn_stats": np.array([0.8, 0.1]),
        "openset_references": refs.astype(np.float16),
        "openset_reference_labels": labels.astype(np.int32),
        "openset_kept": np.ones(3),
    }
    with np.load(io.BytesIO(head.to_bytes())) as z:
        arrays = {key: z[key] for key in z.files} | old
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    cal = openset.from_artifact(buf.getvalue())
    assert cal is not None and cal.method == openset.KNN_METHOD
    query = np.concatenate([seen, unseen])
    probs = predict_proba(head, query)
    decision = openset.decide(head, probs, query, None, cal)
    # The earlier formula, written out: z(energy) + z(mean cosine to the 3 nearest of the label).
    feats = query / np.linalg.norm(query, axis=1, keepdims=True)
    logits = feats @ head.weights + head.bias
    pred = logits.argmax(axis=1)
    energy = np.log(np.exp(logits).sum(axis=1))
    sims = feats @ refs.astype(np.float16).astype(np.float32).T
    knn = np.array([np.sort(sims[i, labels == p])[-3:].mean() for i, p in enumerate(pred)])
    expected = (energy - 3.0) / 0.5 + (knn - 0.8) / 0.1
    np.testing.assert_allclose(decision.scores, expected, rtol=1e-4, atol=1e-4)
    assert (
        decision.passed.any(axis=1).tolist()
        == (expected >= old["openset_thresholds"][pred]).tolist()
    )


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


def _legacy_calibration(head: Head) -> openset.Calibration:
    x, y = _clusters(1, 30, np.random.default_rng(0).standard_normal((4, DIM))[:3])
    refs = x / np.linalg.norm(x, axis=1, keepdims=True)
    return openset.Calibration(
        openset.KNN_METHOD,
        np.zeros(3),
        np.ones(3),
        np.array([3.0, 0.5]),
        np.array([0.8, 0.1]),
        references=refs.astype(np.float32),
        reference_labels=np.array([int(v) for v in y]),
    )


@pytest.mark.parametrize("method", ["current", "legacy"])
def test_exported_known_score_is_the_servers(method: str) -> None:
    """The ONNX nodes of ``known_score`` (model export) compute what ``known_scores`` does."""
    head, seen, unseen, cal = _trained()
    if method == "legacy":
        cal = _legacy_calibration(head)
    g = model_export._Graph()
    model_export._known_score(g, "feats", ["raw"], "logits", cal, 3)
    graph = helper.make_graph(
        g.nodes,
        "known",
        [
            helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", dim])
            for name, dim in (("feats", DIM), ("raw", DIM), ("logits", 3))
        ],
        [helper.make_tensor_value_info("known_score", TensorProto.FLOAT, ["N", 3])],
        initializer=g.inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION
    )
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    raw = np.concatenate([seen, unseen]).astype(np.float32)
    feats = normalise_features(raw, head.block_dims)
    logits = decision_scores(head, feats)
    inputs = {"feats": feats, "raw": raw, "logits": logits}
    (exported,) = session.run(None, {k: v.astype(np.float32) for k, v in inputs.items()})
    expected = openset.known_scores(cal, head, raw)
    np.testing.assert_allclose(exported, expected, rtol=1e-3, atol=2e-3)
