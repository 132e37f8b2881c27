"""Image preprocessing shared by training and serving (one function, so they cannot drift).

Resize policy: the *whole* image is resized to the square input (aspect ratio not kept), no
centre crop. Measured with ``bench/ml_accuracy.py`` on cifar10-dev (k=20 per label, 80 test per
label, 3 seeds, logistic regression C=10): full-image resize 0.803 (Lite0) / 0.841 (Lite2) vs.
the ImageNet-style centre crop of 87.5 % 0.791 / 0.812. Cropping loses border content that
small or off-centre objects need; on user photos the full image also keeps off-centre objects,
which matters more for user-defined labels than the mild aspect distortion. Upscaling uses
bicubic; downscaling uses PIL's antialiased bicubic with ``reducing_gap`` (fast for big inputs).
"""

from __future__ import annotations

import io
from contextlib import AbstractContextManager, nullcontext
from typing import Protocol

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from vize.ml.backbones import BackboneConfig

# Reduce by cheap integer steps first when shrinking a lot; keeps quality, much faster.
_REDUCING_GAP = 3.0
_ALPHA_BACKGROUND = (255, 255, 255)  # transparent areas become white, like a browser shows them


# The default of VIZE_MAX_IMAGE_PIXELS; callers that have the settings pass theirs.
MAX_PIXELS = 40_000_000
# The formats accepted everywhere (upload and classification). Anything else (TIFF, BMP, PCX,
# EPS, which would run Ghostscript, ...) is refused before Pillow picks a decoder for it.
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP")
# What those open as: Pillow's JPEG opener names multi-picture JPEGs (phone cameras) "MPO".
OPENED_FORMATS = (*ALLOWED_FORMATS, "MPO")
# Signatures of the accepted formats: a file that starts like one but that Pillow cannot
# identify is a damaged image, not an unsupported type.
_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n")


class ImageDecodeError(ValueError):
    """The bytes are not an image PIL can decode."""


class ImageTooLarge(ImageDecodeError):
    """More pixels (or decoded bytes) than allowed: refused before decoding."""


class UnsupportedFormat(ImageDecodeError):
    """An image of a format outside ``ALLOWED_FORMATS`` (or no image at all)."""


class Budget(Protocol):
    """What decoding reserves its memory from (vize.services.budget.MemoryBudget)."""

    def reserve(self, nbytes: int) -> AbstractContextManager[None]: ...


def looks_like_allowed(data: bytes) -> bool:
    return data.startswith(_MAGIC) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")


