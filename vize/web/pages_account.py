"""Sign up, log in, log out and the account page (token, usage, notifications)."""

from __future__ import annotations

from fastapi import Request, Response

from vize.api.deps import DB, State, check_credential_allowed, note_credential_failure
from vize.errors import TooManyRequests, VizeError
from vize.services import accounts_web
from vize.services import usage as usage_service
from vize.services import users as users_service
from vize.web.render import redirect, render
from vize.web.routing import page_router
from vize.web.session import Form, MaybeUser, PageUser, log_in, log_out, safe_next

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
    log_in(response, request, user)
    return response


@router.get("/signup")
def signup_page(request: Request, user: MaybeUser) -> Response:
    if user is not None:
        return redirect(request, "/tasks")
    return render(request, "auth/signup.html", {"username": "", "email": ""})


@router.post("/signup")
def signup(request: Request, db: DB, form: Form) -> Response:
    username, email = form.get("username", "").strip(), form.get("email", "").strip()
    try:
        user = accounts_web.sign_up(
            db, username, email, form.get("password", ""), form.get("password2", "")
        )
    except VizeError as exc:
        context = {"error": exc.detail, "username": username, "email": email}
        return render(request, "auth/signup.html", context, status=exc.status)
    response = redirect(request, "/tasks", f"Welcome, {user.username}! Create your first task.")
    log_in(response, request, user)
    return response


@router.post("/logout")
def logout(request: Request, form: Form) -> Response:
    response = redirect(request, "/login", "You are logged out.")
    log_out(response)
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
    users_service.regenerate_token(db, user)
    return redirect(
        request, "/account", "A new API token replaces the old one; update your clients."
    )


@router.post("/account/preferences")
def preferences(request: Request, db: DB, user: PageUser, form: Form) -> Response:
    notify = form.get("notify_email") in ("on", "true", "1")
    accounts_web.update_preferences(db, user, form.get("email", ""), notify)
    return redirect(request, "/account", "Preferences saved.")
