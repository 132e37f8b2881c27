"""The SSRF guard on every URL the server fetches: `_url` training records, `_url` classify
records, `/v1/classify/` `image_url`, task webhooks.

Real servers on loopback: an "internal service" on 127.0.0.2 and on [::1] that must never
receive a request, and an allowed host (127.0.0.1, in ``url_allow_hosts``) serving an image
and redirects, so that redirects into the inside are exercised too."""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.api.helpers import assert_error
from tests.hardening.servers import Server, http_server, image_and_redirects, secret
from tests.helpers import png_bytes, wait_training
from tests.inprocess import AppClient
from vize.config import Settings

ALLOWED = "127.0.0.1"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    settings.url_allow_hosts = [ALLOWED]
    return settings


@pytest.fixture
def net() -> Iterator[dict[str, Server]]:
    with (
        http_server(image_and_redirects(png_bytes(7)), ALLOWED) as allowed,
        http_server(secret, "127.0.0.2") as inside4,
        http_server(secret, "::1") as inside6,
    ):
        yield {"allowed": allowed, "inside4": inside4, "inside6": inside6}


def inside_urls(net: dict[str, Server]) -> list[str]:
    """Every way we know to name the inside: loopback, private, link-local, IPv6-local,
    numeric tricks, names resolving inward, other schemes."""
    p4 = net["inside4"].url.rsplit(":", 1)[1]
    v6 = net["inside6"].url
    return [
        f"http://127.0.0.2:{p4}/secret", f"http://localhost:{p4}/", f"http://LocalHost:{p4}/",
        f"{v6}/secret", f"http://[::ffff:127.0.0.2]:{p4}/", f"http://[::ffff:7f00:2]:{p4}/",
        f"http://2130706434:{p4}/", f"http://0x7f000002:{p4}/", f"http://127.2:{p4}/",
        f"http://0177.0.0.2:{p4}/", f"http://0.0.0.0:{p4}/", f"http://0:{p4}/",
        f"http://{ALLOWED}:1@127.0.0.2:{p4}/",  # userinfo dressed as the allowed host
        f"https://127.0.0.2:{p4}/", "http://169.254.169.254/latest/meta-data/",
        "http://[fe80::1]/", "http://[fc00::1]/", "http://[fd12:3456::1]/", "http://[::]/",
        "http://10.0.0.1/", "http://172.16.0.1/", "http://192.168.0.1/", "http://100.64.0.1/",
        "http://224.0.0.1/", "http://[64:ff9b::7f00:2]/", "http://[2002:7f00:2::]/",
        "file:///etc/passwd", f"ftp://127.0.0.2:{p4}/", f"gopher://127.0.0.2:{p4}/_GET%20/",
        f"dict://127.0.0.2:{p4}/", "data:image/png;base64,AAAA", f"//127.0.0.2:{p4}/", "http:///x",
    ]  # fmt: skip


def redirect_urls(net: dict[str, Server]) -> list[str]:
    """The allowed host answering 302 to each inside address (once, and via itself)."""
    hop = net["allowed"].url + "/to?"
    urls = [hop + u for u in inside_urls(net) if not u.startswith(("//", "http:///"))]
    return [*urls, hop + hop + f"http://127.0.0.2:{net['inside4'].url.rsplit(':', 1)[1]}/"]


def refusals(url: str) -> set[str]:
    """The error codes acceptable for ``url``: refused, except for redirects whose Location
    httpx itself cannot parse (it fails before the guard, so nothing is fetched either)."""
    target = url.split("/to?")[-1]
    if "/to?" in url and target.startswith(("http://0177.", "data:")):
        return {"url_refused", "url_unreachable"}
    return {"url_refused"}


def assert_nothing_inside(net: dict[str, Server]) -> None:
    assert net["inside4"].seen == [] and net["inside6"].seen == []


def test_training_image_urls(client: AppClient, alice: dict, net: dict[str, Server]) -> None:
    h = alice["headers"]
    urls = inside_urls(net) + redirect_urls(net)
    assert len(urls) > 60
    for start in range(0, len(urls), 100):  # the batch takes up to 100 records
        records = [{"_url": u} for u in urls[start : start + 100]]
        r = client.post("/v2/training-image/", headers=h, json={"records": records})
        assert r.status_code == 200, r.text
        for url, rec in zip(urls[start:], r.json()["records"], strict=False):
            assert rec["_status"]["code"] == 400, (url, rec)
            assert rec["_status"]["error"] in refusals(url), (url, rec)
    assert_nothing_inside(net)
    # The control: the allowed host itself, directly and through its own redirect, works.
    ok = [{"_url": net["allowed"].url + "/img.png"},
          {"_url": net["allowed"].url + "/to?" + net["allowed"].url + "/img.png"}]  # fmt: skip
    r = client.post("/v2/training-image/", headers=h, json={"records": ok})
    assert [rec["_status"]["code"] for rec in r.json()["records"]] == [201, 200]
    assert client.get("/v2/training-image/", headers=h).json()["count"] == 1


