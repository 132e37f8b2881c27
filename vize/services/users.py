"""Accounts: creation, password (argon2) and API-token authentication."""

from __future__ import annotations

import re
import secrets
import threading
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from vize.db.tables import User
from vize.errors import Conflict, InvalidInput
from vize.services import sessions as sessions_service
from vize.services.common import text_field
from vize.services.email_confirm import set_email
from vize.services.workspaces import ensure_default

_hasher = PasswordHasher()
# argon2 takes 64 MiB and ~0.1 s of a core per hash: a burst of sign-ups or logins in
# parallel took +500 MB. Two at a time whatever the burst; the rest wait their turn. One
# per process on purpose: the memory and the cores are the process's.
_hashing = threading.BoundedSemaphore(2)
USERNAME_RE = re.compile(r"^[A-Za-z0-9_.@+-]{1,150}$")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+$")
MIN_PASSWORD = 8
MAX_EMAIL = 254  # the column's length and RFC 5321's limit
TRUE_WORDS = ("1", "true", "yes", "on")


def check_email(email: str) -> str:
    if email and (len(email) > MAX_EMAIL or not EMAIL_RE.match(email)):
        raise InvalidInput("Email address is not valid.", code="invalid_email")
    return email


def update_account(db: Session, user: User, fields: dict[str, Any]) -> User:
    """PATCH of the account: the email address and the notification switch."""
    if fields.get("notify_email") is not None:
        user.notify_email = str(fields["notify_email"]).strip().lower() in TRUE_WORDS
    if fields.get("email") is not None:
        email = check_email(text_field(fields["email"], "email", MAX_EMAIL, strip=True))
        set_email(user, email)  # unconfirmed until its link is followed
    db.flush()
    return user


def new_token() -> str:
    return secrets.token_hex(20)


def hash_password(password: str) -> str:
    with _hashing:
        return _hasher.hash(password)


def verify_password(user: User, password: str) -> bool:
    if not user.password_hash:
        return False
    try:
        with _hashing:
            return _hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def create_user(
    db: Session,
    username: str,
    *,
    email: str = "",
    password: str | None = None,
    email_verified: bool = False,
) -> User:
    """``email_verified``: True only where an administrator vouches for the address (the
    CLI); a sign-up's address waits for its confirmation link."""
    if not USERNAME_RE.match(username):
        raise InvalidInput(
            "Username must be 1-150 letters, digits or _.@+- characters.", code="invalid_username"
        )
    check_email(email)
    if password is not None and len(password) < MIN_PASSWORD:
        raise InvalidInput(
            f"Password must have at least {MIN_PASSWORD} characters.", code="weak_password"
        )
    if db.scalar(select(User.id).where(User.username == username)):
        raise Conflict(f"User {username!r} already exists.", code="user_exists")
    user = User(
        username=username,
        email=email,
        password_hash=hash_password(password) if password else "",
        api_token=new_token(),
        email_verified=bool(email) and email_verified,
    )
    db.add(user)
    db.flush()
    ensure_default(db, user)  # every account has its default workspace from the start
    return user


def by_token(db: Session, token: str) -> User | None:
    # Tokens are printable ASCII; anything else (a NUL) would make PostgreSQL raise, not miss.
    if not token or len(token) > 64 or not (token.isascii() and token.isprintable()):
        return None
    user = db.scalar(select(User).where(User.api_token == token))
    # The index lookup already matched; compare again in constant time for good measure.
    if user is None or not secrets.compare_digest(user.api_token, token):
        return None
    return user


def by_username(db: Session, username: str) -> User | None:
    return db.scalar(select(User).where(User.username == username))


def authenticate(db: Session, username: str, password: str) -> User | None:
    user = by_username(db, username)
    if user is None:
        hash_password(password)  # equalise timing with the existing-user path
        return None
    return user if verify_password(user, password) else None


def regenerate_token(db: Session, user: User, keep_session: str | None = None) -> str:
    """A new API token; the browser sessions end too (but ``keep_session``, the page that
    asked): whoever had the old token may have logged in with it around."""
    user.api_token = new_token()
    sessions_service.end_all(db, user.id, keep=keep_session)
    db.flush()
    return user.api_token
