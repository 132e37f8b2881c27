"""Accounts (creation, tokens, passwords, account updates) and usage counting."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy.orm import Session, sessionmaker

from tests.services.conftest import me
from vize.db.tables import User
from vize.errors import Conflict, InvalidInput
from vize.services import usage as usage_service
from vize.services import users as users_service


def test_create_user_and_token_lookup(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as db:
        user = users_service.create_user(db, "erin", email="e@x.org", password="long enough")
    assert len(user.api_token) == 40 and user.password_hash.startswith("$argon2")
    with sessions() as db:
        assert users_service.by_token(db, user.api_token).id == user.id  # type: ignore[union-attr]
        for bad in ("", "x" * 65, user.api_token[:-1], user.api_token + "\x00", "tök"):
            assert users_service.by_token(db, bad) is None
        assert users_service.authenticate(db, "erin", "long enough").id == user.id  # type: ignore[union-attr]
        assert users_service.authenticate(db, "erin", "wrong password") is None
        assert users_service.authenticate(db, "nobody", "long enough") is None


@pytest.mark.parametrize(
    ("username", "kw", "code"),
    [
        ("", {}, "invalid_username"),
        ("has space", {}, "invalid_username"),
        ("x" * 151, {}, "invalid_username"),
        ("ok", {"email": "not-an-email"}, "invalid_email"),
        ("ok", {"email": "a@" + "b" * 260}, "invalid_email"),
        ("ok", {"password": "short"}, "weak_password"),
    ],
)
def test_create_user_refuses(db: Session, username: str, kw: dict, code: str) -> None:
    with pytest.raises(InvalidInput) as err:
        users_service.create_user(db, username, **kw)
    assert err.value.code == code


def test_duplicate_username_conflicts(db: Session, carol: User) -> None:
    with pytest.raises(Conflict) as err:
        users_service.create_user(db, "carol")
    assert err.value.status == 409 and "already exists" in err.value.detail


def test_regenerate_token(db: Session, carol: User) -> None:
    user = db.get(User, carol.id)
    assert user is not None
    old = user.api_token
    new = users_service.regenerate_token(db, user)
    assert new != old and users_service.by_token(db, old) is None
    assert users_service.by_token(db, new) is user


def test_update_account(db: Session, carol: User) -> None:
    user = db.get(User, carol.id)
    assert user is not None
    users_service.update_account(db, user, {"email": " c@d.org ", "notify_email": "no"})
    assert (user.email, user.notify_email) == ("c@d.org", False)
    users_service.update_account(db, user, {"notify_email": True, "email": None})
    assert (user.email, user.notify_email) == ("c@d.org", True)
    for bad in ("nope", "a@" + "b" * 253, {"x": 1}):
        with pytest.raises(InvalidInput):
            users_service.update_account(db, user, {"email": bad})
    assert user.email == "c@d.org"


def test_usage_increments_are_atomic(sessions: sessionmaker[Session], carol: User) -> None:
    """Concurrent requests each add their images; none may be lost (both databases)."""
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(5):
                with sessions.begin() as db:
                    usage_service.record_classifications(db, me(carol), 2)
        except BaseException as exc:  # reported below: a thread's failure must fail the test
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    with sessions() as db:
        summary = usage_service.summary(db, carol.id)
    assert summary["today"] == summary["this_month"] == summary["total"] == 40
