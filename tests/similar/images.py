"""Generated test pictures (no dataset): distinct scenes of shapes, and altered copies."""

from __future__ import annotations

import io
import random

from PIL import Image, ImageDraw, ImageOps


def scene(seed: int, size: int = 96, tint: str = "") -> Image.Image:
    """A picture of its own per seed: a two-colour gradient and a few filled shapes;
    ``tint`` "warm" or "cool" makes the background red or blue and the shapes round or square
    (two visual classes)."""
    rng = random.Random(seed)
    top = [rng.randrange(256) for _ in range(3)]
    bottom = [rng.randrange(256) for _ in range(3)]
    if tint:
        hot, cold = (0, 2) if tint == "warm" else (2, 0)
        for colour in (top, bottom):
            colour[hot], colour[cold], colour[1] = 230, 20, colour[1] // 3
    img = Image.new("RGB", (size, size))
    draw = ImageDraw.Draw(img)
    for y in range(size):
        t = y / (size - 1)
        colour = tuple(int(a + (b - a) * t) for a, b in zip(top, bottom, strict=True))
        draw.line([(0, y), (size, y)], fill=colour)
    for _ in range(rng.randrange(3, 7)):
        x0, y0 = rng.randrange(size - 20), rng.randrange(size - 20)
        box = [x0, y0, x0 + rng.randrange(12, size // 2), y0 + rng.randrange(12, size // 2)]
        colour = tuple(rng.randrange(256) for _ in range(3))
        round_shape = rng.random() < 0.5
        if tint:  # one kind of shape per class too: two clearly separable classes
            round_shape = tint == "warm"
        if round_shape:
            draw.ellipse(box, fill=colour)
        else:
            draw.rectangle(box, fill=colour)
    return img


def encode(img: Image.Image, fmt: str = "PNG", **kwargs: object) -> bytes:
    out = io.BytesIO()
    img.save(out, fmt, **kwargs)
    return out.getvalue()


def png(seed: int, tint: str = "") -> bytes:
    return encode(scene(seed, tint=tint))


def altered(seed: int, tint: str = "") -> bytes:
    """The scene mirrored, resized to 90 % and re-encoded as JPEG q=75."""
    img = ImageOps.mirror(scene(seed, tint=tint))
    img = img.resize((round(img.width * 0.9), round(img.height * 0.9)), Image.Resampling.BICUBIC)
    return encode(img, "JPEG", quality=75)


def mirrored(seed: int, tint: str = "") -> bytes:
    """The scene mirrored and re-encoded as JPEG q=90: a near copy by any measure."""
    return encode(ImageOps.mirror(scene(seed, tint=tint)), "JPEG", quality=90)
