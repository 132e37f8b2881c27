"""Safe image intake: size, type, pixel-count and integrity checks, EXIF orientation, thumbs."""

from __future__ import annotations

import base64
import binascii
import io
from dataclasses import dataclass

from PIL import Image

from vize.errors import InvalidInput, PayloadTooLarge, UnsupportedMedia
from vize.ml import preprocess

ALLOWED_FORMATS = {
    "JPEG": "image/jpeg",
    "MPO": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
}
assert set(ALLOWED_FORMATS) == set(preprocess.OPENED_FORMATS)  # one list for both paths
THUMB_SIZE = 256
EXIF_ORIENTATION = 0x0112  # values 5-8 turn the image by 90 degrees


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


def check_image(
    data: bytes,
    *,
    max_bytes: int,
    max_pixels: int,
    max_decode_bytes: int = 0,
    budget: preprocess.Budget | None = None,
) -> CheckedImage:
    """Refuse anything that is not a whole JPEG, PNG or WebP within limits. The image is
    decoded whole (a truncated file fails here), but only at the scale the thumbnail needs."""
    if not data:
        raise InvalidInput("The image is empty.", code="empty_image")
    if len(data) > max_bytes:
        raise PayloadTooLarge(f"Image is larger than {max_bytes // (1024 * 1024)} MB.")
    try:
        header = preprocess.open_image(data, max_pixels)
        fmt, width, height = header.format or "", header.width, header.height
        img = preprocess.decode_image(
            data, THUMB_SIZE, max_pixels, max_bytes=max_decode_bytes, budget=budget
        )
    except preprocess.ImageTooLarge as exc:
        raise PayloadTooLarge(
            f"Image is too large to decode: {exc}.", code="too_many_pixels"
        ) from exc
    except preprocess.UnsupportedFormat as exc:
        raise UnsupportedMedia(
            "The file is not a recognised image; send JPEG, PNG or WebP.",
            code="unsupported_image_type",
        ) from exc
    except preprocess.ImageDecodeError as exc:
        raise InvalidInput(
            f"The image is truncated or corrupt ({exc}).", code="corrupt_image"
        ) from exc
    if header.getexif().get(EXIF_ORIENTATION, 1) > 4:
        width, height = height, width  # stored sideways: the upright image is what users see
    return CheckedImage(data, ALLOWED_FORMATS[fmt], width, height, img)


def make_thumbnail(img: Image.Image) -> bytes:
    thumb = img.copy()
    thumb.thumbnail((THUMB_SIZE, THUMB_SIZE))
    out = io.BytesIO()
    thumb.save(out, "JPEG", quality=85)
    return out.getvalue()
