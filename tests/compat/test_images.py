"""Training images as Ximilar's client handles them: JSON base64 upload, the duplicate
reply, labels with values, batch changes, filters and signed image links."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from tests.api.helpers import assert_error
from tests.compat.ximilar import ALREADY_INSERTED, P, Ximilar
from tests.helpers import png_bytes
from tests.inprocess import AppClient


@pytest.fixture
def x(client: AppClient, alice: dict) -> Ximilar:
    return Ximilar(client, alice["token"])


def b64(seed: int) -> str:
    return base64.b64encode(png_bytes(seed)).decode()


def uploaded(x: Ximilar, seed: int, **kw: Any) -> dict[str, Any]:
    r = x.upload(b64(seed), **kw)
    assert r.status_code == 201, r.text
    return dict(r.json())


def label(x: Ximilar, name: str, **fields: Any) -> dict[str, Any]:
    body = {"name": name, "type": "category", "description": None, "output_name": None}
    r = x.post(f"{P}/label/", {**body, **fields})
    assert r.status_code == 201, r.text
    return dict(r.json())


@pytest.mark.parametrize("prefix", ["/recognition/v2", "/v2"])
@pytest.mark.parametrize("slash", ["/", ""])
def test_upload_json_base64_as_the_client_sends_it(x: Ximilar, prefix: str, slash: str) -> None:
    # _file and _base64 records go as plain base64; _url and _img_data as a JPEG data URI.
    for seed, data in ((1, b64(1)), (2, "data:image/png;base64," + b64(2))):
        body = {"base64": data, "noresize": True, "test_image": True, "meta_data": {"k": seed}}
        r = x.post(f"{prefix}/training-image{slash}", body)
        assert r.status_code == 201, r.text
        img = r.json()
        # What the client's Image object needs (id, img_path, thumb_img_path) and reads.
        assert img["id"] and img["img_path"] and img["thumb_img_path"]
        assert img["test_image"] is True and img["meta_data"] == {"k": seed}
        assert img["img_width"] == 32 and img["img_height"] == 32
        got = x.client.get(img["img_path"])  # the stored bytes are the sent bytes
        assert got.content == png_bytes(seed)


def test_upload_json_refuses_bad_input_with_a_reason(x: Ximilar) -> None:
    for body, code in (
        ({"base64": "@@not base64"}, "invalid_base64"),
        ({"base64": ""}, "invalid_base64"),
        ({"base64": 5}, "invalid_base64"),
        ({"base64": base64.b64encode(b"not an image").decode()}, None),
        ({"noresize": True}, "required"),
    ):
        r = x.post(f"{P}/training-image/", body)
        err = assert_error(r, r.status_code, code)
        assert 400 <= r.status_code < 500 and "id" not in err
    assert x.get(f"{P}/training-image/").json()["count"] == 0


def test_duplicate_detail_gives_the_client_the_existing_id(x: Ximilar) -> None:
    first = uploaded(x, 3)
    r = x.upload(b64(3))
    assert r.status_code == 200
    body = r.json()
    assert body["code"] == "already_exists" and "already exists" in body["detail"]
    match = ALREADY_INSERTED.search(body["detail"])
    assert match is not None and match.group(1) == first["id"]
    # The client then fetches that image.
    assert x.get(f"{P}/training-image/{match.group(1)}").json()["id"] == first["id"]


def test_labels_added_after_upload_with_and_without_value(x: Ximilar) -> None:
    img = uploaded(x, 4)
    cat, score = label(x, "cat"), label(x, "score")
    r = x.post(f"{P}/training-image/{img['id']}/add-label/", {"label_id": cat["id"]})
    assert r.status_code == 200, r.text
    r = x.post(f"{P}/training-image/{img['id']}/add-label/", {"label_id": score["id"], "value": 2})
    assert r.status_code == 200, r.text
    values = {lbl["id"]: lbl["value"] for lbl in r.json()["labels"]}
    assert values == {cat["id"]: None, score["id"]: 2.0}
    # image.update_label(label, value)
    path = f"{P}/training-image/{img['id']}/update-label/"
    r = x.post(path, {"label_id": score["id"], "value": 0.5})
    assert r.status_code == 200, r.text
    labels = x.get(f"{P}/training-image/{img['id']}").json()["labels"]
    assert {lbl["id"]: lbl["value"] for lbl in labels} == {cat["id"]: None, score["id"]: 0.5}
    assert all(lbl["name"] for lbl in labels)  # image.get_labels() builds Labels from these


def test_update_label_errors(x: Ximilar) -> None:
    img, dog = uploaded(x, 5), label(x, "dog")
    path = f"{P}/training-image/{img['id']}/update-label/"
    assert_error(x.post(path, {"label_id": dog["id"], "value": 1}), 400, "label_not_on_image")
    x.post(f"{P}/training-image/{img['id']}/add-label/", {"label_id": dog["id"]})
    for bad in ("many", True, [1]):
        assert_error(x.post(path, {"label_id": dog["id"], "value": bad}), 400, "invalid_value")
    assert_error(x.post(path, {"value": 1}), 400, "required")


def test_modify_images_set_test_and_set_real(x: Ximilar) -> None:
    a, b = uploaded(x, 6), uploaded(x, 7)
    # image.set_test(True) / image.set_real(True): modify_images([id], test=..., real=...)
    base = {"images": [a["id"]], "labels": [], "labels-add": [], "labels-remove": []}
    r = x.post(f"{P}/training-image/update", {**base, "mark-test": True})
    assert r.status_code == 200 and r.json()["count"] == 1
    r = x.post(f"{P}/training-image/update", {**base, "mark-real": True})
    assert r.status_code == 200
    got = x.get(f"{P}/training-image/{a['id']}").json()
    assert got["test_image"] is True and got["real"] is True
    assert x.get(f"{P}/training-image/{b['id']}").json()["test_image"] is False
    # get_training_images(real=True, test=True) sends ?page=1&real=True&test=true
    listed = x.get(f"{P}/training-image/?page=1&real=True&test=true").json()["results"]
    assert [i["id"] for i in listed] == [a["id"]]
    r = x.post(f"{P}/training-image/update", {**base, "unmark-test": True, "unmark-real": True})
    got = x.get(f"{P}/training-image/{a['id']}").json()
    assert got["test_image"] is False and got["real"] is False


def test_modify_images_labels_by_filter(x: Ximilar) -> None:
    a, b, c = uploaded(x, 8), uploaded(x, 9), uploaded(x, 10)
    old, new = label(x, "old"), label(x, "new")
    for img in (a, b):
        x.post(f"{P}/training-image/{img['id']}/add-label/", {"label_id": old["id"]})
    body = {"images": [], "labels": [old["id"]], "labels-add": [new["id"]],
            "labels-remove": [old["id"]]}  # fmt: skip
    r = x.post(f"{P}/training-image/update", body)
    assert r.status_code == 200 and r.json()["count"] == 2
    with_new = x.get(f"{P}/training-image/?labels={new['id']}").json()["results"]
    assert {i["id"] for i in with_new} == {a["id"], b["id"]}
    assert x.get(f"{P}/training-image/?labels={old['id']}").json()["count"] == 0
    assert x.get(f"{P}/training-image/{c['id']}").json()["labels"] == []


def test_modify_images_errors_change_nothing(x: Ximilar) -> None:
    a = uploaded(x, 11)
    missing = "2b0e3f1c-5d5e-4d6e-9f00-000000000000"
    assert_error(x.post(f"{P}/training-image/update", {"images": []}), 400, "required")
    r = x.post(f"{P}/training-image/update", {"images": [a["id"], missing], "mark-test": True})
    assert_error(r, 404, "not_found")
    r = x.post(f"{P}/training-image/update", {"images": [a["id"]], "mark-test": True,
                                               "unmark-test": True})  # fmt: skip
    assert_error(r, 400, "invalid")
    assert x.get(f"{P}/training-image/{a['id']}").json()["test_image"] is False


def test_not_labels_filter(x: Ximilar) -> None:
    a, b = uploaded(x, 12), uploaded(x, 13)
    cat = label(x, "cat")
    x.post(f"{P}/training-image/{a['id']}/add-label/", {"label_id": cat["id"]})
    # label.get_training_images(not_label=True) / (not_label=False)
    without = x.get(f"{P}/training-image/?not_labels={cat['id']}").json()["results"]
    assert [i["id"] for i in without] == [b["id"]]
    carrying = x.get(f"{P}/training-image/?labels={cat['id']}").json()["results"]
    assert [i["id"] for i in carrying] == [a["id"]]


def test_image_links_work_by_url_alone(client: AppClient, x: Ximilar, bob: dict) -> None:
    img = uploaded(x, 14)
    # image.download(): a plain GET of img_path, no token, no headers.
    for path, thumb in ((img["img_path"], False), (img["thumb_img_path"], True)):
        r = client.get(path)
        assert r.status_code == 200
        assert r.content == png_bytes(14) if not thumb else r.content[:2] == b"\xff\xd8"
        bare = path.split("?")[0]
        assert_error(client.get(bare), 401, "not_authenticated")
        assert_error(client.get(bare + "?sig=" + path.split("sig=")[1][:-3] + "xyz"), 401)
        # The file's signature does not open the thumbnail, nor another image's file.
    other = uploaded(x, 15)
    sig = img["img_path"].split("sig=")[1]
    assert_error(client.get(img["thumb_img_path"].split("?")[0] + "?sig=" + sig), 401)
    assert_error(client.get(other["img_path"].split("?")[0] + "?sig=" + sig), 401)


def test_image_links_expire(
    client: AppClient, x: Ximilar, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import itsdangerous.timed

    from vize.api.signing import ImageLinks

    img = uploaded(x, 16)
    links = ImageLinks(settings.secret_key, settings.image_url_ttl_seconds)
    now = itsdangerous.timed.time.time()
    monkeypatch.setattr(
        itsdangerous.timed.time, "time", lambda: now - settings.image_url_ttl_seconds - 5
    )
    old = links.sign(img["id"], "file")
    monkeypatch.undo()
    fresh = links.sign(img["id"], "file")
    bare = img["img_path"].split("?")[0]
    assert client.get(f"{bare}?sig={fresh}").status_code == 200
    assert_error(client.get(f"{bare}?sig={old}"), 401, "not_authenticated")


def test_meta_data_as_the_client_edits_it(x: Ximilar) -> None:
    img = uploaded(x, 17, meta={"a": 1})
    # image.add_meta_data / clear_meta_data: PUT the whole dict, read meta_data back.
    r = x.put(f"{P}/training-image/{img['id']}", {"meta_data": {"a": 1, "b": 2}})
    assert r.status_code == 200 and r.json()["meta_data"] == {"a": 1, "b": 2}
    r = x.put(f"{P}/training-image/{img['id']}", {"meta_data": {}})
    assert r.status_code == 200 and r.json()["meta_data"] == {}


def test_training_images_pages_as_the_client_walks_them(x: Ximilar) -> None:
    for seed in range(30, 33):
        uploaded(x, seed)
    pages = x.get(f"{P}/training-image/?page=1&page_size=2").json()
    assert pages["count"] == 3 and len(pages["results"]) == 2 and pages["next"]
    assert len(x.all_pages(f"{P}/training-image/?page_size=2")) == 3
    r = x.delete(f"{P}/training-image/{pages['results'][0]['id']}")  # image.remove()
    assert r.status_code == 204
    assert x.get(f"{P}/training-image/").json()["count"] == 2