def test_classify_urls_and_webhooks(trained: Any, net: dict[str, Server]) -> None:
    client, alice, task_id = trained
    h = alice["headers"]
    urls = inside_urls(net) + redirect_urls(net)
    for start in range(0, len(urls), 10):
        batch = urls[start : start + 10]
        body = {"task_id": task_id, "records": [{"_url": u} for u in batch]}
        r = client.post("/v2/classify", headers=h, json=body)
        assert r.status_code == 200, r.text
        for url, rec in zip(batch, r.json()["records"], strict=True):
            assert rec["_status"]["code"] == 400, (url, rec)
            assert rec["_status"]["error"] in refusals(url), (url, rec)
    for url in urls:
        r = client.post("/v1/classify/", headers=h, data={"task": task_id, "image_url": url})
        assert_error(r, 400)
        assert r.json()["code"] in refusals(url), (url, r.json())
    assert_nothing_inside(net)
    ok = {"_url": net["allowed"].url + "/img.png"}
    r = client.post("/v2/classify", headers=h, json={"task_id": task_id, "records": [ok]})
    [rec] = r.json()["records"]
    assert rec["_status"]["code"] == 200 and "best_label" in rec
    assert client.get("/v2/usage/", headers=h).json()["today"] == 1  # refused URLs are not billed
    # A webhook pointing inside is accepted as a setting but never called.
    hook = net["inside4"].url + "/hook"
    r = client.patch(f"/v2/task/{task_id}/", headers=h, json={"webhook_url": hook})
    assert r.status_code == 200, r.text
    assert client.post(f"/v2/task/{task_id}/train/", headers=h).status_code == 202
    assert wait_training(client, h, task_id)["state"] == "succeeded"
    assert_nothing_inside(net)


def test_a_trickling_url_is_cut_off_at_the_timeout(
    client: AppClient, alice: dict, settings: Settings
) -> None:
    """A server sending a byte now and then never trips a per-read timeout: the fetch has one
    deadline (VIZE_URL_FETCH_TIMEOUT) for everything."""
    settings.url_fetch_timeout = 1.0
    png = png_bytes(8)
    with http_server(lambda path: (200, {"Content-Type": "image/png"}, png), drip=0.1) as slow:
        started = time.monotonic()
        r = client.post("/v2/training-image/", headers=alice["headers"],
                        json={"records": [{"_url": slow.url + "/img.png"}]})  # fmt: skip
        took = time.monotonic() - started
    status = r.json()["records"][0]["_status"]
    assert (status["code"], status["error"]) == (400, "url_unreachable"), status
    assert "longer than 1 s" in status["text"] and took < 2.5, (status, took)
    assert len(png) * 0.1 > 5  # the whole body would have taken this long


def test_slow_urls_do_not_hold_the_inference_pool(trained: Any, settings: Settings) -> None:
    """As many `_url` requests as the inference pool has threads, all waiting on a remote
    server that does not answer yet: a `_base64` request is still classified meanwhile (the
    fetches happen before the request enters the pool)."""
    client, alice, task_id = trained
    h = alice["headers"]
    release, png = threading.Event(), png_bytes(9)

    def held(path: str) -> tuple[int, dict[str, str], bytes]:
        release.wait(20)
        return 200, {"Content-Type": "image/png"}, png

    n = settings.inference_threads
    with http_server(held, ALLOWED) as slow, ThreadPoolExecutor(n) as pool:
        url_body = {"task_id": task_id, "records": [{"_url": slow.url + "/img.png"}]}
        waiting = [pool.submit(client.post, "/v2/classify", headers=h, json=url_body)
                   for _ in range(n)]  # fmt: skip
        deadline = time.monotonic() + 30
        while len(slow.seen) < n:  # every one of them is at the remote server now
            assert time.monotonic() < deadline, slow.seen
            time.sleep(0.01)
        b64 = base64.b64encode(png_bytes(10)).decode()
        r = client.post("/v2/classify", headers=h,
                        json={"task_id": task_id, "records": [{"_base64": b64}]})  # fmt: skip
        assert r.status_code == 200 and r.json()["records"][0]["_status"]["code"] == 200
        assert not any(f.done() for f in waiting)  # answered while they still wait
        release.set()
        for future in waiting:
            rec = future.result(60).json()["records"][0]
            assert rec["_status"]["code"] == 200, rec
