"""Workspace pages: the header's switcher, the members page (invite, change role, remove)
and a new workspace. The switcher's choice is a cookie: pages and the page's own API calls
act in that workspace (``deps.WORKSPACE_COOKIE``)."""

from __future__ import annotations

from fastapi import Request, Response

from vize.api.deps import DB, WORKSPACE_COOKIE, State
from vize.api.routing import min_role
from vize.api.schemas import base_url
from vize.db.states import Role
from vize.db.tables import Workspace
from vize.services import invites
from vize.services import workspaces as svc
from vize.services.invites import SignupMode
from vize.web.render import redirect, render
from vize.web.routing import page_router
from vize.web.session import SESSION_MAX_AGE, Form, PageCaller, PageUser

router = page_router()


def _switch_to(response: Response, request: Request, workspace: Workspace) -> Response:
    response.set_cookie(
        WORKSPACE_COOKIE,
        workspace.id,
        max_age=SESSION_MAX_AGE,
        path="/",
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/workspace/switch")
def switch(request: Request, db: DB, user: PageUser, form: Form) -> Response:
    workspace = svc.membership(db, user, form.get("workspace", ""), Role.VIEWER)
    response = redirect(request, "/tasks", f"Workspace: {workspace.name}.")
    return _switch_to(response, request, workspace)


@router.post("/workspace/new")
def new_workspace(request: Request, db: DB, user: PageUser, form: Form) -> Response:
    workspace = svc.create_workspace(db, user, form.get("name", ""))
    response = redirect(request, "/tasks", f"Created workspace {workspace.name!r}.")
    return _switch_to(response, request, workspace)


def _context(
    db: DB, caller: PageCaller, workspace: Workspace, invitation: str = "", invited: str = ""
) -> dict[str, object]:
    return {
        "user": caller.user,
        "caller": caller,
        "workspace": workspace,
        "members": svc.list_members(db, workspace),
        "is_owner": caller.role.allows(Role.OWNER),
        "roles": [r.value for r in Role],
        "invitation": invitation,  # a sign-up link just made, shown once
        "invited": invited,
    }


@router.get("/workspace")
def members_page(request: Request, db: DB, caller: PageCaller) -> Response:
    assert caller.user is not None  # pages are a signed-in user's
    workspace = svc.membership(db, caller.user, caller.workspace_id, Role.VIEWER)
    return render(request, "workspace.html", _context(db, caller, workspace))


def _owned(db: DB, caller: PageCaller) -> Workspace:
    assert caller.user is not None
    return svc.membership(db, caller.user, caller.workspace_id, Role.OWNER)


@router.post("/workspace/members")
@min_role(Role.VIEWER)  # the owner's check is the membership's (a 403 page for others)
def invite(request: Request, state: State, db: DB, caller: PageCaller, form: Form) -> Response:
    workspace = _owned(db, caller)
    who = form.get("who", "").strip()
    role = svc.parse_role(form.get("role") or Role.VIEWER)
    user = svc.find_user(db, who) if who else None
    if user is not None:
        svc.add_member(db, workspace, user, role)
        return redirect(request, "/workspace", f"{user.username} joined as {role}.")
    if not who or state.settings.signup == SignupMode.CLOSED:
        reason = (
            "Name a username or an email address."
            if not who
            else (f"No user {who!r}, and sign-up is closed on this server.")
        )
        return redirect(request, "/workspace", reason, kind="error")
    email = who if "@" in who else ""
    token = invites.make_invite(
        state.signer.secret_key, "" if email else who, email=email,
        workspace_id=workspace.id, role=str(role),
    )  # fmt: skip
    link = f"{base_url(request, state.settings)}/signup?invite={token}"
    return render(request, "workspace.html", _context(db, caller, workspace, link, who))


@router.post("/workspace/members/{username}/role")
@min_role(Role.VIEWER)
def change_role(
    username: str, request: Request, db: DB, caller: PageCaller, form: Form
) -> Response:
    workspace = _owned(db, caller)
    role = svc.parse_role(form.get("role"))
    svc.set_role(db, workspace, svc.find_user(db, username), role)
    return redirect(request, "/workspace", f"{username} is now {role}.")


@router.post("/workspace/members/{username}/remove")
@min_role(Role.VIEWER)
def remove(username: str, request: Request, db: DB, caller: PageCaller, form: Form) -> Response:
    workspace = _owned(db, caller)
    svc.remove_member(db, workspace, svc.find_user(db, username))
    return redirect(request, "/workspace", f"{username} was removed from {workspace.name}.")
