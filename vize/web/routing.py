"""Pages answer errors as pages: a route class maps service errors to HTML or redirects.

- an anonymous visitor is redirected to the login page (then back);
- a GET that fails (e.g. another user's task: 404) renders the error page with its status;
- a form POST that fails goes back where it came from with the reason as a flash message.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

from vize.api.deps import get_state, session_user, session_user_id
from vize.db.tables import User
from vize.errors import NotFound, VizeError
from vize.web.render import redirect, render
from vize.web.session import CsrfFailed, LoginRequired, safe_next


def _back(request: Request) -> str:
    """The same-origin page the form was posted from, else the task list."""
    referer = urlsplit(request.headers.get("referer", ""))
    if referer.netloc and referer.netloc != request.url.netloc:
        return "/tasks"
    # The path too: "http://us//evil.com/x" has the path "//evil.com/x", which a browser
    # reads as another site (protocol-relative) when it is a Location.
    path = referer.path or "/tasks"
    return safe_next(path + (f"?{referer.query}" if referer.query else ""))


def error_page(request: Request, exc: VizeError) -> Response:
    titles = {403: "Not allowed", 404: "Not found"}
    context = {
        "title": titles.get(exc.status, "Something went wrong"),
        "detail": exc.detail,
        "user": _user(request),
    }
    return render(request, "error.html", context, status=exc.status)


def _user(request: Request) -> User | None:
    """The signed-in user for the error page's navigation (its own short session)."""
    state = get_state(request)
    if session_user_id(state, request) is None:
        return None
    with state.sessions() as db:
        return session_user(state, request, db)


class WebRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def page_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except LoginRequired as exc:
                return redirect(request, f"/login?next={quote(exc.next_url)}")
            except RequestValidationError:
                bad = VizeError("This address has a malformed parameter.", code="invalid")
                return error_page(request, bad)
            except VizeError as exc:
                if request.method == "GET" or isinstance(exc, NotFound | CsrfFailed):
                    return error_page(request, exc)
                return redirect(request, _back(request), exc.detail, kind="error")

        return page_handler


def page_router() -> APIRouter:
    return APIRouter(route_class=WebRoute, include_in_schema=False)
