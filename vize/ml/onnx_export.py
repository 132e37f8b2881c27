"""Build the EfficientNet-Lite inference graph as ONNX from a torch state dict (no torch).

Architecture (EfficientNet-Lite, as in the TF reference ``efficientnet_lite_builder``):

* stem: 3x3 stride-2 conv to 32 channels + BN + ReLU6 (not width-scaled: "fixed stem"),
* seven stages of MBConv blocks (optional 1x1 expand + BN + ReLU6, depthwise kxk + BN + ReLU6,
  1x1 project + BN, identity skip when stride 1 and in == out), no squeeze-excite,
* head: 1x1 conv to 1280 + BN + ReLU6 (not width-scaled: "fixed head"), global average pool,
  fully connected layer to the 1000 ImageNet classes.

Channel counts are scaled by the width multiplier (rounded to multiples of 8) and the repeats
of the inner stages by the depth multiplier; the first and last stage keep their repeats.
Convolutions use TensorFlow "SAME" padding (the checkpoints come from TF): the total padding is
``max((ceil(i/s)-1)*s + k - i, 0)`` with the smaller half *before*, which differs from a
symmetric PyTorch ``padding=k//2`` for stride-2 layers on even sizes. Because the input size is
fixed per backbone, pads are computed statically here. Batch norm is folded into the convs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

BN_EPS = 1e-3  # batch_norm_epsilon of the TF EfficientNet-Lite checkpoints
OPSET = 17
IR_VERSION = 8  # old enough for every onnxruntime >= 1.17


@dataclass(frozen=True)
class StageDef:
    """One row of the EfficientNet block table (before width/depth scaling)."""

    repeats: int
    kernel: int
    stride: int
    expand: int
    in_ch: int
    out_ch: int


LITE_STAGES: tuple[StageDef, ...] = (
    StageDef(1, 3, 1, 1, 32, 16),
    StageDef(2, 3, 2, 6, 16, 24),
    StageDef(2, 5, 2, 6, 24, 40),
    StageDef(3, 3, 2, 6, 40, 80),
    StageDef(3, 5, 1, 6, 80, 112),
    StageDef(4, 5, 2, 6, 112, 192),
    StageDef(1, 3, 1, 6, 192, 320),
)


@dataclass(frozen=True)
class BlockSpec:
    """One concrete MBConv block after scaling."""

    index: int
    kernel: int
    stride: int
    expand: int
    in_ch: int
    out_ch: int


def round_filters(filters: int, width: float, divisor: int = 8) -> int:
    """Scale a channel count like the TF reference (nearest multiple of 8, at most -10%)."""
    scaled = filters * width
    new = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if new < 0.9 * scaled:
        new += divisor
    return int(new)


def lite_blocks(width: float, depth: float) -> list[BlockSpec]:
    """Expand the Lite stage table into concrete blocks for the given multipliers."""
    blocks: list[BlockSpec] = []
    last = len(LITE_STAGES) - 1
    for i, st in enumerate(LITE_STAGES):
        fixed = i in (0, last)  # Lite keeps the first and last stage unscaled in depth
        repeats = st.repeats if fixed else math.ceil(depth * st.repeats)
        in_ch = 32 if i == 0 else round_filters(st.in_ch, width)  # stem width is fixed at 32
        out_ch = round_filters(st.out_ch, width)
        for r in range(repeats):
            blocks.append(
                BlockSpec(
                    index=len(blocks),
                    kernel=st.kernel,
                    stride=st.stride if r == 0 else 1,
                    expand=st.expand,
                    in_ch=in_ch if r == 0 else out_ch,
                    out_ch=out_ch,
                )
            )
    return blocks


def same_pads(size: int, kernel: int, stride: int) -> tuple[int, int, int]:
    """TF 'SAME' padding (before, after) and the output size for one spatial axis."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2, out


def fold_bn(
    weight: np.ndarray, sd: dict[str, np.ndarray], bn: str
) -> tuple[np.ndarray, np.ndarray]:
    """Fold an inference-mode BatchNorm into the preceding bias-free conv."""
    gamma, beta = sd[f"{bn}.weight"], sd[f"{bn}.bias"]
    mean, var = sd[f"{bn}.running_mean"], sd[f"{bn}.running_var"]
    scale = gamma.astype(np.float64) / np.sqrt(var.astype(np.float64) + BN_EPS)
    w = weight.astype(np.float64) * scale[:, None, None, None]
    b = beta.astype(np.float64) - mean.astype(np.float64) * scale
    return w.astype(np.float32), b.astype(np.float32)


