"""Rate limits: guessing tokens or passwords, classifying per minute, the monthly quota."""

from __future__ import annotations

import base64
import random
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from tests.api.helpers import assert_error
from tests.helpers import images, make_user
from tests.inprocess import AppClient, app_client
from tests.web.helpers import form_csrf
from vize.api.deps import SESSION_COOKIE
from vize.app import create_app
from vize.config import Settings
from vize.services.limits import WINDOW, window_left

LIMIT = 5
REDIS = "redis://127.0.0.1:6379"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    settings.auth_failures_per_minute = LIMIT
    return settings


def fresh_window(needed: float = 10) -> None:
    """Counters reset each minute: start where the whole check fits in one window."""
    left = window_left(time.time())
    if left < needed:
        time.sleep(left + 0.2)


def retry_after(r: Any) -> int:
    value = int(r.headers["retry-after"])
    assert 1 <= value <= WINDOW, value
    return value


def test_token_guessing_is_locked_out_per_address(client: AppClient, alice: dict) -> None:
    fresh_window()
    good = alice["headers"]
    for _ in range(30):  # valid tokens never count
        assert client.get("/v2/task/", headers=good).status_code == 200
    for _ in range(10):  # nor do requests without any credential
        assert_error(client.get("/v2/task/"), 401, "not_authenticated")
    for i in range(LIMIT):
        bad = {"Authorization": f"Token {uuid.uuid4().hex}{i:08d}"}
        assert_error(client.get("/v2/task/", headers=bad), 401, "invalid_token")
    r = client.get("/v2/task/", headers={"Authorization": "Token guess"})
    assert_error(r, 429, "rate_limited")
    assert retry_after(r) <= window_left(time.time()) + 1
    # Locked out: even the right token from this address waits (the guesser cannot tell).
    assert_error(client.get("/v2/task/", headers=good), 429, "rate_limited")
    with client.from_address("10.20.30.40") as other:
        assert other.get("/v2/task/", headers=good).status_code == 200
        assert_error(other.get("/v2/task/", headers={"Authorization": "Token x"}), 401)


def _login(client: AppClient, username: str, password: str) -> Any:
    token = form_csrf(client.get("/login").text)
    return client.post("/login", data={"csrf_token": token, "username": username,
                                       "password": password})  # fmt: skip


def test_password_guessing_on_the_login_form_is_locked_out(
    client: AppClient, settings: Settings
) -> None:
    make_user(settings, "carol", "carol-password")
    fresh_window()
    for _ in range(LIMIT):
        r = _login(client, "carol", "wrong-password")
        assert r.status_code == 400 and "Wrong username or password" in r.text
    r = _login(client, "carol", "carol-password")  # right, but too late from this address
    assert r.status_code == 429 and retry_after(r) <= window_left(time.time()) + 1
    assert "Too many failed" in r.text and SESSION_COOKIE not in r.headers.get("set-cookie", "")
    # The API tokens and the login form share the count: it is the address that guesses.
    assert_error(client.get("/v2/task/", headers={"Authorization": "Token x"}), 429)
    with client.from_address("10.20.30.41") as other:
        r = _login(other, "carol", "carol-password")
        assert r.status_code == 303 and SESSION_COOKIE in r.headers["set-cookie"]


@pytest.fixture
def shared_redis(settings: Settings) -> Iterator[Settings]:
    # Redis dbs 8-14: the scale-out e2e test flushes one of 1-7 and test_broker_mode uses 15,
    # possibly at the same time (pytest-xdist).
    url = f"{REDIS}/{random.randint(8, 14)}"
    yield settings.model_copy(update={"broker_url": url, "embedded_worker": False})
    client = redis.Redis.from_url(url)
    for key in client.scan_iter("vize:rate:*"):
        client.delete(key)
    client.close()


def test_replicas_share_the_failure_count_through_redis(shared_redis: Settings) -> None:
    """Two app instances (replicas) with one Redis: guesses spread over both still add up."""
    address = f"10.{random.randint(0, 255)}.{random.randint(0, 255)}.7"  # a key of our own
    fresh_window()
    with app_client(create_app(shared_redis)) as a, app_client(create_app(shared_redis)) as b:
        token = make_user(shared_redis, "dave")["token"]
        with a.from_address(address) as ca, b.from_address(address) as cb:
            for i in range(LIMIT):
                c = ca if i % 2 else cb
                assert_error(c.get("/v2/task/", headers={"Authorization": "Token x"}), 401)
            for c in (ca, cb):
                r = c.get("/v2/task/", headers={"Authorization": f"Token {token}"})
                assert_error(r, 429, "rate_limited")


# ---- classification: per-minute rate and monthly quota --------------------------------------
def _records(n: int, bad: int = 0) -> list[dict[str, str]]:
    files = images("cat", 60, 60 + n)
    good = [{"_base64": base64.b64encode(f.read_bytes()).decode()} for f in files]
    return good + [{"_base64": "@@not-base64"}] * bad


def _classify(client: AppClient, h: dict, task_id: str, n: int, bad: int = 0) -> Any:
    return client.post("/v2/classify", headers=h,
                       json={"task_id": task_id, "records": _records(n, bad)})  # fmt: skip


def test_classify_rate_per_minute(settings: Settings, trained: Any) -> None:
    client, alice, task_id = trained
    h = alice["headers"]
    limited = settings.model_copy(update={"classify_rate_per_minute": 6, "embedded_worker": False})
    with app_client(create_app(limited)) as c:
        fresh_window()
        assert _classify(c, h, task_id, 3).status_code == 200
        assert_error(_classify(c, h, task_id, 4), 429, "rate_limited")  # 7 > 6: refused whole
        assert _classify(c, h, task_id, 2, bad=1).status_code == 200  # 6 images sent: the limit
        r = _classify(c, h, task_id, 1)
        assert_error(r, 429, "rate_limited")
        assert retry_after(r) <= window_left(time.time()) + 1
        r = c.post("/v1/classify/", headers=h, data={"task": task_id,
                   "image_base64": _records(1)[0]["_base64"]})  # fmt: skip
        assert_error(r, 429, "rate_limited")
        # Refused requests used none of the allowance, and only decoded images were billed.
        assert c.get("/v2/usage/", headers=h).json()["today"] == 5
    # Without the limit (the other instance) the same user classifies on.
    assert _classify(client, h, task_id, 1).status_code == 200
    assert client.get("/v2/usage/", headers=h).json()["today"] == 6


def test_monthly_quota(settings: Settings, trained: Any) -> None:
    _, alice, task_id = trained
    h = alice["headers"]
    quota = settings.model_copy(update={"monthly_quota": 7, "embedded_worker": False})
    with app_client(create_app(quota)) as c:
        assert _classify(c, h, task_id, 3, bad=1).status_code == 200  # 3 billed
        assert _classify(c, h, task_id, 4).status_code == 200  # 7: all of it
        r = _classify(c, h, task_id, 1)
        assert_error(r, 429, "quota_exceeded")
        assert int(r.headers["retry-after"]) > 0  # until the 1st of next month
        assert "7" in r.json()["detail"]
        usage = c.get("/v2/usage/", headers=h).json()
        assert usage["this_month"] == usage["total"] == 7
