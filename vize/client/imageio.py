"""Turning what callers hold (paths, URLs, bytes, PIL images) into what the API accepts."""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

from PIL import Image as PILImage
from PIL import ImageOps, UnidentifiedImageError

ImageInput: TypeAlias = str | os.PathLike[str] | bytes | bytearray | PILImage.Image
# What the server stores as is; anything else readable is converted to PNG first.
NATIVE_FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
JPEG_QUALITY = 90


@dataclass(frozen=True)
class Prepared:
    """An image ready to send: either bytes or (for URLs) the URL itself."""

    source: str
    data: bytes | None = None
    url: str | None = None
    file_name: str = "image"
    content_type: str = "application/octet-stream"


def is_url(value: object) -> bool:
    return isinstance(value, str) and value.lower().startswith(("http://", "https://"))


def is_single(value: object) -> bool:
    """True for one image input, False for a collection of them."""
    return isinstance(value, str | bytes | bytearray | os.PathLike | PILImage.Image)


def describe(value: Any) -> str:
    """A short name for messages and results: the path or URL, else a placeholder."""
    if isinstance(value, str | os.PathLike):
        return os.fspath(value)
    if isinstance(value, PILImage.Image):
        return f"<PIL image {value.width}x{value.height}>"
    if isinstance(value, bytes | bytearray):
        return f"<{len(value)} bytes>"
    return repr(value)


def _read(value: ImageInput) -> tuple[bytes | None, PILImage.Image | None, str]:
    if isinstance(value, PILImage.Image):
        return None, value, "image.png"
    if isinstance(value, bytes | bytearray):
        return bytes(value), None, "image"
    path = Path(os.fspath(value))
    return path.read_bytes(), None, path.name


def _encode(img: PILImage.Image, fmt: str) -> bytes:
    out = io.BytesIO()
    if fmt == "JPEG":
        # JPEG has no alpha or palette; RGB keeps colours as the model sees them.
        img.convert("RGB").save(out, "JPEG", quality=JPEG_QUALITY, optimize=True)
    else:
        img.save(out, fmt)
    return out.getvalue()


def _open(data: bytes) -> PILImage.Image | None:
    try:
        return PILImage.open(io.BytesIO(data))
    except (UnidentifiedImageError, OSError):
        # Not for us to judge: the server answers with its precise error (415, 400).
        return None


def _with_suffix(name: str, fmt: str) -> str:
    suffix = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp"}[fmt]
    stem = name.rsplit(".", 1)[0] if "." in name else name
    return stem + suffix


def prepare(value: ImageInput, resize: int | None = None) -> Prepared:
    """Load one input. With ``resize``, an image whose shorter side is larger is scaled down
    to that side and re-encoded as JPEG (the Vize docs' advice: upload time dominates).
    Smaller images go as they are: re-encoding them would only lose quality."""
    if is_url(value):
        return Prepared(source=str(value), url=str(value))
    source = describe(value)
    data, img, name = _read(value)
    if img is None and data is not None:
        img = _open(data)
        if img is None:
            return Prepared(source, data=data, file_name=name)
    assert img is not None
    if resize and min(img.size) > resize:
        small = _downscale(img, resize)
        return Prepared(
            source, _encode(small, "JPEG"), None, _with_suffix(name, "JPEG"), "image/jpeg"
        )
    if data is not None and img.format in NATIVE_FORMATS:
        return Prepared(source, data, None, name, NATIVE_FORMATS[img.format])
    # A PIL image, or a format the server does not store (GIF, BMP, TIFF): lossless PNG.
    return Prepared(source, _encode(img, "PNG"), None, _with_suffix(name, "PNG"), "image/png")


def _downscale(img: PILImage.Image, shorter_side: int) -> PILImage.Image:
    # Re-encoding drops EXIF, so the orientation must be applied to the pixels first.
    img = ImageOps.exif_transpose(img) or img
    scale = shorter_side / min(img.size)
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    return img.resize(size, PILImage.Resampling.LANCZOS)
