"""One self-contained ONNX graph of a trained model: preprocessing, backbone(s) and head.

Input ``image``: uint8 ``[N, S, S, 3]`` RGB, already resized to ``S`` (the largest input size
of the model's backbones; smaller backbones get an in-graph bilinear resize). The graph casts,
normalises (``(x - mean) / std``), transposes to NCHW, runs each backbone, L2-normalises each
embedding, concatenates them and applies the head. Outputs: ``probabilities`` ``[N, labels]``
(softmax, or independent sigmoids for tagging) and, for a multi_class model with calibrated
thresholds, ``known_score`` ``[N, labels]``: the score ``vize.ml.openset`` compares with the
label's threshold (answer "unknown" when the argmax label's score is below it).

Built with the ``onnx`` helpers from the cached backbone files (their ImageNet classifier is
left out); nothing here needs torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from vize.ml.backbones import get_backbone_config
from vize.ml.onnx_export import IR_VERSION, OPSET
from vize.ml.openset import K_NEIGHBOURS, KNN_METHOD, Calibration, Gaussian
from vize.ml.predictor import Head

EPS = 1e-12


class _Graph:
    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []

    def const(self, name: str, value: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(value, name))
        return name

    def node(self, op: str, inputs: list[str], output: str, **attrs: Any) -> str:
        self.nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        return output


def input_size(head: Head) -> int:
    return max(get_backbone_config(name).input_size for name in head.backbones)


def build(
    head: Head, onnx_paths: Mapping[str, Path], calibration: Calibration | None = None
) -> onnx.ModelProto:
    """The exported model of ``head``, whose backbones' ONNX files are ``onnx_paths``."""
    size = input_size(head)
    g = _Graph()
    pixels = g.node("Cast", ["image"], "pixels", to=TensorProto.FLOAT)
    nchw = g.node("Transpose", [pixels], "pixels_nchw", perm=[0, 3, 1, 2])
    blocks = []
    for name in head.backbones:
        blocks.append(_backbone(g, name, nchw, size, onnx_paths[name]))
    feats = g.node("Concat", blocks, "features", axis=1) if len(blocks) > 1 else blocks[0]
    weights = g.const("head_weights", head.weights.astype(np.float32))
    bias = g.const("head_bias", head.bias.astype(np.float32))
    logits = g.node("Add", [g.node("MatMul", [feats, weights], "head_matmul"), bias], "logits")
    act = "Softmax" if head.kind == "multi_class" else "Sigmoid"
    extra = {"axis": 1} if act == "Softmax" else {}
    g.node(act, [logits], "probabilities", **extra)
    n_labels = len(head.label_ids)
    outputs = [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", n_labels])]
    if calibration is not None and head.kind == "multi_class" and calibration.energy_stats.size:
        raw = [f"{name}/embedding" for name in head.backbones]
        _known_score(g, feats, raw, logits, calibration, n_labels)
        outputs.append(
            helper.make_tensor_value_info("known_score", TensorProto.FLOAT, ["N", n_labels])
        )
    graph = helper.make_graph(
        g.nodes,
        "vize_model",
        [helper.make_tensor_value_info("image", TensorProto.UINT8, ["N", size, size, 3])],
        outputs,
        initializer=g.inits,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="vize",
        ir_version=IR_VERSION,
    )
    onnx.checker.check_model(model)
    return model


def _backbone(g: _Graph, name: str, nchw: str, size: int, path: Path) -> str:
    """Append backbone ``name`` (its nodes and weights renamed under ``name/``) fed from the
    float NCHW pixels; returns its L2-normalised embedding."""
    config = get_backbone_config(name)
    x = nchw
    if config.input_size != size:
        scale = config.input_size / size
        scales = g.const(f"{name}/scales", np.array([1, 1, scale, scale], np.float32))
        x = g.node("Resize", [x, "", scales], f"{name}/resized", mode="linear")
    mean = g.const(f"{name}/mean", np.array(config.mean, np.float32))
    std = g.const(f"{name}/std", np.array(config.std, np.float32))
    x = g.node("Div", [g.node("Sub", [x, mean], f"{name}/centred"), std], f"{name}/input")
    source = onnx.load(str(path))
    needed = _needed_nodes(source.graph, "embedding")

    def rename(tensor: str) -> str:
        if tensor == "input":
            return x
        return f"{name}/{tensor}" if tensor else tensor

    used: set[str] = set()
    for node in needed:
        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        copy.name = f"{name}/{node.name or node.output[0]}"
        copy.input[:] = [rename(t) for t in node.input]
        copy.output[:] = [rename(t) for t in node.output]
        used.update(node.input)
        g.nodes.append(copy)
    for init in source.graph.initializer:
        if init.name in used:
            copy = onnx.TensorProto()
            copy.CopyFrom(init)
            copy.name = rename(init.name)
            g.inits.append(copy)
    emb = rename("embedding")
    norm = g.node("ReduceL2", [emb], f"{name}/norm", axes=[1], keepdims=1)
    norm = g.node("Max", [norm, g.const(f"{name}/eps", np.array(EPS, np.float32))], f"{name}/nz")
    return g.node("Div", [emb, norm], f"{name}/normalised")


def _needed_nodes(graph: onnx.GraphProto, output: str) -> list[onnx.NodeProto]:
    """The nodes ``output`` depends on, in graph order (drops the ImageNet classifier)."""
    producer = {out: node for node in graph.node for out in node.output}
    wanted: set[int] = set()
    stack = [output]
    while stack:
        node = producer.get(stack.pop())
        if node is None or id(node) in wanted:
            continue
        wanted.add(id(node))
        stack.extend(node.input)
    return [node for node in graph.node if id(node) in wanted]


def _known_score(
    g: _Graph, feats: str, raw: list[str], logits: str, cal: Calibration, n_labels: int
) -> None:
    """``known_score`` = standardised energy + the standardised second part of the
    calibration's method (vize.ml.openset.known_scores, in float32)."""
    energy = g.node("ReduceLogSumExp", [logits], "energy", axes=[1], keepdims=1)
    if cal.method == KNN_METHOD:
        part = _knn(g, feats, cal, n_labels)
    else:
        assert cal.classes is not None and cal.background is not None
        tukey = _tukey(g, raw)
        near = _distances(g, tukey, cal.classes, "classes")
        far = _distances(g, tukey, cal.background, "background")
        part = g.node("Sub", [far, near], "relmaha")

    def standard(x: str, stats: np.ndarray, tag: str) -> str:
        mean = g.const(f"{tag}_mean", np.array(stats[0], np.float32))
        std = g.const(f"{tag}_std", np.array(stats[1], np.float32))
        return g.node("Div", [g.node("Sub", [x, mean], f"{tag}_c"), std], f"{tag}_z")

    e = standard(energy, cal.energy_stats, "energy")
    g.node("Add", [e, standard(part, cal.part_stats, "part")], "known_score")


def _tukey(g: _Graph, raw: list[str]) -> str:
    """Signed square root of each backbone's raw embedding, L2-normalised, concatenated."""
    blocks = []
    for i, emb in enumerate(raw):
        root = g.node("Sqrt", [g.node("Abs", [emb], f"tukey_abs_{i}")], f"tukey_root_{i}")
        signed = g.node("Mul", [g.node("Sign", [emb], f"tukey_sign_{i}"), root], f"tukey_{i}")
        norm = g.node("ReduceL2", [signed], f"tukey_norm_{i}", axes=[1], keepdims=1)
        norm = g.node(
            "Max", [norm, g.const(f"tukey_eps_{i}", np.array(EPS, np.float32))], f"tukey_nz_{i}"
        )
        blocks.append(g.node("Div", [signed, norm], f"tukey_normalised_{i}"))
    return g.node("Concat", blocks, "tukey", axis=1) if len(blocks) > 1 else blocks[0]


def _distances(g: _Graph, x: str, gauss: Gaussian, tag: str) -> str:
    """[N, C] squared Mahalanobis distances of ``x`` to the centres (Gaussian.distances)."""
    f32 = np.float32
    centres_t = g.const(f"{tag}_centres_t", gauss.centres.T.astype(f32))
    centre_sq = g.const(f"{tag}_centre_sq", (gauss.centres**2).sum(axis=1).astype(f32))
    two = g.const(f"{tag}_two", np.array(2.0, f32))
    x_sq = g.node("ReduceSumSquare", [x], f"{tag}_x_sq", axes=[1], keepdims=1)
    cross = g.node("Mul", [g.node("MatMul", [x, centres_t], f"{tag}_cross1"), two], f"{tag}_cross")
    sq = g.node("Add", [g.node("Sub", [x_sq, cross], f"{tag}_sq1"), centre_sq], f"{tag}_sq2")
    sq = g.node("Relu", [sq], f"{tag}_sq")
    axes_t = g.const(f"{tag}_axes_t", gauss.axes.T.astype(f32))
    proj = g.node("MatMul", [x, axes_t], f"{tag}_proj")  # [N, r]
    one = g.const(f"{tag}_axis1", np.array([1], np.int64))
    proj = g.node("Unsqueeze", [proj, one], f"{tag}_proj3")  # [N, 1, r]
    centre_proj = g.const(f"{tag}_centre_proj", (gauss.centres @ gauss.axes.T).astype(f32))
    diff = g.node("Sub", [proj, centre_proj], f"{tag}_diff")  # [N, C, r]
    weights = 1.0 / (gauss.variances + gauss.floor) - 1.0 / gauss.floor
    w = g.const(f"{tag}_weights", weights.astype(f32))
    along = g.node("MatMul", [g.node("Mul", [diff, diff], f"{tag}_diff_sq"), w], f"{tag}_along")
    floor = g.const(f"{tag}_floor", np.array(gauss.floor, f32))
    return g.node("Add", [g.node("Div", [sq, floor], f"{tag}_iso"), along], f"{tag}_dist")


def _knn(g: _Graph, feats: str, cal: Calibration, n_labels: int) -> str:
    """Mean similarity to the ``K_NEIGHBOURS`` nearest references of each label."""
    refs = g.const("references_t", cal.references.astype(np.float32).T.copy())
    sims = g.node("MatMul", [feats, refs], "similarities")
    per_label = []
    for j in range(n_labels):
        members = np.flatnonzero(cal.reference_labels == j).astype(np.int64)
        k = min(K_NEIGHBOURS, len(members))
        idx = g.const(f"refs_{j}", members)
        cols = g.node("Gather", [sims, idx], f"sims_{j}", axis=1)
        kk = g.const(f"k_{j}", np.array([k], np.int64))
        top = helper.make_node("TopK", [cols, kk], [f"top_{j}", f"top_idx_{j}"], axis=1)
        g.nodes.append(top)
        per_label.append(g.node("ReduceMean", [f"top_{j}"], f"knn_{j}", axes=[1], keepdims=1))
    return g.node("Concat", per_label, "knn", axis=1)