def open_image(data: bytes, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Read the header only: the format must be allowed and the pixel count within limits."""
    try:
        img = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLarge(f"image has more than {max_pixels:,} pixels") from exc
    except UnidentifiedImageError as exc:
        if looks_like_allowed(data):
            raise ImageDecodeError("cannot decode image: unreadable header") from exc
        raise UnsupportedFormat("not a JPEG, PNG or WebP image") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:  # a header cut short
        raise ImageDecodeError(f"cannot decode image: {exc}") from exc
    # PIL's own limit is above ours and only warns up to twice it; no warnings.catch_warnings()
    # to make that an error: it swaps the process-wide filters and races with other threads.
    if img.width * img.height > max_pixels:
        raise ImageTooLarge(f"image has more than {max_pixels:,} pixels")
    return img


def decoded_bytes(img: Image.Image) -> int:
    """Memory a decode of ``img`` (at its current, possibly drafted, size) holds at its peak:
    the decoded pixels plus the 8-bit copy and the RGB conversion of about the same size."""
    bands = len(img.getbands())
    depth = 2 if "16" in img.mode else 4 if img.mode in ("I", "F") else 1
    return img.width * img.height * max(bands * depth, 3) * 2


def decode_cost(data: bytes, size: int, max_pixels: int = MAX_PIXELS) -> int:
    """``decoded_bytes`` from the header alone (0 for what will not decode: its error comes
    later), for admission to decide how costly a request is before it queues."""
    try:
        img = open_image(data, max_pixels)
        img.draft("RGB", (size, size))
        return decoded_bytes(img)
    except ImageDecodeError:
        return 0


def decode_image(
    data: bytes,
    size: int,
    max_pixels: int = MAX_PIXELS,
    *,
    max_bytes: int = 0,
    budget: Budget | None = None,
) -> Image.Image:
    """Decode bytes to an upright RGB PIL image whose shorter side stays >= ``size``, at the
    least cost: JPEGs decode at a reduced scale, everything else is reduced by whole steps
    right after decoding, before any conversion. ``max_bytes`` (0 = none) refuses images
    whose decode would hold more memory; ``budget`` bounds concurrent decodes together."""
    img = open_image(data, max_pixels)
    # JPEG draft decodes at 1/2, 1/4 or 1/8 scale while staying >= the requested size:
    # a 12 MP photo decodes ~10x faster and the final resize is unchanged in quality.
    img.draft("RGB", (size, size))
    cost = decoded_bytes(img)
    if max_bytes and cost > max_bytes:
        raise ImageTooLarge(
            f"decoding it would take {cost // 2**20} MB (limit {max_bytes // 2**20} MB): "
            "send a smaller image"
        )
    with budget.reserve(cost) if budget is not None else nullcontext():
        try:
            img.load()
            img = _reduce(_to_8bit(img), size)
            return prepare_image(img)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageTooLarge(f"image has more than {max_pixels:,} pixels") from exc
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise ImageDecodeError(f"cannot decode image: {exc}") from exc


def _to_8bit(img: Image.Image) -> Image.Image:
    """16-bit and 32-bit greyscale to 8 bits, in integer or float32 arithmetic (a float64 copy
    of a 40 MP scan alone is 320 MB)."""
    if img.mode.startswith("I;16"):
        arr = np.asarray(img)
        return Image.fromarray((arr >> 8).astype(np.uint8))
    if img.mode in ("I", "F"):
        arr = np.asarray(img, dtype=np.float32)
        top = max(float(arr.max()), 255.0)  # generic int/float images are mapped by their range
        scaled = np.clip(arr * np.float32(255.0 / top), 0, 255).astype(np.uint8)
        return Image.fromarray(scaled)
    return img


def _reduce(img: Image.Image, size: int) -> Image.Image:
    """Shrink by whole steps as the final resize would (``reducing_gap``), but before the
    RGB conversion and EXIF rotation, so those work on the small image."""
    fx = int(img.width / size / _REDUCING_GAP)
    fy = int(img.height / size / _REDUCING_GAP)
    if (fx < 2 and fy < 2) or img.mode not in ("L", "LA", "RGB", "RGBA", "P", "CMYK"):
        return img
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    return img.reduce((max(fx, 1), max(fy, 1)))


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode to RGB: transparent areas painted white (as a browser shows them),
    16-bit and float images rescaled to 8 bits."""
    img = _to_8bit(img)
    if img.mode == "RGB":
        return img
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*_ALPHA_BACKGROUND, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def prepare_image(img: Image.Image) -> Image.Image:
    """Apply EXIF orientation and convert to RGB."""
    img = ImageOps.exif_transpose(img) or img
    return to_rgb(img)


def preprocess(image: bytes | Image.Image, config: BackboneConfig) -> np.ndarray:
    """Bytes or a decoded PIL image -> float32 CHW array at the backbone's input size."""
    size = config.input_size
    img = decode_image(image, size) if isinstance(image, bytes) else prepare_image(image)
    if img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.BICUBIC, reducing_gap=_REDUCING_GAP)
    arr = np.asarray(img, dtype=np.float32)
    arr = (arr - np.float32(config.mean)) / np.float32(config.std)
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


def hflip(chw: np.ndarray) -> np.ndarray:
    """Horizontal flip of a preprocessed CHW (or NCHW) array, for flip augmentation."""
    return np.ascontiguousarray(chw[..., ::-1])
