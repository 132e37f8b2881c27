"""Who may sign up: ``VIZE_SIGNUP`` open, invite or closed, and invitation links.

An invitation is a signed token naming the username (or the email address) it is for: it
works until that account exists (so once), for INVITE_DAYS. Admins make them with
``vize users invite USERNAME``; a workspace owner makes one by adding a member who has no
account yet, and then it also names the workspace and the role the new account joins with."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

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


@dataclass(frozen=True)
class Invitation:
    username: str = ""  # the account's name must be this, if set
    email: str = ""  # or its address this
    workspace_id: str = ""  # and it joins this workspace
    role: str = ""  # with this role


def make_invite(
    secret: str | bytes, username: str = "", *, email: str = "", workspace_id: str = "",
    role: str = "",
) -> str:  # fmt: skip
    data: dict[str, Any] = {"u": username}
    if email:
        data["e"] = email
    if workspace_id:
        data.update(w=workspace_id, r=role)
    return _serializer(secret).dumps(data)


def read_invite(secret: str | bytes, token: str) -> Invitation | None:
    """The invitation of a token, or None (forged, expired, empty)."""
    if not token:
        return None
    try:
        data = _serializer(secret).loads(token, max_age=INVITE_DAYS * 24 * 3600)
    except BadSignature:
        return None
    if not isinstance(data, dict) or not (data.get("u") or data.get("e")):
        return None
    return Invitation(
        str(data.get("u") or ""), str(data.get("e") or ""), str(data.get("w") or ""),
        str(data.get("r") or ""),
    )  # fmt: skip


def invited_username(secret: str | bytes, token: str) -> str | None:
    """The username an invitation token is for, or None (forged, expired, empty, or an
    invitation by email address)."""
    invitation = read_invite(secret, token)
    return invitation.username or None if invitation is not None else None


def check_signup(
    mode: SignupMode, secret: str | bytes, invite: str, username: str, email: str = ""
) -> Invitation | None:
    """403 unless this sign-up is allowed: open, or by a valid invitation for this name (or
    this address). Returns the invitation, if the sign-up came with a valid one."""
    invitation = read_invite(secret, invite)
    if mode == SignupMode.CLOSED:
        raise SignupRefused("Sign-up is closed on this server; ask its administrator.")
    if mode == SignupMode.OPEN:
        return invitation if invitation is not None and _fits(invitation, username, email) else None
    if invitation is None:
        raise SignupRefused(
            "Sign-up is by invitation on this server; the link is missing, wrong or expired.",
            code="invite_required",
        )
    if invitation.username and invitation.username != username:
        raise SignupRefused(
            f"This invitation is for the username {invitation.username!r}.",
            code="invite_required",
        )
    if invitation.email and invitation.email.lower() != email.strip().lower():
        raise SignupRefused(
            f"This invitation is for the address {invitation.email!r}.", code="invite_required"
        )
    return invitation


def _fits(invitation: Invitation, username: str, email: str) -> bool:
    if invitation.username:
        return invitation.username == username
    return invitation.email.lower() == email.strip().lower()
