"""Training images through the SDK: single and bulk upload, dedupe, retries, listing."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image as PILImage

from tests.client.conftest import BASE_URL
from tests.client.httpserver import serve
from tests.client.transport import FlakyTransport, InProcessTransport
from tests.helpers import png_bytes
from vize.client import (
    AuthError,
    Conflict,
    Image,
    ServerError,
    UnsupportedMedia,
    UploadItem,
    ValidationError,
    VizeClient,
    VizeConnectionError,
)


def _is_upload(request: httpx.Request) -> bool:
    return request.method == "POST" and request.url.path.startswith("/v2/training-image")


def test_upload_path_bytes_and_pil(vize: VizeClient, tmp_path: Path) -> None:
    task = vize.tasks.create("t")
    cat = vize.labels.create("cat", task)
    path = tmp_path / "cat.png"
    path.write_bytes(png_bytes(1))
    from_path = vize.images.upload(path, [cat], meta_data={"source": "disk"}, test_image=True)
    assert isinstance(from_path, Image) and not from_path.duplicate
    assert (from_path.file_name, from_path.img_width, from_path.content_type) == (
        "cat.png",
        32,
        "image/png",
    )
    assert from_path.meta_data == {"source": "disk"} and from_path.test_image
    assert [lbl.id for lbl in from_path.labels] == [cat.id]
    from_bytes = vize.images.upload(png_bytes(2), [cat.id], file_name="two.png")
    assert from_bytes.file_name == "two.png" and not from_bytes.test_image
    pil = PILImage.new("RGB", (40, 30), (10, 200, 30))
    from_pil = vize.images.upload(pil)
    assert (from_pil.img_width, from_pil.img_height, from_pil.labels) == (40, 30, [])
    assert vize.images.list(task=task).count == 2
    assert vize.images.download(from_bytes) == png_bytes(2)
    assert vize.images.download(from_bytes, thumbnail=True)[:2] == b"\xff\xd8"  # JPEG


def test_gif_is_converted_to_png(vize: VizeClient, tmp_path: Path) -> None:
    # The server stores JPEG, PNG and WebP only; the SDK converts the rest losslessly.
    path = tmp_path / "anim.gif"
    PILImage.new("RGB", (16, 16), (200, 0, 0)).save(path, "GIF")
    image = vize.images.upload(path)
    assert (image.content_type, image.file_name) == ("image/png", "anim.png")


def test_not_an_image_is_refused_with_type(vize: VizeClient) -> None:
    with pytest.raises((UnsupportedMedia, ValidationError)) as info:
        vize.images.upload(b"definitely not an image")
    assert info.value.status in (400, 415)


def test_duplicate_returns_existing_image_and_merges_labels(vize: VizeClient) -> None:
    task = vize.tasks.create("t", type="multi_label")  # tags: an image may have both
    cat, pet = vize.labels.create("cat", task), vize.labels.create("pet", task)
    first = vize.images.upload(png_bytes(7), [cat])
    again = vize.images.upload(png_bytes(7), [pet])
    assert again.duplicate and again.id == first.id
    assert sorted(lbl.name for lbl in again.labels) == ["cat", "pet"]
    assert vize.images.list().count == 1


def test_image_get_update_labels_filters_delete(vize: VizeClient) -> None:
    task = vize.tasks.create("t")
    cat, dog = vize.labels.create("cat", task), vize.labels.create("dog", task)
    one = vize.images.upload(png_bytes(1), [cat], file_name="one.png")
    two = vize.images.upload(png_bytes(2), [dog])
    assert vize.images.get(one.id).file_name == "one.png"
    assert vize.images.update(one, meta_data={"k": 1}, test_image=True).meta_data == {"k": 1}
    assert [i.id for i in vize.images.iter(test=True)] == [one.id]
    assert [i.id for i in vize.images.iter(label=dog)] == [two.id]
    assert [i.id for i in vize.images.iter(search="one")] == [one.id]
    with pytest.raises(Conflict) as refused:  # a categorization: one label per image
        vize.images.add_label(two, cat)
    assert refused.value.code == "label_conflict"
    assert [lbl.name for lbl in vize.images.add_label(two, cat, move=True).labels] == ["cat"]
    assert [lbl.name for lbl in vize.images.remove_label(two, dog).labels] == ["cat"]
    assert vize.images.list(label=cat).count == 2
    vize.images.delete(one)
    assert [i.id for i in vize.images.iter(task=task)] == [two.id]


def test_upload_many_in_parallel(vize: VizeClient, tmp_path: Path) -> None:
    task = vize.tasks.create("bulk")
    cat = vize.labels.create("cat", task)
    paths = []
    for i in range(12):
        paths.append(tmp_path / f"{i}.png")
        paths[-1].write_bytes(png_bytes(i + 10))
    items: list[Any] = [
        *paths,
        png_bytes(10),
        b"garbage",
        UploadItem(png_bytes(99), labels=[], test_image=True),
    ]
    seen: list[str] = []
    results = vize.images.upload_many(
        items, labels=[cat], workers=4, on_result=lambda r: seen.append(r.status)
    )
    assert len(results) == len(items) == len(seen)
    assert [r.source for r in results[:12]] == [str(p) for p in paths]  # input order
    assert [r.status for r in results] == ["created"] * 12 + ["exists", "failed", "created"]
    assert results[13].error is not None and results[13].image is None
    assert results[14].image is not None and results[14].image.test_image
    assert results[14].image.labels == []  # its own item's labels, not the default
    assert vize.images.list(task=task).count == 12


def test_upload_many_stops_on_auth_error(
    transport: InProcessTransport, alice: dict[str, Any]
) -> None:
    with VizeClient(BASE_URL, "bad-token", transport=transport) as bad, pytest.raises(AuthError):
        bad.images.upload_many([png_bytes(i) for i in range(20)], workers=2)
    # Cancelled early: far fewer than 20 requests went out.
    assert len([r for r in transport.requests if _is_upload(r)]) < 20


@pytest.mark.parametrize(
    "failures", [["connect"], ["503", "timeout"], ["500-after"], ["timeout-after", "connect"]]
)
def test_upload_retries_transient_failures(
    transport: InProcessTransport, alice: dict[str, Any], failures: list[str]
) -> None:
    flaky = FlakyTransport(transport, list(failures), match=_is_upload)
    with VizeClient(BASE_URL, alice["token"], transport=flaky, backoff=0.001) as sdk:
        image = sdk.images.upload(png_bytes(3))
        assert flaky.failed == len(failures) and flaky.calls == len(failures) + 1
        # The server may have stored it before the answer was lost: then the retry finds it.
        assert image.duplicate == any(f.endswith("-after") for f in failures)
        assert sdk.images.list().count == 1


def test_upload_gives_up_after_retries(
    transport: InProcessTransport, alice: dict[str, Any]
) -> None:
    flaky = FlakyTransport(transport, ["503"] * 3, match=_is_upload)
    with (
        VizeClient(BASE_URL, alice["token"], transport=flaky, retries=2, backoff=0.001) as sdk,
        pytest.raises(ServerError) as info,
    ):
        sdk.images.upload(png_bytes(3))
    assert info.value.status == 503 and flaky.calls == 3
    flaky = FlakyTransport(transport, ["connect"] * 5, match=_is_upload)
    with (
        VizeClient(BASE_URL, alice["token"], transport=flaky, retries=1, backoff=0.001) as sdk,
        pytest.raises(VizeConnectionError),
    ):
        sdk.images.upload(png_bytes(3))
    assert flaky.calls == 2


def test_unsafe_post_is_not_repeated_after_possible_success(
    transport: InProcessTransport, alice: dict[str, Any]
) -> None:
    is_create = lambda r: r.method == "POST" and r.url.path == "/v2/task/"  # noqa: E731
    flaky = FlakyTransport(transport, ["500-after"], match=is_create)
    with VizeClient(BASE_URL, alice["token"], transport=flaky, backoff=0.001) as sdk:
        with pytest.raises(ServerError):
            sdk.tasks.create("once")
        assert flaky.calls == 1 and sdk.tasks.list().count == 1  # not created twice
        flaky.failures = ["connect", "503"]  # never reached the app: safe to repeat
        sdk.tasks.create("twice")
        assert flaky.calls == 4 and sdk.tasks.list().count == 2


def test_delete_whose_answer_was_lost(transport: InProcessTransport, alice: dict[str, Any]) -> None:
    is_delete = lambda r: r.method == "DELETE"  # noqa: E731
    flaky = FlakyTransport(transport, ["timeout-after"], match=is_delete)
    with VizeClient(BASE_URL, alice["token"], transport=flaky, backoff=0.001) as sdk:
        task = sdk.tasks.create("gone")
        sdk.tasks.delete(task)  # the retry gets 404: the first attempt did it
        assert flaky.calls == 2 and sdk.tasks.list().count == 0


def _png_server(method: str, path: str) -> tuple[int, dict[str, str], bytes]:
    if path == "/cat.png":
        return 200, {"Content-Type": "image/png"}, png_bytes(42)
    return 404, {}, b""


@pytest.fixture
def settings(settings: Any) -> Any:
    # Only the URL-upload test fetches from a local server; others never send URLs.
    return settings.model_copy(update={"url_allow_hosts": ["127.0.0.1"]})


def test_upload_from_url(vize: VizeClient) -> None:
    task = vize.tasks.create("t")
    cat = vize.labels.create("cat", task)
    with serve(_png_server) as (url, seen):
        image = vize.images.upload(f"{url}/cat.png", [cat], meta_data={"from": "web"})
        again = vize.images.upload(f"{url}/cat.png")
        with pytest.raises(ValidationError):
            vize.images.upload(f"{url}/missing.png")
    assert seen[0] == "GET /cat.png"
    assert not image.duplicate and again.duplicate and again.id == image.id
    assert image.meta_data == {"from": "web"} and [lbl.id for lbl in image.labels] == [cat.id]
    assert vize.images.download(image) == png_bytes(42)


def test_pil_rgba_and_bytes_roundtrip(vize: VizeClient) -> None:
    img = PILImage.new("RGBA", (8, 8), (1, 2, 3, 128))
    uploaded = vize.images.upload(img)
    stored = PILImage.open(io.BytesIO(vize.images.download(uploaded)))
    assert stored.format == "PNG" and stored.size == (8, 8)
