"""Safe image intake: size, type, pixel-count and integrity checks, EXIF orientation, thumbs."""

from __future__ import annotations

import base64
import binascii
import io
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from vize.errors import InvalidInput, PayloadTooLarge, UnsupportedMedia
from vize.ml.preprocess import prepare_image

# Pillow names multi-picture JPEGs (most phone cameras) "MPO": they are JPEG files.
ALLOWED_FORMATS = {
    "JPEG": "image/jpeg",
    "MPO": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
}
# Signatures of the accepted formats: a file that starts like one but that Pillow cannot
# identify is a damaged image (400), not an unsupported type (415).
MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n")
THUMB_SIZE = 256


@dataclass(frozen=True)
class CheckedImage:
    data: bytes
    content_type: str
    width: int
    height: int
    image: Image.Image  # decoded, orientation applied, RGB


def decode_base64(value: str, max_bytes: int) -> bytes:
    if "," in value[:100] and value.startswith("data:"):
        value = value.split(",", 1)[1]
    # Line-wrapped base64 (the `base64` tool wraps at 76 columns) is still base64.
    value = "".join(value.split())
    if len(value) > max_bytes * 4 // 3 + 8:
        raise PayloadTooLarge(f"Image is larger than {max_bytes // (1024 * 1024)} MB.")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput("Invalid base64 image data.", code="invalid_base64") from exc


def check_image(data: bytes, *, max_bytes: int, max_pixels: int) -> CheckedImage:
    """Decode fully and refuse anything that is not a whole JPEG, PNG or WebP within limits."""
    if not data:
        raise InvalidInput("The image is empty.", code="empty_image")
    if len(data) > max_bytes:
        raise PayloadTooLarge(f"Image is larger than {max_bytes // (1024 * 1024)} MB.")
    try:
        # _open_allowed checks the pixel count from the header. No warnings.catch_warnings()
        # here: it swaps the process-wide warning filters and races with other threads.
        img = _open_allowed(data, max_pixels)
        fmt = img.format or ""
        img.load()
        img = prepare_image(img)  # upright RGB, alpha on white: as classification sees it
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _too_many_pixels(max_pixels) from exc
    except UnidentifiedImageError as exc:
        if _looks_like_allowed(data):
            raise _corrupt("unreadable header") from exc
        raise UnsupportedMedia(
            "The file is not a recognised image; send JPEG, PNG or WebP.",
            code="unsupported_image_type",
        ) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise _corrupt(str(exc)) from exc
    return CheckedImage(data, ALLOWED_FORMATS[fmt], img.width, img.height, img)


def _open_allowed(data: bytes, max_pixels: int) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    fmt = img.format or ""
    if fmt not in ALLOWED_FORMATS:
        raise UnsupportedMedia(
            f"Unsupported image format {fmt or 'unknown'}; send JPEG, PNG or WebP.",
            code="unsupported_image_type",
        )
    # Checked before decoding: the header alone tells how much memory decoding would take.
    if img.width * img.height > max_pixels:
        raise _too_many_pixels(max_pixels)
    return img


def _looks_like_allowed(data: bytes) -> bool:
    return data.startswith(MAGIC) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")


def _corrupt(reason: str) -> InvalidInput:
    return InvalidInput(f"The image is truncated or corrupt ({reason}).", code="corrupt_image")


def _too_many_pixels(max_pixels: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"Image has more than {max_pixels:,} pixels.", code="too_many_pixels")


def make_thumbnail(img: Image.Image) -> bytes:
    thumb = img.copy()
    thumb.thumbnail((THUMB_SIZE, THUMB_SIZE))
    out = io.BytesIO()
    thumb.save(out, "JPEG", quality=85)
    return out.getvalue()
