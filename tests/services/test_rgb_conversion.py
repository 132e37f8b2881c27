"""Uploads and classification see an image alike: transparent areas painted on white."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from vize.ml.preprocess import decode_image
from vize.services.imaging import check_image, make_thumbnail


def _png(img: Image.Image) -> bytes:
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


@pytest.mark.parametrize(
    "img",
    [
        Image.new("RGBA", (16, 16), (200, 0, 0, 0)),  # invisible red
        Image.new("LA", (16, 16), (0, 0)),  # invisible black
    ],
)
def test_upload_and_classify_paint_alpha_on_white(img: Image.Image) -> None:
    data = _png(img)
    uploaded = check_image(data, max_bytes=1 << 20, max_pixels=1 << 20).image
    classified = decode_image(data, 16)
    assert uploaded.mode == classified.mode == "RGB"
    assert uploaded.getpixel((3, 3)) == classified.getpixel((3, 3)) == (255, 255, 255)
    thumb = Image.open(io.BytesIO(make_thumbnail(uploaded)))
    assert min(thumb.getpixel((3, 3))) >= 250  # JPEG: white, give or take
