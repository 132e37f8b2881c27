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

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from vize.ml.backbones import BackboneConfig

# Reduce by cheap integer steps first when shrinking a lot; keeps quality, much faster.
_REDUCING_GAP = 3.0
_ALPHA_BACKGROUND = (255, 255, 255)  # transparent areas become white, like a browser shows them


# The default of VIZE_MAX_IMAGE_PIXELS; callers that have the settings pass theirs.
MAX_PIXELS = 40_000_000


class ImageDecodeError(ValueError):
    """The bytes are not an image PIL can decode."""


class ImageTooLarge(ImageDecodeError):
    """More pixels than allowed (a decompression bomb): refused before decoding."""


def _to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to RGB: alpha composited on white, 16-bit/float rescaled."""
    if img.mode == "RGB":
        return img
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*_ALPHA_BACKGROUND, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if img.mode.startswith("I;16") or img.mode in ("I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        # 16-bit greyscale spans 0..65535; generic int/float images are mapped by their range.
        top = 65535.0 if img.mode.startswith("I;16") else max(float(arr.max()), 255.0)
        arr8 = np.clip(arr / top * 255.0, 0, 255).astype(np.uint8)
        return Image.fromarray(arr8, mode="L").convert("RGB")
    return img.convert("RGB")


def decode_image(data: bytes, size: int, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decode bytes to an RGB PIL image, EXIF-rotated, drafted down for large JPEGs."""
    try:
        img = Image.open(io.BytesIO(data))
        # The header tells the size, before any decoding. (PIL's own limit is above ours and
        # only warns up to twice it; no warnings.catch_warnings() to make that an error: it
        # swaps the process-wide filters and races with other threads doing the same.)
        if img.width * img.height > max_pixels:
            raise ImageTooLarge(f"image has more than {max_pixels:,} pixels")
        # JPEG draft decodes at 1/2, 1/4 or 1/8 scale while staying >= the requested size:
        # a 12 MP photo decodes ~10x faster and the final resize is unchanged in quality.
        img.draft("RGB", (size, size))
        img.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLarge(f"image has more than {max_pixels:,} pixels") from exc
    except ImageDecodeError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageDecodeError(f"cannot decode image: {exc}") from exc
    return prepare_image(img)


def prepare_image(img: Image.Image) -> Image.Image:
    """Apply EXIF orientation and convert to RGB."""
    img = ImageOps.exif_transpose(img) or img
    return _to_rgb(img)


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
