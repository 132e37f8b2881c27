"""Image inputs and the pre-upload resize, and classify batching over a recording server."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import httpx
from PIL import Image as PILImage

from tests.helpers import png_bytes
from vize.client import CLASSIFY_BATCH, VizeClient
from vize.client.imageio import prepare


def _jpeg(size: tuple[int, int], exif_rotate: bool = False) -> bytes:
    img = PILImage.new("RGB", size, (120, 10, 200))
    out = io.BytesIO()
    if exif_rotate:
        exif = PILImage.Exif()
        exif[0x0112] = 6  # "rotate 90° clockwise to display"
        img.save(out, "JPEG", exif=exif)
    else:
        img.save(out, "JPEG")
    return out.getvalue()


def test_small_images_are_sent_untouched(tmp_path: Path) -> None:
    path = tmp_path / "small.png"
    path.write_bytes(png_bytes(5, (300, 600)))
    prepared = prepare(path, resize=512)
    assert prepared.data == path.read_bytes()
    assert (prepared.content_type, prepared.file_name, prepared.source) == (
        "image/png",
        "small.png",
        str(path),
    )


def test_large_images_shrink_to_the_shorter_side_as_jpeg() -> None:
    prepared = prepare(png_bytes(5, (2000, 1000)), resize=512)
    assert prepared.content_type == "image/jpeg"
    assert PILImage.open(io.BytesIO(prepared.data or b"")).size == (1024, 512)
    untouched = prepare(png_bytes(5, (2000, 1000)), resize=None)
    assert untouched.content_type == "image/png"


def test_resize_applies_exif_orientation_before_dropping_it() -> None:
    prepared = prepare(_jpeg((1200, 800), exif_rotate=True), resize=400)
    assert PILImage.open(io.BytesIO(prepared.data or b"")).size == (400, 600)


def test_urls_pil_and_unknown_bytes() -> None:
    assert prepare("https://example.com/a.jpg").url == "https://example.com/a.jpg"
    pil = prepare(PILImage.new("L", (10, 10)))
    assert pil.content_type == "image/png" and pil.source == "<PIL image 10x10>"
    junk = prepare(b"not an image", resize=512)
    assert junk.data == b"not an image"  # the server will say what is wrong with it


def _fake_classify(request: httpx.Request) -> httpx.Response:
    body = json.loads(request.content)
    records = [
        {
            "_status": {"code": 200, "text": "OK"},
            "best_label": {"id": "l1", "name": "cat", "prob": 0.9},
            "labels": [
                {"id": "l1", "name": "cat", "prob": 0.9},
                {"id": "l2", "name": "dog", "prob": 0.1},
            ],
        }
        if "_url" in r or base64.b64decode(r["_base64"])[:4] != b"bad!"
        else {"_status": {"code": 400, "text": "Not an image."}}
        for r in body["records"]
    ]
    return httpx.Response(
        200,
        json={
            "task_id": body["task_id"],
            "version": body.get("version", 3),
            "status": {"code": 200, "text": "OK"},
            "records": records,
        },
    )


def test_classify_batches_by_ten_and_keeps_order(tmp_path: Path) -> None:
    calls: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(json.loads(request.content))
        return _fake_classify(request)

    path = tmp_path / "big.png"
    path.write_bytes(png_bytes(1, (1600, 900)))
    inputs: list = [path, "https://example.com/x.jpg", b"bad!"] + [png_bytes(i) for i in range(20)]
    with VizeClient("http://vize", "t", transport=httpx.MockTransport(handler)) as sdk:
        results = sdk.classify("task-1", inputs, version=2, descriptor=True)
    assert [len(c["records"]) for c in calls] == [CLASSIFY_BATCH, CLASSIFY_BATCH, 3]
    assert all(
        c["task_id"] == "task-1" and c["version"] == 2 and c["descriptor"] == 1 for c in calls
    )
    sent = base64.b64decode(calls[0]["records"][0]["_base64"])
    assert PILImage.open(io.BytesIO(sent)).size == (910, 512)  # shorter side 512, JPEG
    assert calls[0]["records"][1] == {"_url": "https://example.com/x.jpg"}
    assert len(results) == 23 and results[0].source == str(path)
    assert results[0].best_label is not None and results[0].best_label.name == "cat"
    assert [s.name for s in results[0].labels] == ["cat", "dog"] and results[0].version == 2
    assert not results[2].ok and results[2].error == "Not an image."


def test_classify_single_input() -> None:
    with VizeClient("http://vize", "t", transport=httpx.MockTransport(_fake_classify)) as sdk:
        (result,) = sdk.classify("task-1", png_bytes(3), resize=None)
    assert result.ok and result.version == 3
    assert result.source == f"<{len(png_bytes(3))} bytes>"
