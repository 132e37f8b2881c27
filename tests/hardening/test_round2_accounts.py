"""Issue 12, items 4, 6 and 13 (mail): sessions revoked on the server, who may sign up and how
fast, and mail only to confirmed addresses (real SMTP through aiosmtpd)."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from argon2 import PasswordHasher

from tests.hardening.test_limits import fresh_window
from tests.inprocess import AppClient
from tests.jobs.test_notifications import _Inbox, _wait_mails
from tests.jobs.test_notifications import smtp as smtp  # the aiosmtpd fixture
from tests.web.helpers import form_csrf, log_in, post_form, sign_up
from vize.api.deps import SESSION_COOKIE
from vize.config import Settings
from vize.db.tables import User
from vize.services import users as users_service
from vize.services.invites import SignupMode, make_invite
from vize.services.notify import Notifier

ROOT = Path(__file__).resolve().parents[2]


def session_of(client: AppClient) -> str:
    value = client._client.cookies.get(SESSION_COOKIE)
    assert value
    return str(value)


def with_cookie(client: AppClient, cookie: str, path: str = "/v2/account/") -> int:
    """A request carrying only a copied session cookie, as a thief would send it."""
    with client.from_address("10.9.8.7") as other:
        other._client.cookies.set(SESSION_COOKIE, cookie)
        return other.get(path).status_code


# -- item 4: sessions ----------------------------------------------------------------------


def test_logout_revokes_the_session_on_the_server(client: AppClient) -> None:
    assert sign_up(client, "frank").status_code == 303
    cookie = session_of(client)
    assert with_cookie(client, cookie) == 200
    assert post_form(client, "/logout", {}).status_code == 303
    assert with_cookie(client, cookie) == 401  # the copy is dead too
    assert with_cookie(client, cookie, "/account") == 303  # the pages send it to log in


def test_log_out_everywhere_and_a_new_token_end_the_other_sessions(
    client: AppClient, settings: Settings
) -> None:
    assert sign_up(client, "gina").status_code == 303
    first = session_of(client)
    with client.from_address("10.1.1.1") as laptop:
        assert log_in(laptop, "gina", "secret-pass-1").status_code == 303
        second = session_of(laptop)
        # A new token from the first browser: the laptop's session ends, this one stays.
        r = post_form(client, "/account/token", {}, page="/account")
        assert r.status_code == 303
        assert with_cookie(client, second) == 401 and with_cookie(client, first) == 200
        assert log_in(laptop, "gina", "secret-pass-1").status_code == 303
        third = session_of(laptop)
        # Through the API: every session ends.
        token = client.get("/v2/account/").json()  # the page's own session still works
        assert token["username"] == "gina"
        api_token = _api_token(client)
        r = client.post(
            "/v2/account/regenerate-token/", headers={"Authorization": f"Token {api_token}"}
        )
        assert r.status_code == 200
        assert with_cookie(client, first) == 401 and with_cookie(client, third) == 401
        # Log out everywhere, from the laptop, ends the first browser's new session too.
        assert log_in(client, "gina", "secret-pass-1").status_code == 303
        assert log_in(laptop, "gina", "secret-pass-1").status_code == 303
        fourth, fifth = session_of(client), session_of(laptop)
        r = post_form(laptop, "/account/logout-all", {}, page="/account")
        assert r.status_code == 303 and r.headers["location"] == "/login"
        assert with_cookie(client, fourth) == 401 and with_cookie(client, fifth) == 401


def _api_token(client: AppClient) -> str:
    match = re.search(r'id="api-token" class="mono" value="([^"]+)"', client.get("/account").text)
    assert match
    return match.group(1)


# -- item 6: sign-up ------------------------------------------------------------------------


def signup_form(client: AppClient, username: str, invite: str = "") -> dict[str, str]:
    page = client.get("/signup" + (f"?invite={invite}" if invite else ""))
    return {
        "csrf_token": form_csrf(page.text) if 'name="csrf_token"' in page.text else "",
        "username": username,
        "email": "",
        "password": "secret-pass-1",
        "password2": "secret-pass-1",
        "invite": invite,
    }


def test_signup_closed(client: AppClient, settings: Settings) -> None:
    settings.signup = SignupMode.CLOSED
    page = client.get("/signup")
    assert page.status_code == 403 and "closed" in page.text and 'name="password"' not in page.text
    token = form_csrf(client.get("/login").text)
    form = {"csrf_token": token, "username": "hal", "password": "secret-pass-1",
            "password2": "secret-pass-1"}  # fmt: skip
    r = client.post("/signup", data=form)
    assert r.status_code == 403 and SESSION_COOKIE not in r.cookies
    assert log_in(client, "hal", "secret-pass-1").status_code == 400  # no such account


def test_signup_by_invitation_only_once_and_only_for_its_name(
    client: AppClient, settings: Settings, tmp_path: Path
) -> None:
    settings.signup = SignupMode.INVITE
    assert client.get("/signup").status_code == 403
    # The admin's CLI prints the link, signed with the server's secret.
    env = {"VIZE_DATA_DIR": str(settings.data_dir), "VIZE_SECRET_KEY": settings.secret_key,
           "VIZE_PUBLIC_URL": "https://vize.example.org", "PATH": "/usr/bin:/bin"}  # fmt: skip
    out = subprocess.run([sys.executable, "-m", "vize.cli", "users", "invite", "ivy"], env=env,
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout  # fmt: skip
    link = out.strip().splitlines()[-1]
    assert link.startswith("https://vize.example.org/signup?invite=")
    invite = urlsplit(link).query.split("=", 1)[1]
    page = client.get(f"/signup?invite={invite}")
    assert page.status_code == 200 and 'value="ivy"' in page.text
    r = client.post("/signup", data=signup_form(client, "mallory", invite))
    assert r.status_code == 403 and "for the username &#39;ivy&#39;" in r.text
    forged = make_invite("another-secret", "mallory")
    assert client.post("/signup", data=signup_form(client, "mallory", forged)).status_code == 403
    r = client.post("/signup", data=signup_form(client, "ivy", invite))
    assert r.status_code == 303, r.text
    with client.from_address("10.2.2.2") as other:  # used: the name is taken now
        r = other.post("/signup", data=signup_form(other, "ivy", invite))
        assert r.status_code == 409


def test_signup_is_rate_limited_per_address(client: AppClient, settings: Settings) -> None:
    settings.signups_per_minute = 3
    fresh_window(20)
    codes = []
    for i in range(5):  # a fresh browser each time, from the same address
        with client.from_address("127.0.0.1") as browser:
            codes.append(browser.post("/signup", data=signup_form(browser, f"u{i}")).status_code)
    assert codes == [303, 303, 303, 429, 429], codes
    with client.from_address("10.3.3.3") as other:
        assert other.post("/signup", data=signup_form(other, "other1")).status_code == 303


def test_argon2_hashing_runs_at_most_two_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Eight sign-ups at once: the password hasher never runs more than two hashes together."""
    busy, peak, lock = 0, 0, threading.Lock()
    real = PasswordHasher.hash

    def counting(self: PasswordHasher, password: str | bytes, **kw: Any) -> str:
        nonlocal busy, peak
        with lock:
            busy += 1
            peak = max(peak, busy)
        try:
            time.sleep(0.05)
            return real(self, password, **kw)
        finally:
            with lock:
                busy -= 1

    monkeypatch.setattr(PasswordHasher, "hash", counting)
    threads = [threading.Thread(target=users_service.hash_password, args=(f"pw{i}",))
               for i in range(8)]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak == 2, peak


