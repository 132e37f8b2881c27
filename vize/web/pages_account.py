"""Sign up, log in, log out and the account page (token, usage, notifications)."""

from __future__ import annotations

from fastapi import Request, Response

from vize.api.deps import (
    DB,
    State,
    check_credential_allowed,
    client_ip,
    get_state,
    note_credential_failure,
)
from vize.api.schemas import base_url
from vize.db.tables import User
from vize.errors import TooManyRequests, VizeError
from vize.services import accounts_web, email_confirm, invites
from vize.services import usage as usage_service
from vize.services import users as users_service
from vize.services import workspaces as workspaces_service
from vize.web.render import redirect, render
from vize.web.routing import page_router
from vize.web.session import (
    Form,
    MaybeUser,
    PageUser,
    current_session_id,
    log_in,
    log_out,
    safe_next,
)

router = page_router()
USAGE_DAYS = 14


@router.get("/")
def home(user: MaybeUser, request: Request) -> Response:
    return redirect(request, "/tasks" if user else "/login")


@router.get("/login")
def login_page(request: Request, user: MaybeUser, next: str = "") -> Response:
    if user is not None:
        return redirect(request, safe_next(next))
    return render(request, "auth/login.html", {"next": safe_next(next, ""), "username": ""})


@router.post("/login")
def login(request: Request, state: State, db: DB, form: Form) -> Response:
    username = form.get("username", "").strip()
    next_url = safe_next(form.get("next"), "")
    context = {"next": next_url, "username": username}
    try:
        check_credential_allowed(state, request)
        user = users_service.authenticate(db, username, form.get("password", ""))
        if user is None:
            note_credential_failure(state, request)  # 429 beyond the limit
            context["error"] = "Wrong username or password."
            return render(request, "auth/login.html", context, status=400)
        check_credential_allowed(state, request)  # others' failures may have locked it since
    except TooManyRequests as exc:  # a page, not the flash-and-redirect of other form errors
        page = render(request, "auth/login.html", {**context, "error": exc.detail}, status=429)
        page.headers.update(exc.headers or {})
        return page
    response = redirect(request, next_url or "/tasks")
    log_in(response, request, user, db)
    return response


@router.get("/signup")
def signup_page(request: Request, state: State, user: MaybeUser, invite: str = "") -> Response:
    if user is not None:
        return redirect(request, "/tasks")
    invitation = invites.read_invite(state.signer.secret_key, invite) or invites.Invitation()
    invited = invitation.username or None
    context = {"username": invited or "", "email": invitation.email, "invite": invite,
               "invited": invited}  # fmt: skip
    try:  # say so at once, not after the form is filled in
        secret = state.signer.secret_key
        invites.check_signup(
            state.settings.signup, secret, invite, invitation.username, invitation.email
        )
    except VizeError as exc:
        return render(request, "auth/signup.html", {**context, "closed": exc.detail}, exc.status)
    return render(request, "auth/signup.html", context)


@router.post("/signup")
def signup(request: Request, state: State, db: DB, form: Form) -> Response:
    username, email = form.get("username", "").strip(), form.get("email", "").strip()
    invite = form.get("invite", "")
    invited = invites.invited_username(state.signer.secret_key, invite)
    context = {"username": username, "email": email, "invite": invite, "invited": invited}
    try:
        check_signup_rate(state, request)  # before argon2 spends anything
        secret = state.signer.secret_key
        invitation = invites.check_signup(state.settings.signup, secret, invite, username, email)
        user = accounts_web.sign_up(
            db, username, email, form.get("password", ""), form.get("password2", "")
        )
        if invitation is not None:  # a workspace's invitation: the account joins it
            workspaces_service.join_invited(db, user, invitation.workspace_id, invitation.role)
    except VizeError as exc:
        page = render(request, "auth/signup.html", {**context, "error": exc.detail}, exc.status)
        page.headers.update(exc.headers or {})
        return page
    message = f"Welcome, {user.username}! Create your first task."
    if _send_confirmation(request, state, user):
        message += f" A confirmation link went to {user.email}."
    response = redirect(request, "/tasks", message)
    log_in(response, request, user, db)
    return response


def check_signup_rate(state: State, request: Request) -> None:
    """Sign-ups per client address per minute: counted first, refused beyond the limit."""
    counter, limit = state.services.counter, state.settings.signups_per_minute
    if counter is None or not limit:
        return
    count, retry = counter.hit(f"signup:{client_ip(request)}")
    if count > limit:
        raise TooManyRequests(
            f"Too many sign-ups from your address; retry in {retry} s.",
            headers={"Retry-After": str(retry)},
        )


def _send_confirmation(request: Request, state: State, user: User) -> bool:
    base = base_url(request, state.settings)
    counter = state.services.counter
    secret = state.signer.secret_key
    return email_confirm.send_confirmation(state.settings, secret, counter, user, base)


@router.get("/account/confirm-email")
def confirm_email(
    request: Request, state: State, db: DB, user: PageUser, token: str = ""
) -> Response:
    """The link of the confirmation mail (after logging in, if needed: like every page)."""
    user = email_confirm.confirm(db, state.signer.secret_key, token, user)
    return redirect(request, "/account", f"{user.email} is confirmed: notifications go there.")


@router.post("/account/confirm-email")
def resend_confirmation(request: Request, state: State, user: PageUser, form: Form) -> Response:
    if _send_confirmation(request, state, user):
        return redirect(request, "/account", f"A confirmation link went to {user.email}.")
    return redirect(request, "/account", "No link sent (none needed, or too many).", "error")


@router.post("/logout")
def logout(request: Request, db: DB, form: Form) -> Response:
    response = redirect(request, "/login", "You are logged out.")
    log_out(response, request, db)
    return response


@router.post("/account/logout-all")
def logout_everywhere(request: Request, db: DB, user: PageUser, form: Form) -> Response:
    response = redirect(request, "/login", "You are logged out on every device.")
    log_out(response, request, db, everywhere=True)
    return response


@router.get("/account")
def account_page(request: Request, db: DB, user: PageUser) -> Response:
    usage = usage_service.summary(db, user.id)
    daily = list(usage["daily"])[:USAGE_DAYS]  # type: ignore[call-overload]
    peak = max([int(d["classifications"]) for d in daily] or [0])
    context = {"user": user, "usage": usage, "daily": daily, "peak": peak}
    return render(request, "account.html", context)


@router.post("/account/token")
def regenerate_token(request: Request, db: DB, user: PageUser, form: Form) -> Response:
    users_service.regenerate_token(db, user, keep_session=current_session_id(request))
    return redirect(
        request,
        "/account",
        "A new API token replaces the old one; update your clients. "
        "Your other browser sessions are logged out.",
    )


@router.post("/account/preferences")
def preferences(request: Request, db: DB, user: PageUser, form: Form) -> Response:
    notify = form.get("notify_email") in ("on", "true", "1")
    changed = accounts_web.update_preferences(db, user, form.get("email", ""), notify)
    message = "Preferences saved."
    if changed and _send_confirmation(request, get_state(request), user):
        message += f" Follow the link sent to {user.email} to receive notifications there."
    return redirect(request, "/account", message)
