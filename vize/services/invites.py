"""Who may sign up: ``VIZE_SIGNUP`` open, invite or closed, and invitation links.

An invitation is a signed token naming the username it is for: it works until that account
exists (so once), for INVITE_DAYS. Admins make them with ``vize users invite USERNAME``."""

from __future__ import annotations

from enum import StrEnum

from itsdangerous import BadSignature, URLSafeTimedSerializer

from vize.errors import VizeError

INVITE_DAYS = 7
SALT = "vize-invite"


class SignupMode(StrEnum):
    OPEN = "open"
    INVITE = "invite"
    CLOSED = "closed"


class SignupRefused(VizeError):
    status = 403
    code = "signup_closed"


def _serializer(secret: str | bytes) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret, salt=SALT)


def make_invite(secret: str | bytes, username: str) -> str:
    return _serializer(secret).dumps({"u": username})


def invited_username(secret: str | bytes, token: str) -> str | None:
    """The username an invitation token is for, or None (forged, expired, empty)."""
    if not token:
        return None
    try:
        data = _serializer(secret).loads(token, max_age=INVITE_DAYS * 24 * 3600)
    except BadSignature:
        return None
    return str(data["u"]) if isinstance(data, dict) and data.get("u") else None


def check_signup(mode: SignupMode, secret: str | bytes, invite: str, username: str) -> None:
    """403 unless this sign-up is allowed: open, or by a valid invitation for this name."""
    if mode == SignupMode.OPEN:
        return
    if mode == SignupMode.CLOSED:
        raise SignupRefused("Sign-up is closed on this server; ask its administrator.")
    invited = invited_username(secret, invite)
    if invited is None:
        raise SignupRefused(
            "Sign-up is by invitation on this server; the link is missing, wrong or expired.",
            code="invite_required",
        )
    if invited != username:
        raise SignupRefused(
            f"This invitation is for the username {invited!r}.", code="invite_required"
        )
