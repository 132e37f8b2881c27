"""Confirming an email address before anything is mailed to it: a signed link, sent to the
address, that names the user and the address (a later change of address voids it)."""

from __future__ import annotations

import logging

from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy.orm import Session

from vize.config import Settings
from vize.db.tables import User
from vize.errors import InvalidInput
from vize.services.limits import Counter
from vize.services.notify import send_email

SALT = "vize-email"
MAX_AGE = 3 * 24 * 3600
MAILS_PER_MINUTE = 3  # per user: a confirmation mail goes to a stranger's address too
log = logging.getLogger("vize.notify")


def _serializer(secret: str | bytes) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret, salt=SALT)


def set_email(user: User, email: str) -> bool:
    """Store a new address as unconfirmed; True when it changed (a confirmation is due)."""
    if email == user.email:
        return False
    user.email, user.email_verified = email, False
    return bool(email)


def send_confirmation(
    settings: Settings, secret: str | bytes, counter: Counter | None, user: User, base: str
) -> bool:
    """Mail the confirmation link to the user's address; False if not sent (limited or the
    mail failed: the account page offers to send it again)."""
    if not user.email or user.email_verified:
        return False
    if counter is not None and counter.hit(f"confirm:{user.id}")[0] > MAILS_PER_MINUTE:
        return False
    token = _serializer(secret).dumps({"uid": user.id, "email": user.email})
    link = f"{base}/account/confirm-email?token={token}"
    text = (
        f"Someone (hopefully you) gave this address to the Vize account {user.username!r}.\n"
        f"Confirm it to receive training notifications:\n\n{link}\n\n"
        "If it was not you, ignore this mail: nothing more will be sent."
    )
    try:
        send_email(settings, user.email, "Confirm your email address for Vize", text)
    except Exception:
        log.exception("could not send the confirmation mail of user %s", user.id)
        return False
    return True


def confirm(db: Session, secret: str | bytes, token: str, user: User) -> User:
    """Mark the address in ``token`` confirmed, if the token is ``user``'s and the address
    still theirs."""
    try:
        data = _serializer(secret).loads(token, max_age=MAX_AGE)
        ok = data["uid"] == user.id and bool(user.email) and data["email"] == user.email
    except (BadSignature, KeyError, TypeError):
        ok = False
    if not ok:
        raise InvalidInput(
            "This confirmation link is wrong, expired or for an address no longer set.",
            code="invalid_confirmation",
        )
    user.email_verified = True
    db.flush()
    return user
