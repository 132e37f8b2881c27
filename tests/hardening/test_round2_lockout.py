"""Issue 12, item 10: the lockout counts atomically, and X-Forwarded-For is believed only
from VIZE_TRUSTED_PROXIES (in-process clients connect from 127.0.0.1)."""

from __future__ import annotations

import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.api.helpers import assert_error
from tests.hardening.live import Server
from tests.hardening.test_limits import fresh_window
from tests.helpers import make_user
from tests.inprocess import AppClient
from tests.web.helpers import form_csrf
from vize.config import Settings
from vize.services.limits import client_address, parse_networks

LIMIT = 20


@pytest.fixture
def settings(settings: Settings) -> Settings:
    settings.auth_failures_per_minute = LIMIT
    return settings


def guess(client: AppClient, headers: dict[str, str] | None = None) -> int:
    bad = {"Authorization": f"Token {uuid.uuid4().hex}", **(headers or {})}
    return client.get("/v2/task/", headers=bad).status_code


def test_concurrent_guessers_get_no_more_tries_than_the_limit(
    client: AppClient, alice: dict[str, Any]
) -> None:
    fresh_window(20)
    with ThreadPoolExecutor(8) as pool:
        codes = Counter(pool.map(lambda _: guess(client), range(80)))
    assert codes[401] == LIMIT and codes[429] == 80 - LIMIT, codes
    assert_error(client.get("/v2/task/", headers=alice["headers"]), 429, "rate_limited")


def test_concurrent_password_guessers_get_no_more_tries_than_the_limit(
    client: AppClient, settings: Settings
) -> None:
    """argon2 takes a while between the check and the count: the window the race needs."""
    make_user(settings, "carol", "carol-password")
    fresh_window(30)
    token = form_csrf(client.get("/login").text)
    form = {"csrf_token": token, "username": "carol", "password": "wrong-password"}
    with ThreadPoolExecutor(8) as pool:
        codes = Counter(pool.map(lambda _: client.post("/login", data=form).status_code,
                                 range(32)))  # fmt: skip
    assert codes[400] == LIMIT and codes[429] == 32 - LIMIT, codes
    right = {**form, "password": "carol-password"}
    assert client.post("/login", data=right).status_code == 429


@pytest.mark.e2e
def test_served_app_ignores_forwarded_for_from_loopback(tmp_path: Any) -> None:
    """`vize serve` (uvicorn) itself: a peer on 127.0.0.1 is no proxy unless configured."""
    env = {"VIZE_AUTH_FAILURES_PER_MINUTE": "5", "VIZE_EMBEDDED_WORKER": "false",
           "VIZE_WARM_UP": "false"}  # fmt: skip
    node = Server(tmp_path / "data", env)
    try:
        node.start()
        fresh_window(15)
        with node.client({}) as c:
            codes = [c.get("/v2/task/", headers={"Authorization": f"Token bad{i}",
                                                 "X-Forwarded-For": f"10.0.{i}.1"}).status_code
                     for i in range(6)]  # fmt: skip
        assert codes == [401] * 5 + [429], codes
    finally:
        node.stop()


def test_forwarded_for_from_an_untrusted_peer_is_ignored(
    client: AppClient, alice: dict[str, Any]
) -> None:
    fresh_window(20)
    for i in range(LIMIT):  # a new "address" each time: it must not matter
        assert guess(client, {"X-Forwarded-For": f"10.0.{i}.1"}) == 401
    assert guess(client, {"X-Forwarded-For": "10.9.9.9"}) == 429
    # Nor can a guesser aim the lockout at a victim's address.
    with client.from_address("10.1.2.3") as victim:
        assert victim.get("/v2/task/", headers=alice["headers"]).status_code == 200


def test_forwarded_for_from_a_trusted_proxy_counts_the_client(
    client: AppClient, alice: dict[str, Any], settings: Settings
) -> None:
    settings.trusted_proxies = "127.0.0.0/8, ::1"
    fresh_window(20)
    for _ in range(LIMIT):  # the client's own claim left of the proxy's entry is ignored
        assert guess(client, {"X-Forwarded-For": "1.2.3.4, 203.0.113.7"}) == 401
    assert guess(client, {"X-Forwarded-For": "203.0.113.7"}) == 429
    assert guess(client, {"X-Forwarded-For": "203.0.113.8"}) == 401
    r = client.get("/v2/task/", headers={**alice["headers"], "X-Forwarded-For": "198.51.100.1"})
    assert r.status_code == 200
    nets = parse_networks("10.0.0.0/8,127.0.0.1")
    assert client_address("127.0.0.1", "6.6.6.6, 9.9.9.9, 10.0.0.2", nets) == "9.9.9.9"
    assert client_address("8.8.8.8", "9.9.9.9", nets) == "8.8.8.8"
    assert client_address("127.0.0.1", "junk, 10.0.0.2", nets) == "10.0.0.2"