class _GraphBuilder:
    """Accumulates nodes and initialisers; tracks the static spatial size."""

    def __init__(self, sd: dict[str, np.ndarray], size: int) -> None:
        self.sd = sd
        self.size = size
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._relu6_bounds_added = False

    def _init(self, name: str, arr: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(arr, name))
        return name

    def conv_bn(self, x: str, conv: str, bn: str, stride: int, groups: int, out: str) -> str:
        weight = self.sd[f"{conv}.weight"]
        kernel = int(weight.shape[-1])
        w, b = fold_bn(weight, self.sd, bn)
        before, after, out_size = same_pads(self.size, kernel, stride)
        self.size = out_size
        self.nodes.append(
            helper.make_node(
                "Conv",
                [x, self._init(f"{conv}.w", w), self._init(f"{conv}.b", b)],
                [out],
                name=conv,
                kernel_shape=[kernel, kernel],
                strides=[stride, stride],
                pads=[before, before, after, after],
                group=groups,
            )
        )
        return out

    def relu6(self, x: str, out: str) -> str:
        if not self._relu6_bounds_added:
            self._init("relu6_min", np.array(0.0, dtype=np.float32))
            self._init("relu6_max", np.array(6.0, dtype=np.float32))
            self._relu6_bounds_added = True
        self.nodes.append(helper.make_node("Clip", [x, "relu6_min", "relu6_max"], [out]))
        return out

    def block(self, x: str, spec: BlockSpec) -> str:
        p = f"_blocks.{spec.index}"
        h = x
        mid = spec.in_ch * spec.expand
        if spec.expand != 1:
            h = self.conv_bn(h, f"{p}._expand_conv", f"{p}._bn0", 1, 1, f"{p}.expand")
            h = self.relu6(h, f"{p}.expand_act")
        h = self.conv_bn(h, f"{p}._depthwise_conv", f"{p}._bn1", spec.stride, mid, f"{p}.dw")
        h = self.relu6(h, f"{p}.dw_act")
        h = self.conv_bn(h, f"{p}._project_conv", f"{p}._bn2", 1, 1, f"{p}.project")
        if spec.stride == 1 and spec.in_ch == spec.out_ch:
            self.nodes.append(helper.make_node("Add", [h, x], [f"{p}.out"]))
            h = f"{p}.out"
        return h


def check_state_dict(sd: dict[str, np.ndarray], blocks: list[BlockSpec]) -> None:
    """Fail early, with a clear message, if the weights do not match the architecture."""
    expected: dict[str, tuple[int, ...]] = {"_conv_stem.weight": (32, 3, 3, 3)}
    for b in blocks:
        p, mid = f"_blocks.{b.index}", b.in_ch * b.expand
        if b.expand != 1:
            expected[f"{p}._expand_conv.weight"] = (mid, b.in_ch, 1, 1)
        expected[f"{p}._depthwise_conv.weight"] = (mid, 1, b.kernel, b.kernel)
        expected[f"{p}._project_conv.weight"] = (b.out_ch, mid, 1, 1)
    expected["_conv_head.weight"] = (1280, blocks[-1].out_ch, 1, 1)
    expected["_fc.weight"] = (1000, 1280)
    for key, shape in expected.items():
        got = sd.get(key)
        if got is None or tuple(got.shape) != shape:
            found = None if got is None else tuple(got.shape)
            raise ValueError(f"state dict mismatch at {key}: expected {shape}, found {found}")
    n_blocks = len({k.split(".")[1] for k in sd if k.startswith("_blocks.")})
    if n_blocks != len(blocks):
        raise ValueError(f"state dict has {n_blocks} blocks, architecture {len(blocks)}")


def build_efficientnet_lite(
    sd: dict[str, np.ndarray], width: float, depth: float, image_size: int, name: str
) -> onnx.ModelProto:
    """Return an ONNX model: input ``input`` [N,3,S,S] -> ``embedding`` [N,1280], ``logits``."""
    blocks = lite_blocks(width, depth)
    check_state_dict(sd, blocks)
    g = _GraphBuilder(sd, image_size)
    x = g.conv_bn("input", "_conv_stem", "_bn0", 2, 1, "stem")
    x = g.relu6(x, "stem_act")
    for spec in blocks:
        x = g.block(x, spec)
    x = g.conv_bn(x, "_conv_head", "_bn1", 1, 1, "head")
    x = g.relu6(x, "head_act")
    g.nodes.append(helper.make_node("GlobalAveragePool", [x], ["pooled"]))
    g.nodes.append(helper.make_node("Flatten", ["pooled"], ["embedding"], axis=1))
    fc_w = g._init("_fc.weight", sd["_fc.weight"].astype(np.float32))
    fc_b = g._init("_fc.bias", sd["_fc.bias"].astype(np.float32))
    g.nodes.append(helper.make_node("Gemm", ["embedding", fc_w, fc_b], ["logits"], transB=1))
    graph = helper.make_graph(
        g.nodes,
        name,
        [
            helper.make_tensor_value_info(
                "input", TensorProto.FLOAT, ["N", 3, image_size, image_size]
            )
        ],
        [
            helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", 1280]),
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 1000]),
        ],
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
