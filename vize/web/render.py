"""Jinja2 rendering, one-shot flash messages and the security headers of every page."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from itsdangerous import BadSignature
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from vize import __version__
from vize.api.deps import get_state
from vize.db.states import Role
from vize.services.workspaces import Caller, list_for_user
from vize.web import session

HERE = Path(__file__).resolve().parent
FLASH_COOKIE = "vize_flash"
CSP = (
    "default-src 'self'; img-src 'self' data: blob: http: https:; style-src 'self'; "
    "script-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'; object-src 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def pct(value: Any, digits: int = 1) -> str:
    """0.934 -> '93.4%'; anything missing -> an em dash."""
    if value is None or value == "":
        return "—"
    try:
        return f"{float(value) * 100:.{digits}f}%"
    except (TypeError, ValueError):
        return "—"


def seconds(value: Any) -> str:
    """3.24 -> '3.2 s', 95 -> '1 min 35 s'; anything missing -> an em dash."""
    try:
        total = float(value)
    except (TypeError, ValueError):
        return "—"
    if total < 60:
        return f"{total:.1f} s"
    minutes, rest = divmod(round(total), 60)
    return f"{minutes} min {rest} s"


def when(value: Any) -> str:
    """An ISO timestamp or datetime as 'YYYY-MM-DD HH:MM' (UTC)."""
    if not value:
        return "—"
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    return str(value.strftime("%Y-%m-%d %H:%M"))


def task_type_name(value: str) -> str:
    return "Tagging" if value == "multi_label" else "Categorization"


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(pct=pct, when=when, seconds=seconds, task_type=task_type_name)
    env.globals.update(version=__version__)
    return env


ENV = _environment()


def set_flash(response: Any, request: Request, text: str, kind: str = "success") -> None:
    value = get_state(request).signer.dumps([kind, text])
    response.set_cookie(FLASH_COOKIE, value, max_age=120, httponly=True, samesite="lax")


def _pop_flash(request: Request) -> dict[str, str] | None:
    raw = request.cookies.get(FLASH_COOKIE)
    if not raw:
        return None
    try:
        kind, text = get_state(request).signer.loads(raw, max_age=300)
    except (BadSignature, ValueError, TypeError):
        return None
    return {"kind": str(kind), "text": str(text)}


def _workspace_context(request: Request, caller: Caller | None) -> dict[str, Any]:
    """The header's workspace switcher (the user's workspaces, the current one) and whether
    the page shows editing controls: a viewer gets no upload, train or create buttons."""
    if caller is None or caller.user is None:
        return {"workspaces": [], "current_workspace": None, "can_edit": True}
    with get_state(request).sessions() as db:
        spaces = list_for_user(db, caller.user)
    current = next((ws for ws, _ in spaces if ws.id == caller.workspace_id), None)
    return {
        "workspaces": spaces,
        "current_workspace": current,
        "can_edit": caller.role.allows(Role.EDITOR),
    }


def render(
    request: Request, template: str, context: dict[str, Any] | None = None, status: int = 200
) -> HTMLResponse:
    """Render ``template`` with the request, the user, the CSRF token and any flash message."""
    csrf, new_anon = session.form_csrf(request)
    ctx = {
        "request": request,
        "csrf": csrf,
        "flash": _pop_flash(request),
        "user": None,
        "caller": None,
        "path": request.url.path,
        **(context or {}),
    }
    ctx.update(_workspace_context(request, ctx["caller"]))
    html = ENV.get_template(template).render(ctx)
    response = HTMLResponse(html, status_code=status, headers=PAGE_HEADERS)
    if ctx["flash"] is not None:
        response.delete_cookie(FLASH_COOKIE)
    if new_anon:
        session.set_anon_cookie(response, request, new_anon)
    return response


def redirect(
    request: Request, url: str, message: str | None = None, kind: str = "success"
) -> RedirectResponse:
    """A 303 (POST -> GET) redirect, optionally carrying a flash message."""
    response = RedirectResponse(url, status_code=303)
    if message:
        set_flash(response, request, message, kind)
    return response


def json_attr(value: Any) -> str:
    """Data for a ``data-*`` attribute (Jinja escapes it): scripts stay out of the HTML."""
    return json.dumps(value, separators=(",", ":"))


ENV.filters["json_attr"] = json_attr
