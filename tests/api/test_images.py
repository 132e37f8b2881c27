"""/v2/training-image/: multipart intake and its checks, dedupe, storage, filters, labels."""

from __future__ import annotations

import base64
import hashlib
import io
import struct
import zlib
from pathlib import Path

import pytest
from fastapi import FastAPI
from PIL import Image
from sqlalchemy import event
from sqlalchemy.orm import Session

from tests.api.helpers import (
    assert_error,
    create_label,
    create_task,
    image_bytes,
    upload,
    upload_ok,
)
from tests.helpers import png_bytes, token_user
from tests.inprocess import AppClient, app_client
from vize.api.deps import AppState
from vize.app import create_app
from vize.config import Settings
from vize.db.tables import Image as ImageRow
from vize.services import images as images_service
from vize.services.workspaces import default_workspace

IMAGE_FIELDS = {
    "id", "img_path", "thumb_img_path", "img_width", "img_height", "file_name", "content_type",
    "labels", "meta_data", "test_image", "created",
}  # fmt: skip


@pytest.mark.parametrize(
    ("fmt", "ctype"), [("JPEG", "image/jpeg"), ("PNG", "image/png"), ("WEBP", "image/webp")]
)
def test_accepted_formats(client: AppClient, alice: dict, fmt: str, ctype: str) -> None:
    data = image_bytes(fmt, size=(40, 30))
    r = upload(client, alice["headers"], data, name=f"photo.{fmt.lower()}", ctype=ctype)
    assert r.status_code == 201, r.text
    img = r.json()
    assert set(img) >= IMAGE_FIELDS
    assert (img["img_width"], img["img_height"], img["content_type"]) == (40, 30, ctype)
    assert img["file_name"] == f"photo.{fmt.lower()}"
    assert (img["labels"], img["meta_data"], img["test_image"]) == ([], {}, False)
    served = client.get(img["img_path"], headers=alice["headers"])
    assert served.status_code == 200 and served.content == data
    assert served.headers["content-type"] == ctype


def test_exif_orientation_is_applied(client: AppClient, alice: dict) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display": the stored 40x30 shows as 30x40
    r = upload(
        client, alice["headers"], image_bytes("JPEG", (40, 30), exif=exif), ctype="image/jpeg"
    )
    assert r.status_code == 201, r.text
    assert (r.json()["img_width"], r.json()["img_height"]) == (30, 40)
    thumb = client.get(r.json()["thumb_img_path"], headers=alice["headers"])
    assert thumb.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(thumb.content)).size == (30, 40)


def test_multi_picture_jpeg_from_cameras_is_a_jpeg(client: AppClient, alice: dict) -> None:
    out = io.BytesIO()
    first, second = Image.new("RGB", (24, 16), "red"), Image.new("RGB", (24, 16), "blue")
    first.save(out, "MPO", save_all=True, append_images=[second])
    assert Image.open(io.BytesIO(out.getvalue())).format == "MPO"
    r = upload(client, alice["headers"], out.getvalue(), name="phone.jpg", ctype="image/jpeg")
    assert r.status_code == 201, r.text
    assert r.json()["content_type"] == "image/jpeg"


@pytest.mark.parametrize(
    ("mode", "extra"), [("P", {"transparency": 0}), ("LA", {}), ("I;16", {}), ("1", {}), ("L", {})]
)
def test_unusual_pixel_modes_are_normalised(
    client: AppClient, alice: dict, mode: str, extra: dict
) -> None:
    out = io.BytesIO()
    Image.new(mode, (20, 10)).save(out, "PNG", **extra)
    r = upload(client, alice["headers"], out.getvalue())
    assert r.status_code == 201, r.text
    thumb = client.get(r.json()["thumb_img_path"], headers=alice["headers"]).content
    assert Image.open(io.BytesIO(thumb)).mode == "RGB"


def test_larger_than_10_mb_is_413(client: AppClient, alice: dict) -> None:
    data = png_bytes(1) + b"\0" * (10 * 1024 * 1024)
    assert_error(upload(client, alice["headers"], data), 413, "too_large")


