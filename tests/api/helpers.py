"""Small request helpers shared by the API tests (plain functions, no hidden state)."""

from __future__ import annotations

import io
from typing import Any

from PIL import Image

from tests.helpers import png_bytes
from tests.inprocess import AppClient

ENVELOPE_KEYS = {"detail", "code"}
CLASSIFY_PATHS = {"/v2/classify", "/recognition/v2/classify", "/v1/classify"}


def create_task(client: AppClient, headers: dict[str, str], **fields: Any) -> dict[str, Any]:
    r = client.post("/v2/task/", headers=headers, json={"name": "task", **fields})
    assert r.status_code == 201, r.text
    return dict(r.json())


def create_label(client: AppClient, headers: dict[str, str], **fields: Any) -> dict[str, Any]:
    r = client.post("/v2/label/", headers=headers, json={"name": "label", **fields})
    assert r.status_code == 201, r.text
    return dict(r.json())


def upload(
    client: AppClient,
    headers: dict[str, str],
    data: bytes,
    name: str = "img.png",
    ctype: str = "image/png",
    **fields: Any,
) -> Any:
    """POST one image as multipart ``img_path`` (the documented way); returns the response."""
    return client.post(
        "/v2/training-image/",
        headers=headers,
        files={"img_path": (name, data, ctype)},
        data=fields,
    )


def upload_ok(client: AppClient, headers: dict[str, str], seed: int, **fields: Any) -> dict:
    r = upload(client, headers, png_bytes(seed), name=f"img{seed}.png", **fields)
    assert r.status_code == 201, r.text
    return dict(r.json())


def image_bytes(fmt: str, size: tuple[int, int] = (40, 30), exif: Any = None) -> bytes:
    img = Image.new("RGB", size, (10, 120, 200))
    img.putpixel((1, 1), (255, 0, 0))
    out = io.BytesIO()
    kwargs = {"exif": exif} if exif is not None else {}
    img.save(out, fmt, **kwargs)
    return out.getvalue()


def assert_error(r: Any, status: int, code: str | None = None) -> dict[str, Any]:
    """The one error envelope: ``detail`` and ``code`` strings (``errors`` only on 422)."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    allowed = ENVELOPE_KEYS | ({"errors"} if status == 422 else set())
    if r.request.url.path.rstrip("/") in CLASSIFY_PATHS:
        # Classification errors also carry Ximilar's envelope, whose client reads "status".
        assert body["status"] == {"code": status, "text": body["detail"]}, body
        assert body["records"] == [], body
        allowed |= {"status", "records"}
    assert set(body) - allowed == set(), body
    assert isinstance(body["detail"], str) and body["detail"]
    assert isinstance(body["code"], str) and body["code"]
    if code is not None:
        assert body["code"] == code, body
    return dict(body)
