"""Safe image intake: size, type, pixel-count and integrity checks, EXIF orientation, thumbs."""

from __future__ import annotations

import base64
import binascii
import io
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

from vize.errors import InvalidInput, PayloadTooLarge, UnsupportedMedia

ALLOWED_FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
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
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            fmt = img.format or ""
            if fmt not in ALLOWED_FORMATS:
                raise UnsupportedMedia(
                    f"Unsupported image format {fmt or 'unknown'}; send JPEG, PNG or WebP.",
                    code="unsupported_image_type",
                )
            if img.width * img.height > max_pixels:
                raise _too_many_pixels(max_pixels)
            img.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _too_many_pixels(max_pixels) from exc
    except UnidentifiedImageError as exc:
        raise UnsupportedMedia(
            "The file is not a recognised image; send JPEG, PNG or WebP.",
            code="unsupported_image_type",
        ) from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise InvalidInput(
            f"The image is truncated or corrupt ({exc}).", code="corrupt_image"
        ) from exc
    img = ImageOps.exif_transpose(img) or img
    if img.mode != "RGB":
        img = img.convert("RGBA").convert("RGB") if "A" in img.getbands() else img.convert("RGB")
    return CheckedImage(data, ALLOWED_FORMATS[fmt], img.width, img.height, img)


def _too_many_pixels(max_pixels: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"Image has more than {max_pixels:,} pixels.", code="too_many_pixels"
    )


def make_thumbnail(img: Image.Image) -> bytes:
    thumb = img.copy()
    thumb.thumbnail((THUMB_SIZE, THUMB_SIZE))
    out = io.BytesIO()
    thumb.save(out, "JPEG", quality=85)
    return out.getvalue()
