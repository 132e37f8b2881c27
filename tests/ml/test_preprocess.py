from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from vize.ml.backbones import get_backbone_config
from vize.ml.preprocess import ImageDecodeError, hflip, preprocess

CFG = get_backbone_config("efficientnet_lite0")


def _encode(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def test_output_shape_dtype_and_range():
    img = Image.new("RGB", (50, 30), (255, 0, 0))
    out = preprocess(_encode(img, "PNG"), CFG)
    assert out.shape == (3, 224, 224) and out.dtype == np.float32
    assert out[0].min() == pytest.approx((255 - 127) / 128)
    assert out[1].max() == pytest.approx(-127 / 128)
    assert np.array_equal(out, preprocess(img, CFG))  # bytes and PIL paths agree


def test_exif_orientation_is_applied():
    # Left half black, right half white; EXIF orientation 6 = rotate 90 deg clockwise to display,
    # after which the black half is on top.
    arr = np.zeros((40, 80, 3), np.uint8)
    arr[:, 40:] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    data = _encode(Image.fromarray(arr), "JPEG", exif=exif.tobytes(), quality=95)
    out = preprocess(data, CFG)
    top, bottom = out[:, :100].mean(), out[:, 124:].mean()
    assert top < -0.9 and bottom > 0.9


def test_palette_alpha_grey_and_16bit_are_converted():
    rgba = Image.new("RGBA", (20, 20), (0, 0, 0, 0))  # fully transparent -> white
    assert preprocess(_encode(rgba, "PNG"), CFG).min() > 0.99
    pal = Image.new("P", (20, 20), 0)
    pal.putpalette([0, 255, 0] * 256)
    out = preprocess(_encode(pal, "PNG"), CFG)
    assert out[1].mean() > 0.99 and out[0].mean() < -0.99
    grey = Image.new("L", (20, 20), 200)
    out = preprocess(_encode(grey, "PNG"), CFG)
    assert np.allclose(out, (200 - 127) / 128)
    deep = Image.fromarray(np.full((20, 20), 65535, np.uint16))
    assert preprocess(_encode(deep, "PNG"), CFG).min() > 0.99
    la = Image.new("LA", (20, 20), (0, 255))
    assert preprocess(_encode(la, "PNG"), CFG).max() < -0.99


def test_large_jpeg_uses_draft_and_keeps_content():
    arr = np.zeros((3000, 4000, 3), np.uint8)
    arr[:, 2000:] = 255
    out = preprocess(_encode(Image.fromarray(arr), "JPEG", quality=90), CFG)
    assert out.shape == (3, 224, 224)
    assert out[:, :, :100].mean() < -0.95 and out[:, :, 124:].mean() > 0.95


def test_undecodable_bytes_raise():
    with pytest.raises(ImageDecodeError):
        preprocess(b"definitely not an image", CFG)


def test_hflip():
    x = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    assert np.array_equal(hflip(x)[:, :, 0], x[:, :, -1])
    assert hflip(x).flags["C_CONTIGUOUS"]