# -- item 13: mail only to a confirmed address ------------------------------------------


@pytest.fixture
def smtp_settings(settings: Settings, smtp: tuple[_Inbox, int]) -> Iterator[Settings]:
    settings.smtp_url = f"smtp://127.0.0.1:{smtp[1]}"
    yield settings


def test_mail_goes_only_to_a_confirmed_address(
    client: AppClient, smtp_settings: Settings, smtp: tuple[_Inbox, int]
) -> None:
    inbox, _ = smtp
    form = {**signup_form(client, "jane"), "email": "stranger@example.com"}
    assert client.post("/signup", data=form).status_code == 303
    _wait_mails(inbox, 1)
    [mail] = inbox.messages
    assert mail["To"] == "stranger@example.com" and "Confirm" in mail["Subject"]
    body = mail.get_payload(decode=True).decode()
    link = re.search(r"(/account/confirm-email\?token=\S+)", body)
    assert link
    state = client.transport.app.state.vize  # type: ignore[attr-defined]
    notifier = Notifier(smtp_settings, state.sessions)
    jane = _user_id(state, "jane")
    with state.sessions.begin() as db:  # notifications are off by default: jane wants them
        db.get(User, jane).notify_email = True
    # Unconfirmed: a training notification is not sent to the stranger.
    _notify(notifier, state, jane)
    time.sleep(0.3)
    assert len(inbox.messages) == 1
    # Another user cannot confirm it with the link; jane, logged in, can.
    with client.from_address("10.4.4.4") as mallory:
        assert mallory.get(link.group(1)).headers["location"].startswith("/login")
        assert sign_up(mallory, "mallory").status_code == 303
        assert mallory.get(link.group(1)).status_code == 400
    r = client.get(link.group(1))
    assert r.status_code == 303, r.text
    _notify(notifier, state, jane)
    _wait_mails(inbox, 3)
    assert len(to(inbox, "stranger@example.com")) == 2
    assert "started" in to(inbox, "stranger@example.com")[1]["Subject"]
    # A new address is unconfirmed again, and the old link does not confirm it.
    prefs = {"email": "other@example.com", "notify_email": "on"}
    r = post_form(client, "/account/preferences", prefs, page="/account")
    assert r.status_code == 303
    _wait_mails(inbox, 4)
    assert client.get(link.group(1)).status_code == 400
    _notify(notifier, state, jane)
    time.sleep(0.3)
    assert ["Confirm" in m["Subject"] for m in to(inbox, "other@example.com")] == [True]
    assert client.get("/account/confirm-email?token=forged").status_code == 400


def to(inbox: _Inbox, address: str) -> list[Any]:
    return [m for m in inbox.messages if m["To"] == address]


def _user_id(state: Any, username: str) -> str:
    with state.sessions() as db:
        user = users_service.by_username(db, username)
        assert user is not None
        return user.id


def _notify(notifier: Notifier, state: Any, user_id: str) -> None:
    """A training-started notification for a task of the user, as the job worker sends it."""
    from vize.db.tables import Model, Task
    from vize.services.workspaces import default_workspace

    with state.sessions.begin() as db:
        task = Task(owner_id=user_id, workspace_id=default_workspace(user_id), name="t")
        db.add(task)
        db.flush()
        model = Model(task_id=task.id, version=1)
        db.add(model)
        db.flush()
        ids = task.id, model.id
    notifier("training_started", *ids)
