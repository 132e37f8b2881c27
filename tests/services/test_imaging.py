"""Image intake checks (services/imaging.py), on real encoded files."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image

from tests.helpers import png_bytes
from vize.errors import InvalidInput, PayloadTooLarge, UnsupportedMedia
from vize.services.imaging import THUMB_SIZE, check_image, decode_base64, make_thumbnail

MB = 1024 * 1024


def encode(img: Image.Image, fmt: str, **kw: object) -> bytes:
    out = io.BytesIO()
    img.save(out, fmt, **kw)
    return out.getvalue()


def check(data: bytes, max_pixels: int = 40_000_000) -> object:
    return check_image(data, max_bytes=10 * MB, max_pixels=max_pixels)


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_exif_orientation(orientation: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    img = Image.new("RGB", (60, 20), "white")
    img.paste((255, 0, 0), (0, 0, 10, 20))  # a red band on the left edge
    checked = check_image(encode(img, "JPEG", exif=exif, quality=95), max_bytes=MB, max_pixels=MB)
    rotated = orientation in (6, 8)
    assert (checked.width, checked.height) == ((20, 60) if rotated else (60, 20))
    assert checked.image.size == (checked.width, checked.height)
    assert checked.image.mode == "RGB" and checked.content_type == "image/jpeg"


def test_pixel_limit_is_checked_before_decoding() -> None:
    data = png_bytes(1, size=(100, 100))
    assert check(data, max_pixels=10_000).width == 100
    with pytest.raises(PayloadTooLarge) as err:
        check(data, max_pixels=9_999)
    assert err.value.code == "too_many_pixels"


def test_byte_limit() -> None:
    data = png_bytes(1)
    with pytest.raises(PayloadTooLarge):
        check_image(data, max_bytes=len(data) - 1, max_pixels=MB)


@pytest.mark.parametrize(
    ("data", "error", "code"),
    [
        (b"", InvalidInput, "empty_image"),
        (b"GIF89a" + b"\0" * 20, UnsupportedMedia, "unsupported_image_type"),
        (b"%PDF-1.4\n", UnsupportedMedia, "unsupported_image_type"),
        (b"\xff\xd8\xff\xe0" + b"\0" * 4, InvalidInput, "corrupt_image"),
        (b"\x89PNG\r\n\x1a\n", InvalidInput, "corrupt_image"),
        (b"RIFF\0\0\0\0WEBPVP8 ", InvalidInput, "corrupt_image"),
    ],
)
def test_refusals(data: bytes, error: type[Exception], code: str) -> None:
    with pytest.raises(error) as err:
        check(data)
    assert err.value.code == code  # type: ignore[attr-defined]


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_truncation_anywhere_is_refused_never_a_crash(fmt: str) -> None:
    data = encode(Image.effect_noise((48, 48), 60).convert("RGB"), fmt)
    for cut in range(8, len(data) - 1, max(1, len(data) // 60)):
        try:
            check(data[:cut])
        except (InvalidInput, UnsupportedMedia) as exc:
            assert exc.code in ("corrupt_image", "unsupported_image_type")
        else:
            # Only the trailer may go missing unnoticed (checksums, end marker): the pixels
            # are all there by then.
            assert cut > len(data) - 32, f"{fmt} cut at {cut} of {len(data)} was accepted"


def test_thumbnail_keeps_aspect_and_fits() -> None:
    checked = check(png_bytes(1, size=(1000, 500)))
    thumb = Image.open(io.BytesIO(make_thumbnail(checked.image)))
    assert thumb.format == "JPEG" and thumb.size == (THUMB_SIZE, THUMB_SIZE // 2)


def test_decode_base64_variants() -> None:
    raw = png_bytes(2)
    text = base64.b64encode(raw).decode()
    assert decode_base64(text, MB) == raw
    assert decode_base64("data:image/png;base64," + text, MB) == raw
    assert decode_base64(" \n".join([text[:10], text[10:]]), MB) == raw
    for bad in ("###", text[:-1], "é" * 8):
        with pytest.raises(InvalidInput) as err:
            decode_base64(bad, MB)
        assert err.value.code == "invalid_base64"
    with pytest.raises(PayloadTooLarge):
        decode_base64("A" * 2000, 1000)
