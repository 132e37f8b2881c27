"""Static int8 quantisation of a converted backbone, at conversion time, with no download.

ONNX Runtime's QDQ format: per-channel symmetric int8 weights on 7 bits (``reduce_range``:
without it, x86 CPUs without VNNI saturate the int16 sums of u8 x s8 products, and the
embedding drifted to a median cosine of 0.87 from fp32 on the tests' photos; with it 0.94+ at
the same speed; u8 weights avoid that too but ran 5x slower), uint8 activations with
MinMax ranges calibrated on ``CALIBRATION_IMAGES`` images *generated here* (seeded, so every
node builds the same file): 1/f ("pink") noise, which has the power spectrum of natural
photos, shapes over gradients, dark strokes on light paper (documents, handwriting), grey
textures. Calibration only sets each activation's range; the classes come from the fp32
weights. Only convolutions, residual adds and ReLU6 are quantised: the pooled ``embedding``
and the ImageNet ``logits`` stay float.

On this project's 4-domain dev suite this int8 Lite0 scored 1.6 points below fp32 on the
mean (BENCHMARKS.md) at ~0.5-0.7x the forward time, so it is a setting (``VIZE_PRECISION``),
not the default; ``tests/ml/test_quantize.py`` checks it agrees with fp32 on known photos.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from vize.ml.backbones import BackboneConfig
from vize.ml.preprocess import preprocess

CALIBRATION_IMAGES = 48
CALIBRATION_SEED = 20261201
CALIBRATION_FOLD = 5  # images per range fold; 48 % 5 != 0 (see quantize_backbone)
# Bump when calibration or quantisation settings change: the cached file name carries it.
QUANT_VERSION = 1
# Only these run in int8; global pooling, the embedding and the classifier stay float.
INT8_OP_TYPES = ("Conv", "Add", "Clip")


def _pink_noise(rng: np.random.Generator, size: int) -> Image.Image:
    freq = np.sqrt(np.fft.fftfreq(size)[:, None] ** 2 + np.fft.rfftfreq(size)[None, :] ** 2)
    amplitude = 1.0 / np.maximum(freq, 1.0 / size) ** rng.uniform(0.8, 1.3)
    channels = []
    for _ in range(3):
        phase = rng.uniform(0, 2 * np.pi, amplitude.shape)
        plane = np.fft.irfft2(amplitude * np.exp(1j * phase), s=(size, size))
        channels.append(plane)
    arr = np.stack(channels, axis=-1)
    mix = rng.uniform(0.2, 1.0)  # correlated channels: natural colours are not independent
    arr = mix * arr.mean(axis=-1, keepdims=True) + (1 - mix) * arr
    arr = (arr - arr.min()) / max(float(np.ptp(arr)), 1e-9)
    lo, hi = sorted(rng.uniform(0, 255, 2))
    return Image.fromarray((lo + arr * (hi - lo + 30)).clip(0, 255).astype(np.uint8))


def _shapes(rng: np.random.Generator, size: int) -> Image.Image:
    a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    ramp = np.linspace(0, 1, size)[:, None, None]
    img = Image.fromarray((a + (b - a) * ramp * np.ones((1, size, 1))).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(2, 9))):
        x0, y0 = rng.integers(-size // 4, size, 2)
        w, h = rng.integers(size // 10, size // 2, 2)
        fill = tuple(int(v) for v in rng.integers(0, 256, 3))
        box = (int(x0), int(y0), int(x0 + w), int(y0 + h))
        if rng.random() < 0.5:
            draw.ellipse(box, fill=fill)
        else:
            draw.rectangle(box, fill=fill)
    return img.filter(ImageFilter.GaussianBlur(float(rng.uniform(0, 2))))


def _strokes(rng: np.random.Generator, size: int) -> Image.Image:
    paper = int(rng.integers(180, 256))
    img = Image.new("L", (size, size), paper)
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(3, 20))):
        points = [tuple(int(v) for v in rng.integers(0, size, 2)) for _ in range(4)]
        draw.line(points, fill=int(rng.integers(0, 90)), width=int(rng.integers(1, 12)))
    return img.filter(ImageFilter.GaussianBlur(float(rng.uniform(0, 1.5)))).convert("RGB")


def _texture(rng: np.random.Generator, size: int) -> Image.Image:
    y, x = np.mgrid[0:size, 0:size] / size
    fx, fy = rng.uniform(2, 40, 2)
    wave = np.sin(2 * np.pi * (fx * x + fy * y) + rng.uniform(0, 6))
    grain = rng.normal(0, rng.uniform(0.05, 0.6), (size, size))
    arr = (wave + grain - (wave + grain).min()) / np.ptp(wave + grain)
    return Image.fromarray((arr * 255).astype(np.uint8)).convert("RGB")


def calibration_images(config: BackboneConfig, count: int = CALIBRATION_IMAGES) -> list[np.ndarray]:
    """``count`` generated images, preprocessed for ``config`` like any served image."""
    rng = np.random.default_rng(CALIBRATION_SEED)
    makers = (_pink_noise, _pink_noise, _shapes, _strokes, _texture)
    out = []
    for i in range(count):
        size = int(rng.choice([32, 96, 256]))
        out.append(preprocess(makers[i % len(makers)](rng, size), config))
    return out


def quantize_backbone(fp32_path: Path, config: BackboneConfig) -> bytes:
    """The int8 QDQ model of the fp32 ONNX file at ``fp32_path``, serialised."""
    # Imported here: quantisation needs onnxruntime's tooling, plain inference does not.
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    images = calibration_images(config)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items: Iterator[np.ndarray] = iter(images)

        def get_next(self) -> dict[str, np.ndarray] | None:
            x = next(self.items, None)
            return None if x is None else {"input": x[None]}

    with tempfile.TemporaryDirectory(prefix="vize-quant-") as tmp:
        pre, out = Path(tmp) / "pre.onnx", Path(tmp) / "int8.onnx"
        quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
        quantize_static(
            str(pre),
            str(out),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            weight_type=QuantType.QInt8,
            activation_type=QuantType.QUInt8,
            reduce_range=True,
            calibrate_method=CalibrationMethod.MinMax,
            op_types_to_quantize=list(INT8_OP_TYPES),
            # Ranges folded in every few images: the calibrator otherwise keeps every
            # intermediate tensor of every image (GBs, in the server process at first start).
            # Not a divisor of the image count: onnxruntime 1.32 fails ("No data is
            # collected") when the last fold leaves nothing behind.
            extra_options={"CalibMaxIntermediateOutputs": CALIBRATION_FOLD},
        )
        return out.read_bytes()
