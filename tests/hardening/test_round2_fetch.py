"""Issue 12, items 7 and 8: IPv6 forms that embed an inside IPv4 address, and the URL fetch
budget (one deadline per request, a cap on one user's concurrent fetches).

Real servers on loopback (``servers.py``); 127.0.0.1 is the allowed host, 127.0.0.2 an
internal service that must never see a request."""

from __future__ import annotations

import ipaddress
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.hardening.servers import Server, http_server, image_and_redirects, secret
from tests.helpers import png_bytes
from tests.inprocess import AppClient
from vize.config import Settings
from vize.services.fetch import _public

ALLOWED = "127.0.0.1"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    settings.url_allow_hosts = [ALLOWED]
    return settings


@pytest.fixture
def net() -> Iterator[dict[str, Server]]:
    with (
        http_server(image_and_redirects(png_bytes(7)), ALLOWED) as allowed,
        http_server(secret, "127.0.0.2") as inside,
    ):
        yield {"allowed": allowed, "inside": inside}


# 127.0.0.2 (7f00:0002) in every IPv6 form that carries an IPv4 address, and site-local.
EMBEDDED = [
    "64:ff9b:1::7f00:2",  # local-use NAT64 (RFC 8215)
    "64:ff9b:1:ffff::7f00:2",
    "64:ff9b::7f00:2",  # well-known NAT64
    "::ffff:0:7f00:2",  # SIIT, IPv4-translated
    "::7f00:2",  # IPv4-compatible (deprecated)
    "::ffff:7f00:2",  # IPv4-mapped
    "2002:7f00:2::1",  # 6to4
    "2001:0:7f00:2::1",  # Teredo, server 127.0.0.2
    "2001:0:808:808:0:0:80ff:fffd",  # Teredo, obfuscated client 127.0.0.2
    "fec0::1",  # site-local
    "fec0::7f00:2",
    "fe80::1",
    "::",
]


def test_ipv6_forms_embedding_inside_ipv4_are_refused_also_after_redirects(
    client: AppClient, alice: dict[str, Any], net: dict[str, Server]
) -> None:
    port = net["inside"].url.rsplit(":", 1)[1]
    direct = [f"http://[{a}]:{port}/secret" for a in EMBEDDED]
    hop = net["allowed"].url + "/to?"
    urls = direct + [hop + u for u in direct]
    r = client.post(
        "/v2/training-image/",
        headers=alice["headers"],
        json={"records": [{"_url": u} for u in urls]},
    )
    assert r.status_code == 200, r.text
    for url, rec in zip(urls, r.json()["records"], strict=True):
        assert (rec["_status"]["code"], rec["_status"]["error"]) == (400, "url_refused"), url
    assert net["inside"].seen == []
    # The same forms carrying a public IPv4 address (8.8.8.8): only the well-known NAT64
    # prefix and 6to4 are routable; the others are not global unicast at all.
    public = {"64:ff9b::808:808", "2002:808:808::1", "2606:4700::1"}
    refused = {"64:ff9b:1::808:808", "::ffff:0:808:808", "::808:808", "fec0::808:808",
               "2001:0:808:808::1", "2001:db8::1"}  # fmt: skip
    for text in public | refused:
        assert _public(ipaddress.ip_address(text)) == (text in public), text


def test_one_fetch_deadline_per_request_not_per_record(
    client: AppClient, alice: dict[str, Any], settings: Settings
) -> None:
    """Eight records from a server that answers after 2 s, at a 1 s timeout: the request is
    cut off after about 1 s in all, not 8 x 1 s."""
    settings.url_fetch_timeout = 1.0
    png = png_bytes(11)
    with http_server(lambda p: (200, {"Content-Type": "image/png"}, png), ALLOWED, 2.0) as slow:
        records = [{"_url": f"{slow.url}/img{i}.png"} for i in range(8)]
        started = time.monotonic()
        r = client.post("/v2/training-image/", headers=alice["headers"], json={"records": records})
        took = time.monotonic() - started
    statuses = [rec["_status"] for rec in r.json()["records"]]
    assert {(s["code"], s["error"]) for s in statuses} == {(400, "url_unreachable")}, statuses
    assert took < 5.0, took  # per record it was 8 x 1 s
    assert len(slow.seen) == 1  # the records after the deadline connect nowhere


def test_concurrent_fetches_of_one_user_are_capped(
    client: AppClient, alice: dict[str, Any], bob: dict[str, Any], settings: Settings
) -> None:
    settings.url_fetches_per_user = 2
    settings.url_fetch_timeout = 20.0
    release, png = threading.Event(), png_bytes(12)

    def held(path: str) -> tuple[int, dict[str, str], bytes]:
        release.wait(20)
        return 200, {"Content-Type": "image/png"}, png

    with http_server(held, ALLOWED) as slow, ThreadPoolExecutor(5) as pool:
        body = {"records": [{"_url": slow.url + "/img.png"}]}
        post = client.post
        waiting = [pool.submit(post, "/v2/training-image/", headers=alice["headers"], json=body)
                   for _ in range(4)]  # fmt: skip
        deadline = time.monotonic() + 20
        while len(slow.seen) < 2:
            assert time.monotonic() < deadline, slow.seen
            time.sleep(0.01)
        time.sleep(0.5)
        assert len(slow.seen) == 2  # alice's other two wait for a slot
        other = pool.submit(post, "/v2/training-image/", headers=bob["headers"], json=body)
        while len(slow.seen) < 3:  # bob is not held up by alice's cap
            assert time.monotonic() < deadline, slow.seen
            time.sleep(0.01)
        release.set()
        for future in [*waiting, other]:
            rec = future.result(30).json()["records"][0]
            assert rec["_status"]["code"] in (200, 201), rec
    assert len(slow.seen) == 5
