"""Read legacy (non-zip) PyTorch ``.pth`` state dicts without importing torch.

The legacy format written by ``torch.save(..., _use_new_zipfile_serialization=False)`` is a
sequence of pickles in one file:

1. the magic number ``0x1950A86A20F9469CFC6C``,
2. the protocol version (1001),
3. a dict of system info (endianness, type sizes),
4. the object itself, whose tensors refer to storages through *persistent ids*
   ``("storage", StorageClass, key, location, numel[, view_metadata])`` and are rebuilt by
   ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks)``,
5. a list of storage keys in the order their data follows,

then, per storage key, an int64 element count and the raw little-endian elements.

Unpickling is restricted to a short allow-list, so a hostile file cannot run code.
"""

from __future__ import annotations

import collections
import pickle
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001

# Storage class name -> numpy dtype (little-endian, as torch writes on x86/ARM).
_STORAGE_DTYPES: dict[str, np.dtype[Any]] = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


class PthFormatError(ValueError):
    """The file is not a legacy torch state dict this reader understands."""


@dataclass(frozen=True)
class _StorageType:
    dtype: np.dtype[Any]


@dataclass
class _StorageRef:
    key: str
    dtype: np.dtype[Any]
    numel: int
    data: np.ndarray | None = None


@dataclass
class _TensorRef:
    storage: _StorageRef
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]
    extra: list[Any] = field(default_factory=list)

    def materialise(self) -> np.ndarray:
        data = self.storage.data
        if data is None:
            raise PthFormatError(f"storage {self.storage.key!r} has no data")
        end = self.offset + _span(self.size, self.stride)
        if end > data.size:
            raise PthFormatError(f"tensor exceeds its storage {self.storage.key!r}")
        base = data[self.offset :]
        item = base.itemsize
        view = np.lib.stride_tricks.as_strided(
            base, shape=self.size, strides=tuple(s * item for s in self.stride)
        )
        # Copy so that callers own contiguous arrays independent of the file buffer.
        return np.ascontiguousarray(view)


def _span(size: tuple[int, ...], stride: tuple[int, ...]) -> int:
    if any(s == 0 for s in size):
        return 0
    return 1 + sum((n - 1) * st for n, st in zip(size, stride, strict=True))


def _rebuild_tensor_v2(
    storage: _StorageRef,
    storage_offset: int,
    size: tuple[int, ...],
    stride: tuple[int, ...],
    *extra: Any,
) -> _TensorRef:
    return _TensorRef(storage, int(storage_offset), tuple(size), tuple(stride), list(extra))


def _rebuild_parameter(data: _TensorRef, *_: Any) -> _TensorRef:
    return data


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the handful of globals a state dict needs."""

    def __init__(self, file: IO[bytes], storages: dict[str, _StorageRef] | None = None) -> None:
        super().__init__(file, encoding="utf-8")
        self.storages = storages if storages is not None else {}

    def find_class(self, module: str, name: str) -> Any:
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor_v2
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _rebuild_parameter
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a state dict")

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
        storage_type, key, _location, numel = pid[1:5]
        if not isinstance(storage_type, _StorageType):
            raise pickle.UnpicklingError(f"unsupported storage type {storage_type!r}")
        if len(pid) > 5 and pid[5] is not None:
            raise pickle.UnpicklingError("storage views are not supported")
        ref = self.storages.get(key)
        if ref is None:
            ref = _StorageRef(str(key), storage_type.dtype, int(numel))
            self.storages[key] = ref
        return ref


def _load_plain(f: IO[bytes]) -> Any:
    return _RestrictedUnpickler(f).load()


def _read_storage_data(f: IO[bytes], ref: _StorageRef) -> None:
    header = f.read(8)
    if len(header) != 8:
        raise PthFormatError(f"truncated file at storage {ref.key!r}")
    (numel,) = struct.unpack("<q", header)
    if numel != ref.numel:
        raise PthFormatError(f"storage {ref.key!r}: {numel} elements, expected {ref.numel}")
    nbytes = numel * ref.dtype.itemsize
    raw = f.read(nbytes)
    if len(raw) != nbytes:
        raise PthFormatError(f"truncated data for storage {ref.key!r}")
    ref.data = np.frombuffer(raw, dtype=ref.dtype)


def read_state_dict_stream(f: IO[bytes]) -> dict[str, np.ndarray]:
    """Read a legacy torch state dict from an open binary stream."""
    try:
        if _load_plain(f) != MAGIC_NUMBER:
            raise PthFormatError("not a legacy torch file (bad magic number)")
        if _load_plain(f) != PROTOCOL_VERSION:
            raise PthFormatError("unsupported torch serialisation protocol")
        sys_info = _load_plain(f)
        if isinstance(sys_info, dict) and not sys_info.get("little_endian", True):
            raise PthFormatError("big-endian torch files are not supported")
        unpickler = _RestrictedUnpickler(f)
        obj = unpickler.load()
        keys = _load_plain(f)
    except (pickle.UnpicklingError, EOFError) as exc:
        raise PthFormatError(f"cannot read torch file: {exc}") from exc
    if not isinstance(obj, dict):
        raise PthFormatError("the file does not hold a state dict")
    for key in keys:
        _read_storage_data(f, unpickler.storages[key])
    out: dict[str, np.ndarray] = {}
    for name, value in obj.items():
        if isinstance(value, _TensorRef):
            out[str(name)] = value.materialise()
    return out


def read_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Read a legacy (non-zip) torch ``.pth`` state dict into ``{name: ndarray}``.

    Non-tensor entries (there are none in the EfficientNet files) are skipped.
    Raises :class:`PthFormatError` for files in another format (e.g. zip-based ``.pth``).
    """
    with open(path, "rb") as f:
        if f.read(2) == b"PK":
            raise PthFormatError(f"{path} is a zip-based torch file; only legacy files are read")
        f.seek(0)
        return read_state_dict_stream(f)
