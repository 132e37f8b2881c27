"""The browser session: signed cookie login, CSRF tokens for forms, the page user.

Logged-in forms are bound to the session cookie (``deps.csrf_token``); the login and sign-up
forms, before any session exists, are bound to a signed anonymous cookie instead.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Annotated, Any

from fastapi import Depends, Request
from itsdangerous import BadSignature
from sqlalchemy.orm import Session

from vize.api.deps import (
    DB,
    SESSION_COOKIE,
    SESSION_MAX_AGE,
    WORKSPACE_COOKIE,
    csrf_token,
    get_state,
    needed_role,
    session_claims,
    session_user,
    session_user_id,
)
from vize.db.tables import User
from vize.errors import NotFound, VizeError
from vize.services import sessions as sessions_service
from vize.services.workspaces import Caller, resolve_user

ANON_COOKIE = "vize_anon"
CSRF_FIELD = "csrf_token"


class LoginRequired(Exception):
    """Raised by page dependencies for anonymous visitors; answered with a redirect."""

    def __init__(self, next_url: str) -> None:
        super().__init__(next_url)
        self.next_url = next_url


class CsrfFailed(VizeError):
    status = 403
    code = "csrf_failed"


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def log_in(response: Any, request: Request, user: User, db: Session) -> None:
    sid = sessions_service.start(db, user)
    value = get_state(request).signer.dumps({"uid": user.id, "sid": sid})
    response.set_cookie(
        SESSION_COOKIE,
        value,
        max_age=SESSION_MAX_AGE,
        path="/",
        httponly=True,
        samesite="lax",
        secure=_secure(request),
    )
    response.delete_cookie(ANON_COOKIE, path="/")


def current_session_id(request: Request) -> str:
    claims = session_claims(get_state(request), request)
    return claims[1] if claims else ""


def log_out(response: Any, request: Request, db: Session, everywhere: bool = False) -> None:
    """End this browser's session on the server (or all of the user's), not just its cookie:
    a copy of the cookie must stop working too."""
    claims = session_claims(get_state(request), request)
    if claims is not None:
        if everywhere:
            sessions_service.end_all(db, claims[0])
        else:
            sessions_service.end(db, claims[1])
    response.delete_cookie(SESSION_COOKIE, path="/")


def set_anon_cookie(response: Any, request: Request, value: str) -> None:
    response.set_cookie(
        ANON_COOKIE,
        value,
        max_age=SESSION_MAX_AGE,
        path="/",
        httponly=True,
        samesite="lax",
        secure=_secure(request),
    )


def _csrf_source(request: Request) -> str | None:
    """The cookie value forms are bound to: the live session, else the anonymous cookie."""
    state = get_state(request)
    if session_user_id(state, request) is not None:
        return request.cookies.get(SESSION_COOKIE, "")
    anon = request.cookies.get(ANON_COOKIE, "")
    if anon:
        try:
            state.signer.loads(anon, max_age=SESSION_MAX_AGE)
            return anon
        except BadSignature:
            return None
    return None


def form_csrf(request: Request) -> tuple[str, str | None]:
    """(token for the page's forms, a new anonymous cookie to set or None)."""
    state = get_state(request)
    source = _csrf_source(request)
    if source is not None:
        return csrf_token(state.signer, source), None
    anon = state.signer.dumps({"anon": secrets.token_hex(16)})
    return csrf_token(state.signer, anon), anon


def api_csrf(request: Request) -> str:
    """The ``X-CSRFToken`` value the page's scripts send with cookie-authenticated API calls."""
    return csrf_token(get_state(request).signer, request.cookies.get(SESSION_COOKIE, ""))


async def checked_form(request: Request) -> dict[str, str]:
    """The posted form as text fields, after checking its CSRF token."""
    form = await request.form()
    sent = str(form.get(CSRF_FIELD) or "")
    source = _csrf_source(request)
    expected = csrf_token(get_state(request).signer, source) if source else ""
    if not expected or not hmac.compare_digest(sent, expected):
        raise CsrfFailed("The form expired or came from another site. Reload the page and retry.")
    return {key: str(value) for key, value in form.items() if isinstance(value, str)}


def optional_user(request: Request, db: DB) -> User | None:
    return session_user(get_state(request), request, db)


def required_user(request: Request, user: Annotated[User | None, Depends(optional_user)]) -> User:
    if user is None:
        path = request.url.path
        query = f"?{request.url.query}" if request.url.query else ""
        raise LoginRequired(path + query if request.method == "GET" else "/tasks")
    return user


def safe_next(value: str | None, default: str = "/tasks") -> str:
    """Only same-site paths: never an open redirect."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return default
    return value


PageUser = Annotated[User, Depends(required_user)]


def page_caller(request: Request, db: DB, user: PageUser) -> Caller:
    """The signed-in user in the workspace chosen with the header's switcher (its cookie),
    else the default one (also once removed from the chosen one); the page's role check is
    the API's (``deps.needed_role``): a form post needs an editor unless marked otherwise."""
    try:
        caller = resolve_user(db, user, request.cookies.get(WORKSPACE_COOKIE))
    except NotFound:
        caller = resolve_user(db, user, None)
    caller.require(needed_role(request))
    return caller


PageCaller = Annotated[Caller, Depends(page_caller)]
MaybeUser = Annotated[User | None, Depends(optional_user)]
Form = Annotated[dict[str, str], Depends(checked_form)]
