"""Account operations the web pages need on top of ``vize.services.users``."""

from __future__ import annotations

import hmac

from sqlalchemy.orm import Session

from vize.db.tables import User
from vize.errors import InvalidInput
from vize.services import users as users_service
from vize.services.email_confirm import set_email


def sign_up(db: Session, username: str, email: str, password: str, confirm: str) -> User:
    """Create a user with a password (argon2 via the users service)."""
    if not password:
        raise InvalidInput("Choose a password.", code="weak_password")
    if not hmac.compare_digest(password.encode(), confirm.encode()):
        raise InvalidInput("The two passwords differ.", code="password_mismatch")
    return users_service.create_user(db, username.strip(), email=email.strip(), password=password)


def update_preferences(db: Session, user: User, email: str, notify_email: bool) -> bool:
    """Email address and the training-notification switch."""
    """Email address and the training-notification switch; True when the address changed
    (unconfirmed now: the caller sends its confirmation link)."""
    email = email.strip()
    if email and not users_service.EMAIL_RE.match(email):
        raise InvalidInput("Email address is not valid.", code="invalid_email")
    changed = set_email(user, email)
    user.notify_email = notify_email
    db.flush()
    return changed
