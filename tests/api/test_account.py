"""/v2/account/ and /v2/usage/."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.api.helpers import assert_error
from tests.inprocess import AppClient
from vize.config import Settings
from vize.db.engine import make_engine, make_sessionmaker, session_scope
from vize.db.states import Role
from vize.services import usage as usage_service
from vize.services.workspaces import Caller, default_workspace


def test_account_fields(client: AppClient, alice: dict) -> None:
    r = client.get("/v2/account/", headers=alice["headers"])
    assert r.status_code == 200
    me = r.json()
    assert set(me) == {"id", "username", "email", "notify_email", "created"}
    assert (me["id"], me["username"], me["email"], me["notify_email"]) == (
        alice["id"],
        "alice",
        "alice@example.com",
        False,
    )  # fmt: skip  (notification mails are opt-in)
    assert "token" not in r.text and "password" not in r.text


def test_patch_email_and_notification_switch(client: AppClient, alice: dict) -> None:
    h = alice["headers"]
    r = client.patch(
        "/v2/account/", headers=h, json={"email": " new@example.org ", "notify_email": False}
    )
    assert r.status_code == 200, r.text
    assert (r.json()["email"], r.json()["notify_email"]) == ("new@example.org", False)
    r = client.patch("/v2/account", headers=h, data={"notify_email": "on"})
    assert r.json()["notify_email"] is True and r.json()["email"] == "new@example.org"
    assert client.patch("/v2/account/", headers=h, json={"email": ""}).json()["email"] == ""


@pytest.mark.parametrize(
    "email", ["not-an-email", "a@" + "b" * 260 + ".org", "a\u0000@b.org", ["a@b.org"]]
)
def test_patch_rejects_bad_email(client: AppClient, alice: dict, email: object) -> None:
    r = client.patch("/v2/account/", headers=alice["headers"], json={"email": email})
    body = assert_error(r, 400)
    assert body["code"] in ("invalid_email", "invalid_field")
    assert (
        client.get("/v2/account/", headers=alice["headers"]).json()["email"] == "alice@example.com"
    )


def test_regenerate_token_replaces_the_old_one(client: AppClient, alice: dict) -> None:
    r = client.post("/v2/account/regenerate-token/", headers=alice["headers"])
    assert r.status_code == 200
    token = r.json()["token"]
    assert token != alice["token"] and len(token) >= 32
    assert_error(client.get("/v2/account/", headers=alice["headers"]), 401, "invalid_token")
    me = client.get("/v2/account/", headers={"Authorization": f"Token {token}"})
    assert me.status_code == 200 and me.json()["username"] == "alice"


def test_usage_counts_per_user_and_day(
    client: AppClient, alice: dict, bob: dict, settings: Settings
) -> None:
    empty = client.get("/v2/usage/", headers=alice["headers"]).json()
    nothing = {"today": 0, "this_month": 0, "total": 0, "daily": []}
    assert empty == {**nothing, "workspace": {"id": default_workspace(alice["id"]), **nothing}}
    alice_home = Caller(default_workspace(alice["id"]), Role.OWNER, alice["id"])
    bob_home = Caller(default_workspace(bob["id"]), Role.OWNER, bob["id"])
    alice_at_bob = Caller(bob_home.workspace_id, Role.VIEWER, alice["id"])
    engine = make_engine(settings)
    with session_scope(make_sessionmaker(engine)) as db:
        usage_service.record_classifications(db, alice_home, 3)
        usage_service.record_classifications(db, alice_home, 2)
        usage_service.record_classifications(db, alice_home, 0)
        usage_service.record_classifications(db, bob_home, 7)
        usage_service.record_classifications(db, alice_at_bob, 4)  # alice's, in bob's space
    engine.dispose()
    usage = client.get("/v2/usage", headers=alice["headers"]).json()
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    assert usage == {
        "today": 9, "this_month": 9, "total": 9,
        "daily": [{"day": today, "classifications": 9}],
        "workspace": {
            "id": alice_home.workspace_id, "today": 5, "this_month": 5, "total": 5,
            "daily": [{"day": today, "classifications": 5}],
        },
    }  # fmt: skip
    of_bob = client.get("/v2/usage/", headers=bob["headers"]).json()
    assert of_bob["total"] == 7 and of_bob["workspace"]["total"] == 11
