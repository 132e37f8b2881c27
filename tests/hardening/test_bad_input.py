"""Hostile and broken input: every request gets a clear 4xx in the error envelope, nothing is
stored for it, and the server stays healthy (``/health`` and a normal upload afterwards)."""

from __future__ import annotations

import base64
import io
import random
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from sqlalchemy import create_engine, func, select

from tests.api.helpers import assert_error, upload
from tests.helpers import png_bytes
from tests.inprocess import AppClient
from vize.api.limits import max_body_bytes
from vize.config import Settings
from vize.db.engine import normalize_url
from vize.db.tables import Image as ImageRow

MAX_UPLOAD = 300_000


@pytest.fixture
def settings(settings: Settings) -> Settings:
    settings.max_upload_bytes = MAX_UPLOAD  # body limit ~4.9 MB: quick to exceed in-process
    return settings


def encode(img: Image.Image, fmt: str, **kw: Any) -> bytes:
    out = io.BytesIO()
    img.save(out, fmt, **kw)
    return out.getvalue()


def png_bomb(side: int) -> bytes:
    """A 69-byte PNG whose header claims side x side pixels."""
    data = bytearray(encode(Image.new("RGB", (8, 8)), "PNG"))
    chunk = b"IHDR" + struct.pack(">II", side, side) + bytes(data[24:29])
    data[12:29] = chunk
    data[29:33] = struct.pack(">I", zlib.crc32(chunk))
    return bytes(data)