def _png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` pixels (a decompression bomb)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_decompression_bomb_is_413(client: AppClient, alice: dict) -> None:
    r = upload(client, alice["headers"], _png_declaring(20000, 20000))
    assert_error(r, 413, "too_many_pixels")


def test_configured_pixel_limit_is_413(client: AppClient, alice: dict, settings: Settings) -> None:
    settings.max_image_pixels = 50 * 50  # the running app reads its settings per request
    assert upload(client, alice["headers"], png_bytes(1, size=(50, 50))).status_code == 201
    r = upload(client, alice["headers"], png_bytes(2, size=(51, 50)))
    assert_error(r, 413, "too_many_pixels")


def _gif() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8)).save(out, "GIF")
    return out.getvalue()


@pytest.mark.parametrize(
    ("data", "status", "code"),
    [
        (b"just some text, not an image\n", 415, "unsupported_image_type"),
        (_gif(), 415, "unsupported_image_type"),
        (image_bytes("BMP"), 415, "unsupported_image_type"),
        (image_bytes("TIFF"), 415, "unsupported_image_type"),
        (png_bytes(3, size=(64, 64))[:-30], 400, "corrupt_image"),
        (image_bytes("JPEG", size=(64, 64))[:300], 400, "corrupt_image"),
        (image_bytes("JPEG")[:10], 400, "corrupt_image"),
        (png_bytes(4)[:20], 400, "corrupt_image"),
        (b"", 400, "empty_image"),
    ],
    ids=["text", "gif", "bmp", "tiff", "png-cut", "jpeg-cut", "jpeg-head", "png-head", "empty"],
)
def test_refused_files(client: AppClient, alice: dict, data: bytes, status: int, code: str) -> None:
    assert_error(upload(client, alice["headers"], data), status, code)
    assert client.get("/v2/training-image/", headers=alice["headers"]).json()["count"] == 0


def test_missing_file_field(client: AppClient, alice: dict) -> None:
    h = alice["headers"]
    assert_error(client.post("/v2/training-image/", headers=h, data={"x": "1"}), 400, "required")
    r = client.post("/v2/training-image/", headers=h, data={"img_path": "not a file"})
    assert_error(r, 400, "required")


def test_same_content_twice_answers_200_with_the_same_id(client: AppClient, alice: dict) -> None:
    h = alice["headers"]
    first = upload_ok(client, h, 7)
    label = create_label(client, h)
    r = upload(client, h, png_bytes(7), name="copy.png", labels=label["id"])
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["id"] == first["id"] and body["code"] == "already_exists"
    assert "already exists" in body["detail"] and first["id"] in body["detail"]
    # The duplicate's labels are added to the existing image (a re-import labels it).
    assert [lbl["id"] for lbl in body["labels"]] == [label["id"]]
    assert client.get("/v2/training-image/", headers=h).json()["count"] == 1


def _files(settings: Settings, folder: str) -> list[Path]:
    return [p for p in (settings.blob_dir / folder).rglob("*") if p.is_file()]


def test_files_are_content_addressed_per_workspace(
    client: AppClient, alice: dict, bob: dict, settings: Settings
) -> None:
    """Equal bytes in two workspaces are two files: deleting alice's cannot touch bob's (a file
    shared across workspaces could be removed just before the other's upload committed a row)."""
    data = png_bytes(11)
    sha = hashlib.sha256(data).hexdigest()
    a = upload(client, alice["headers"], data).json()
    b = upload(client, bob["headers"], data)
    assert b.status_code == 201, b.text  # dedupe is per workspace: bob gets his own row
    b = b.json()
    assert a["id"] != b["id"] and a["sha256"] == b["sha256"] == sha
    assert _keys(settings, "images") == sorted(
        f"images/{default_workspace(user['id'])}/{sha[:2]}/{sha}" for user in (alice, bob)
    )
    assert _keys(settings, "thumbs") == sorted(
        f"thumbs/{default_workspace(user['id'])}/{sha[:2]}/{sha}.jpg" for user in (alice, bob)
    )
    assert [p.read_bytes() for p in _files(settings, "images")] == [data, data]
    assert (
        client.delete(f"/v2/training-image/{a['id']}", headers=alice["headers"]).status_code == 204
    )
    assert [p.read_bytes() for p in _files(settings, "images")] == [data]
    assert client.get(b["img_path"], headers=bob["headers"]).content == data
    assert client.get(b["thumb_img_path"], headers=bob["headers"]).status_code == 200
    assert client.delete(f"/v2/training-image/{b['id']}", headers=bob["headers"]).status_code == 204
    assert _files(settings, "images") == [] and _files(settings, "thumbs") == []


def _keys(settings: Settings, folder: str) -> list[str]:
    return sorted(p.relative_to(settings.blob_dir).as_posix() for p in _files(settings, folder))


def test_files_removed_before_the_commit_are_put_back(settings: Settings) -> None:
    """A remover of the same key (the same user's failed upload of the same bytes, the sweep)
    asking after an upload wrote its files but before its row is there deletes them; the
    upload, multipart or JSON record, writes them again once its row is committed."""
    removed: list[str] = []

    def remove_at_insert(app: FastAPI, state: AppState) -> None:
        @event.listens_for(state.sessions, "before_flush")
        def remove(session: Session, *_: object) -> None:
            for image in [o for o in session.new if isinstance(o, ImageRow)]:
                for key in (image.blob_key, image.thumb_key):
                    if images_service.remove_blob(state.sessions, state.blobs, key):
                        removed.append(key)

    with app_client(create_app(settings, extensions=[remove_at_insert])) as client:
        h = token_user(settings, "alice")["headers"]
        one = upload(client, h, png_bytes(21))
        record = {"_base64": base64.b64encode(png_bytes(22)).decode()}
        batch = client.post("/v2/training-image/", headers=h, json={"records": [record]})
        two = batch.json()["records"][0]
        for r, image in ((one, one.json()), (batch, two)):
            assert r.status_code in (200, 201) and "id" in image, r.text
        assert len(removed) == 4  # both files of both uploads were gone at the insert
        for image, data in ((one.json(), png_bytes(21)), (two, png_bytes(22))):
            assert client.get(image["img_path"], headers=h).content == data
            assert client.get(image["thumb_img_path"], headers=h).status_code == 200
    assert len(_files(settings, "images")) == len(_files(settings, "thumbs")) == 2


def test_upload_with_labels_meta_and_test_flag(client: AppClient, alice: dict) -> None:
    h = alice["headers"]
    l1, l2 = create_label(client, h, name="a"), create_label(client, h, name="b")
    r = upload(client, h, png_bytes(1), labels=f"{l1['id']},{l2['id']}",
               meta_data='{"source": "camera", "n": 2}', test_image="true")  # fmt: skip
    assert r.status_code == 201, r.text
    img = r.json()
    assert [lbl["name"] for lbl in img["labels"]] == ["a", "b"]
    assert img["meta_data"] == {"source": "camera", "n": 2} and img["test_image"] is True
    r = client.post(
        "/v2/training-image/", headers=h,
        files=[("img_path", ("x.png", png_bytes(2), "image/png"))],
        data={"labels": [l1["id"], l2["id"]]},
    )  # fmt: skip
    assert len(r.json()["labels"]) == 2, r.text
    r = upload(client, h, png_bytes(3), labels=f'["{l2["id"]}"]')
    assert [lbl["id"] for lbl in r.json()["labels"]] == [l2["id"]]


@pytest.mark.parametrize(
    ("fields", "status", "code"),
    [
        ({"meta_data": "[1, 2]"}, 400, "invalid_meta_data"),
        ({"meta_data": "{not json"}, 400, "invalid_meta_data"),
        ({"meta_data": '{"x": NaN}'}, 400, "invalid_meta_data"),
        ({"labels": "[broken"}, 400, "invalid"),
        ({"labels": "0a8c8186-aee8-47c8-9eaf-348103feb14d"}, 404, "not_found"),
    ],
)
def test_upload_rejects_bad_fields(
    client: AppClient, alice: dict, fields: dict, status: int, code: str
) -> None:
    assert_error(upload(client, alice["headers"], png_bytes(1), **fields), status, code)
    assert client.get("/v2/training-image/", headers=alice["headers"]).json()["count"] == 0


def test_retrieve_patch_and_delete(client: AppClient, alice: dict) -> None:
    h = alice["headers"]
    img = upload_ok(client, h, 1)
    assert client.get(f"/v2/training-image/{img['id']}/", headers=h).json()["id"] == img["id"]
    r = client.patch(f"/v2/training-image/{img['id']}", headers=h,
                     json={"meta_data": {"k": [1, "\u0000x"]}, "test_image": True})  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.json()["meta_data"] == {"k": [1, "\u0000x"]} and r.json()["test_image"] is True
    r = client.put(f"/v2/training-image/{img['id']}/", headers=h, data={"test_image": "false"})
    assert r.json()["test_image"] is False and r.json()["meta_data"] == {"k": [1, "\u0000x"]}
    assert_error(
        client.patch(f"/v2/training-image/{img['id']}", headers=h, json={"meta_data": 5}),
        400, "invalid_meta_data",
    )  # fmt: skip
    assert client.delete(f"/v2/training-image/{img['id']}/", headers=h).status_code == 204
    for path in (f"/v2/training-image/{img['id']}", img["img_path"], img["thumb_img_path"]):
        assert_error(client.get(path, headers=h), 404, "not_found")


def test_add_and_remove_label(client: AppClient, alice: dict) -> None:
    h = alice["headers"]
    img, label = upload_ok(client, h, 1), create_label(client, h)
    url = f"/v2/training-image/{img['id']}"
    r = client.post(f"{url}/add-label/", headers=h, data={"label_id": label["id"]})
    assert r.status_code == 200 and [lbl["id"] for lbl in r.json()["labels"]] == [label["id"]]
    r = client.post(f"{url}/add-label", headers=h, json={"label_id": label["id"]})
    assert len(r.json()["labels"]) == 1
    r = client.post(f"{url}/remove-label/", headers=h, json={"label_id": label["id"]})
    assert r.status_code == 200 and r.json()["labels"] == []
    assert_error(client.post(f"{url}/add-label", headers=h, json={}), 400, "required")
    r = client.post(f"{url}/add-label", headers=h, json={"label_id": "nope"})
    assert_error(r, 404, "not_found")


def test_list_filters(client: AppClient, alice: dict) -> None:
    h = alice["headers"]
    # Tagging: an image may carry cat and dog (a categorization task refuses the second).
    task, other_task = create_task(client, h, type="multi_label"), create_task(client, h)
    cat = create_label(client, h, name="cat", task=task["id"])
    dog = create_label(client, h, name="dog", task=task["id"])
    car = create_label(client, h, name="car", task=other_task["id"])
    i_cat = upload_ok(client, h, 1, labels=cat["id"], test_image="1")
    i_both = upload_ok(client, h, 2, labels=f"{cat['id']},{dog['id']}")
    i_car = upload_ok(client, h, 3, labels=car["id"])
    i_none = upload_ok(client, h, 4)

    def ids(query: str) -> set[str]:
        page = client.get(f"/v2/training-image/?{query}", headers=h)
        assert page.status_code == 200, page.text
        return {img["id"] for img in page.json()["results"]}

    assert ids("") == {i_cat["id"], i_both["id"], i_car["id"], i_none["id"]}
    assert ids(f"task={task['id']}") == {i_cat["id"], i_both["id"]}
    assert ids(f"task={other_task['id']}") == {i_car["id"]}
    assert ids(f"label={cat['id']}") == {i_cat["id"], i_both["id"]}
    assert ids(f"labels={cat['id']},{dog['id']}") == {i_both["id"]}
    assert ids(f"labels={cat['id']}&labels={dog['id']}") == {i_both["id"]}
    assert ids("test=true") == {i_cat["id"]}
    assert ids("test=false") == {i_both["id"], i_car["id"], i_none["id"]}
    assert ids("search=img3") == {i_car["id"]}
    assert ids(f"search={i_none['id']}") == {i_none["id"]}
    assert ids("search=%25") == set()
    assert_error(client.get("/v2/training-image/?test=maybe", headers=h), 422, "invalid")
    assert_error(client.get("/v2/training-image/?label=nope", headers=h), 404, "not_found")


def test_list_paginates(client: AppClient, alice: dict) -> None:
    h = alice["headers"]
    ids = [upload_ok(client, h, seed)["id"] for seed in range(5)]
    page = client.get("/v2/training-image/?page_size=2&page=3", headers=h).json()
    assert page["count"] == 5 and len(page["results"]) == 1 and page["next"] is None
    seen: list[str] = []
    url: str | None = "/v2/training-image/?page_size=2"
    while url:
        body = client.get(url, headers=h).json()
        seen += [img["id"] for img in body["results"]]
        url = body["next"]
    assert sorted(seen) == sorted(ids) and seen == list(reversed(ids))


def test_files_are_served_to_the_owner_only(client: AppClient, alice: dict, bob: dict) -> None:
    img = upload_ok(client, alice["headers"], 5)
    for signed in (img["img_path"], img["thumb_img_path"]):
        # The links the API hands out are signed: they work by themselves (tests/compat);
        # without their signature, or with a wrong one, the files are the owner's only.
        for path in (signed.split("?")[0], signed.split("?")[0] + "?sig=forged"):
            mine = client.get(path, headers=alice["headers"])
            assert mine.status_code == 200 and mine.content
            assert mine.headers["cache-control"].startswith("private")
            assert_error(client.get(path, headers=bob["headers"]), 404, "not_found")
            assert_error(client.get(path), 401, "not_authenticated")