def jpeg_bomb(side: int) -> bytes:
    data = bytearray(encode(Image.new("RGB", (8, 8)), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", side, side)
    return bytes(data)


def webp_bomb(side: int) -> bytes:
    data = bytearray(encode(Image.new("RGB", (8, 8)), "WEBP", lossless=True))
    assert data[12:16] == b"VP8L" and data[20] == 0x2F
    bits = int.from_bytes(data[21:25], "little") & ~((1 << 28) - 1)
    data[21:25] = (bits | (side - 1) | ((side - 1) << 14)).to_bytes(4, "little")
    return bytes(data)


def noise_png(side: int) -> bytes:
    rnd = random.Random(side)
    return encode(Image.frombytes("RGB", (side, side), rnd.randbytes(side * side * 3)), "PNG")


JPEG = encode(Image.new("RGB", (64, 48), (200, 30, 30)), "JPEG")
PNG = png_bytes(3, size=(64, 48))
# Pixel counts around each limit: ours (40 M), PIL's warning (89 M), PIL's error (179 M).
BOMBS = {
    f"{name}-{side}": make(side)
    for name, make in (("png", png_bomb), ("jpeg", jpeg_bomb), ("webp", webp_bomb))
    for side in (8000, 12000, 16384)
}
BAD_FILES: list[tuple[str, bytes, int, str]] = [
    *[(f"bomb-{k}", v, 413, "too_many_pixels") for k, v in BOMBS.items()],
    ("png-truncated", PNG[: len(PNG) // 2], 400, "corrupt_image"),
    ("jpeg-truncated", JPEG[: len(JPEG) // 2], 400, "corrupt_image"),
    ("png-bad-data", PNG[:40] + bytes(b ^ 0x5A for b in PNG[40:-12]) + PNG[-12:], 400,
     "corrupt_image"),
    ("png-magic-only", b"\x89PNG\r\n\x1a\n" + b"\0" * 64, 400, "corrupt_image"),
    ("empty", b"", 400, "empty_image"),
    ("random", random.Random(1).randbytes(4096), 415, "unsupported_image_type"),
    ("gif", encode(Image.new("P", (8, 8)), "GIF"), 415, "unsupported_image_type"),
    ("bmp", encode(Image.new("RGB", (8, 8)), "BMP"), 415, "unsupported_image_type"),
    ("tiff", encode(Image.new("RGB", (8, 8)), "TIFF"), 415, "unsupported_image_type"),
    ("svg", b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>', 415,
     "unsupported_image_type"),
    ("html", b"<html><body onload=alert(1)></body></html>", 415, "unsupported_image_type"),
    ("pdf", b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF", 415, "unsupported_image_type"),
    ("over-the-size-limit", noise_png(330), 413, "too_large"),
]  # fmt: skip


def count_images(settings: Settings) -> int:
    engine = create_engine(normalize_url(settings.resolved_database_url))
    with engine.connect() as conn:
        n = conn.execute(select(func.count()).select_from(ImageRow)).scalar_one()
    engine.dispose()
    return int(n)


def stored_files(settings: Settings) -> list[Path]:
    return [p for p in settings.blob_dir.rglob("*") if p.is_file()]


def assert_healthy(client: AppClient, headers: dict[str, str], seed: int) -> None:
    assert client.get("/health").json()["status"] == "ok"
    r = upload(client, headers, png_bytes(seed), name=f"ok{seed}.png")
    assert r.status_code == 201, r.text


def test_bad_image_files(client: AppClient, alice: dict, settings: Settings) -> None:
    assert len(BOMBS["png-8000"]) < 100 and len(noise_png(330)) > MAX_UPLOAD
    h = alice["headers"]
    for name, data, status, code in BAD_FILES:
        for ctype in ("image/png", "application/octet-stream"):  # the declared type is ignored
            r = upload(client, h, data, name=f"{name}.png", ctype=ctype)
            assert r.status_code == status, (name, r.text)
            assert_error(r, status, code)
        record = {"_base64": base64.b64encode(data).decode()}
        r = client.post("/v2/training-image/", headers=h, json={"records": [record]})
        assert r.status_code == 200
        got = r.json()["records"][0]["_status"]
        if name == "empty":  # an empty _base64 is an empty image, said as such
            assert (got["code"], got["error"]) == (400, "empty_image")
        else:
            assert (got["code"], got["error"]) == (status, code), (name, got)
    assert count_images(settings) == 0 and stored_files(settings) == []
    assert_healthy(client, h, 1)


def raw(body: bytes, ctype: str = "application/json") -> dict[str, Any]:
    return {"content": body, "ctype": ctype}


def with_image(**fields: str) -> dict[str, Any]:
    return {"files": {"img_path": ("a.png", PNG, "image/png")}, "data": fields}


def test_bad_requests(client: AppClient, alice: dict, settings: Settings) -> None:
    h = alice["headers"]
    images, classify, task = "/v2/training-image/", "/v2/classify", "/v2/task/"
    records = [{"_base64": "AAAA"}]
    cases: list[tuple[str, str, dict[str, Any], int, str | None]] = [
        ("POST", images, raw(PNG, "image/png"), 400, "invalid_json"),
        ("POST", images, raw(PNG, "text/plain"), 400, "invalid_json"),
        ("POST", task, raw(b"<task><name>x</name></task>", "application/xml"), 400, "invalid_json"),
        ("POST", images, raw(b"--x\r\n", "multipart/form-data"), 400, None),
        ("POST", images, raw(b" " * (max_body_bytes(settings) + 1)), 413, "too_large"),
        ("POST", classify, raw(b"[" * 200_000), 400, "invalid_json"),
        ("POST", task, raw(b'{"name": "' + b"9" * 4_000_000 + b'"}'), 400, "invalid_field"),
        ("POST", task, raw(b'{"name": ' + b"9" * 5000 + b"}"), 400, "invalid_json"),
        ("POST", task, raw(b'{"name": "a\\ud800b"}'), 400, "invalid_json"),
        ("POST", "/v2/label/", raw(b'{"name": "x", "description": 1e999}'), 400, "invalid_json"),
        ("POST", task, {"json": {"name": "a\x00b"}}, 400, "invalid_field"),
        ("POST", images, {"json": {"records": records * 101}}, 400, "too_many_records"),
        ("POST", images, {"json": {"records": "all of them"}}, 400, "invalid_records"),
        ("POST", classify, {"json": {"task_id": "x", "records": records * 11}}, 400,
         "too_many_records"),
        ("POST", classify, {"json": {"task_id": "x", "records": records[0]}}, 400,
         "invalid_records"),
        ("POST", "/v1/classify/", {"data": {"task": "x"}}, 400, "required"),
        ("POST", images, with_image(meta_data='{"a": 1e999}'), 400, "invalid_meta_data"),
        ("POST", images, with_image(meta_data='{"a": "' + "x" * 70_000 + '"}'), 400,
         "invalid_meta_data"),
        ("POST", images, with_image(labels='["\\ud800"]'), 400, None),
        ("GET", images + "..%2F..%2Fvize.sqlite3/file/", {}, 404, "not_found"),
        ("GET", task + "?search=%00%ff%fe", {}, 200, None),
        ("GET", images + "?page_size=1000000000", {}, 422, "invalid"),
    ]  # fmt: skip
    for method, path, kw, status, code in cases:
        kw = dict(kw)
        headers = {**h, "Content-Type": kw.pop("ctype")} if "ctype" in kw else h
        r = client.request(method, path, headers=headers, **kw)
        if status == 200:
            assert r.status_code == 200, (path, r.text)
        else:
            assert_error(r, status, code)
    for path in ("/static/../vize.sqlite3", "/static/%2e%2e/%2e%2e/etc/passwd",
                 "/static/..%2fsecret_key", "/static/%2e%2e%2f%2e%2e%2fvize.sqlite3"):  # fmt: skip
        r = client.get(path)
        assert r.status_code == 404 and b"SQLite" not in r.content, path
    assert count_images(settings) == 0
    assert_healthy(client, h, 2)


def test_bad_base64_and_odd_names(client: AppClient, alice: dict, settings: Settings) -> None:
    h = alice["headers"]
    good = base64.b64encode(PNG).decode()
    records = [
        {"_base64": "@@@@"}, {"_base64": "YQ"}, {"_base64": good[:-3]},
        {"_base64": base64.b64encode(b"just text").decode()}, {"_base64": "\u00e9" * 8},
        {"_base64": 12345}, ["not", "an", "object"], {}, {"_base64": good, "meta_data": []},
    ]  # fmt: skip
    r = client.post("/v2/training-image/", headers=h, json={"records": records})
    statuses = [(rec["_status"]["code"], rec["_status"]["error"]) for rec in r.json()["records"]]
    assert statuses == [
        (400, "invalid_base64"), (400, "invalid_base64"), (400, "invalid_base64"),
        (415, "unsupported_image_type"), (400, "invalid_base64"), (400, "invalid_base64"),
        (400, "invalid_record"), (400, "required"), (400, "invalid_meta_data"),
    ]  # fmt: skip
    names = [
        "../../../../tmp/evil.png", "..\\..\\..\\evil.png", "/etc/passwd", "C:\\Windows\\evil.png",
        "....//....//evil.png", "%2e%2e%2fevil.png", "evil.png\x00.jpg", "\u202egnp.exe",
        "\U0001f600 \u540d\u524d.png", "\ufeff\u200b.png", "con.png", "x" * 1000 + ".png",
        "line\r\nbreak.png", "\\\\server\\share\\evil.png",
    ]  # fmt: skip
    for seed, name in enumerate(names, start=10):
        r = upload(client, h, png_bytes(seed), name=name)
        assert r.status_code == 201, (name, r.text)
        stored = r.json()["file_name"]
        assert "/" not in stored and "\\" not in stored and len(stored) <= 255, (name, stored)
        assert stored.isprintable() and stored not in ("", ".", ".."), (name, stored)
    odd = ["\U0001f600", "\u202eright-to-left", "zero\u200bwidth", "\u540d\u524d", "e\u0301"]
    for text in odd:
        r = client.post("/v2/label/", headers=h, json={"name": text, "description": text * 50})
        assert r.status_code == 201 and r.json()["name"] == text, r.text
        got = client.get(f"/v2/label/?search={text}", headers=h).json()
        assert [lbl["name"] for lbl in got["results"]] == [text]
    # Only the images we accepted were stored, each as files inside the blob folder.
    assert count_images(settings) == len(names)
    assert list(settings.data_dir.parent.rglob("*evil*")) == []  # no file named after them
    assert {p.relative_to(settings.blob_dir).parts[0] for p in stored_files(settings)} == {
        "images", "thumbs"
    }  # fmt: skip
    assert len(stored_files(settings)) == 2 * len(names)
    assert_healthy(client, h, 3)


def test_bad_classify_records(trained: Any, settings: Settings) -> None:
    client, alice, task_id = trained
    h = alice["headers"]
    b64 = lambda data: base64.b64encode(data).decode()  # noqa: E731
    records: list[Any] = [
        {"_base64": b64(BOMBS["png-8000"])}, {"_base64": b64(BOMBS["jpeg-12000"])},
        {"_base64": b64(BOMBS["webp-16384"])}, {"_base64": b64(PNG[:100])},
        {"_base64": b64(b"<svg/>")}, {"_base64": "@@"}, 7, {"_url": "file:///etc/passwd"},
        {"_base64": ""}, {"_base64": b64(PNG), "mine": "\U0001f600"},
    ]  # fmt: skip
    r = client.post("/v2/classify", headers=h, json={"task_id": task_id, "records": records})
    assert r.status_code == 200, r.text
    got = r.json()["records"]
    codes = [rec["_status"]["code"] for rec in got]
    # Bombs: refused from the header (never decoded) with the same 413 as uploads.
    assert [(r["_status"]["code"], r["_status"]["error"]) for r in got[:3]] == [
        (413, "too_many_pixels")
    ] * 3, got[:3]
    assert codes[3:] == [400, 400, 400, 400, 400, 400, 200], got
    assert got[-1]["mine"] == "\U0001f600" and "best_label" in got[-1]
    for data in (BOMBS["png-16384"], PNG[:100], b"GIF89a"):
        r = client.post("/v1/classify/", headers=h, data={"task": task_id},
                        files={"image_file": ("x.png", data, "image/png")})  # fmt: skip
        assert r.status_code in (400, 413, 415), r.text
        assert_error(r, r.status_code)
    r = client.post("/v2/classify", headers=h,
                    json={"task_id": task_id, "records": [{"_base64": b64(PNG)}] * 11})  # fmt: skip
    assert_error(r, 400, "too_many_records")
    assert client.get("/v2/usage/", headers=h).json()["today"] == 1  # only the good record
    assert client.get("/health").status_code == 200
