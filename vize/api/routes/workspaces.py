"""/v2/workspace/ — workspaces, their members (by username or email; an invitation link for
someone without an account) and their service tokens.

These routes act on the workspace of the path: each checks the caller's membership and role
there (404 for a non-member, 403 for a role below the one needed), so they are open to any
role in the workspace of the request. A service token cannot use them: they are a person's."""

from __future__ import annotations

from typing import Any

from fastapi import Request, Response

from vize.api.deps import DB, CurrentCaller, Fields, State, caller_user
from vize.api.routing import SlashRouter, min_role
from vize.api.schemas import base_url, iso
from vize.db.states import Role
from vize.db.tables import User, Workspace, WorkspaceToken
from vize.errors import InvalidInput, NotFound
from vize.services import images as images_service
from vize.services import invites
from vize.services import tasks as tasks_service
from vize.services import workspaces as svc
from vize.services.common import text_field
from vize.services.invites import SignupMode

router = SlashRouter(prefix="/workspace", tags=["workspaces"])


def workspace_out(workspace: Workspace, role: Role, user: User) -> dict[str, Any]:
    return {
        "id": workspace.id,
        "name": workspace.name,
        "role": str(role),
        "default": workspace.default_for == user.id,
        "created": iso(workspace.created),
    }


def member_out(user: User, role: Role) -> dict[str, Any]:
    return {"user_id": user.id, "username": user.username, "email": user.email, "role": str(role)}


def token_out(row: WorkspaceToken) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "role": row.role,
        "prefix": row.prefix,
        "created_by": row.created_by,
        "created": iso(row.created),
    }


@router.get("/", summary="Your workspaces, with your role in each")
def list_workspaces(db: DB, caller: CurrentCaller) -> dict[str, Any]:
    user = caller_user(caller)
    items = [workspace_out(ws, role, user) for ws, role in svc.list_for_user(db, user)]
    return {"count": len(items), "next": None, "previous": None, "results": items}


@router.post("/", status_code=201, summary="Create a workspace (you are its owner)")
@min_role(Role.VIEWER)  # a new workspace of one's own: no right in the current one is used
def create_workspace(db: DB, caller: CurrentCaller, fields: Fields) -> dict[str, Any]:
    user = caller_user(caller)
    return workspace_out(svc.create_workspace(db, user, fields.get("name")), Role.OWNER, user)


@router.get("/{workspace_id}/", summary="A workspace")
def get_workspace(workspace_id: str, db: DB, caller: CurrentCaller) -> dict[str, Any]:
    user = caller_user(caller)
    workspace = svc.membership(db, user, workspace_id, Role.VIEWER)
    return workspace_out(workspace, _role(db, workspace, user), user)


@router.patch("/{workspace_id}/", summary="Rename a workspace (owner)")
@min_role(Role.VIEWER)
def rename_workspace(
    workspace_id: str, db: DB, caller: CurrentCaller, fields: Fields
) -> dict[str, Any]:
    user = caller_user(caller)
    workspace = svc.membership(db, user, workspace_id, Role.OWNER)
    return workspace_out(svc.rename_workspace(db, workspace, fields.get("name")), Role.OWNER, user)


@router.delete("/{workspace_id}/", status_code=204, summary="Delete a workspace and its data")
@min_role(Role.VIEWER)
def delete_workspace(workspace_id: str, state: State, caller: CurrentCaller) -> Response:
    user = caller_user(caller)
    with state.sessions.begin() as db:  # committed before its files go
        workspace = svc.membership(db, user, workspace_id, Role.OWNER)
        image_keys, model_keys = svc.delete_workspace(db, workspace)
    images_service.purge_unused_blobs(state.sessions, state.blobs, image_keys)
    tasks_service.purge_model_files(state.sessions, state.blobs, model_keys)
    return Response(status_code=204)


def _role(db: DB, workspace: Workspace, user: User) -> Role:
    return next(role for u, role in svc.list_members(db, workspace) if u.id == user.id)


# -- members ---------------------------------------------------------------------------------
@router.get("/{workspace_id}/member/", summary="Members and their roles")
def list_members(workspace_id: str, db: DB, caller: CurrentCaller) -> dict[str, Any]:
    workspace = svc.membership(db, caller_user(caller), workspace_id, Role.VIEWER)
    items = [member_out(u, role) for u, role in svc.list_members(db, workspace)]
    return {"count": len(items), "next": None, "previous": None, "results": items}


def _who(fields: dict[str, Any], request: Request) -> str:
    """The member a request names: ``username``, ``email`` or ``user`` (body or query)."""
    for key in ("username", "email", "user"):
        value = fields.get(key) or request.query_params.get(key)
        if value:
            return text_field(value, key, 254, strip=True)
    raise InvalidInput("Name the member: 'username' or 'email'.", code="required")


@router.post("/{workspace_id}/member/", status_code=201, summary="Add a member (owner)")
@min_role(Role.VIEWER)
def add_member(
    workspace_id: str,
    request: Request,
    response: Response,
    state: State,
    db: DB,
    caller: CurrentCaller,
    fields: Fields,
) -> dict[str, Any]:
    """An existing user joins at once; for someone without an account the answer is an
    invitation link (202), which makes the account and joins it (``VIZE_SIGNUP`` open or
    invite; with sign-up closed only existing users can be added)."""
    workspace = svc.membership(db, caller_user(caller), workspace_id, Role.OWNER)
    who = _who(fields, request)
    role = svc.parse_role(fields.get("role") or Role.VIEWER)
    user = svc.find_user(db, who)
    if user is not None:
        svc.add_member(db, workspace, user, role)
        return member_out(user, role)
    if state.settings.signup == SignupMode.CLOSED:
        raise NotFound(
            f"No user {who!r}, and sign-up is closed on this server: ask its administrator "
            "to create the account first.",
            code="user_not_found",
        )
    email = who if "@" in who else ""
    token = invites.make_invite(
        state.signer.secret_key, "" if email else who, email=email,
        workspace_id=workspace.id, role=str(role),
    )  # fmt: skip
    response.status_code = 202
    link = f"{base_url(request, state.settings)}/signup?invite={token}"
    return {"invited": who, "role": str(role), "invitation": link, "expires_in_days": 7}


@router.patch("/{workspace_id}/member/", summary="Change a member's role (owner)")
@min_role(Role.VIEWER)
def change_role(
    workspace_id: str, request: Request, db: DB, caller: CurrentCaller, fields: Fields
) -> dict[str, Any]:
    workspace = svc.membership(db, caller_user(caller), workspace_id, Role.OWNER)
    user = svc.find_user(db, _who(fields, request))
    role = svc.parse_role(fields.get("role"))
    svc.set_role(db, workspace, user, role)
    assert user is not None  # set_role answered 404 otherwise
    return member_out(user, role)


@router.delete("/{workspace_id}/member/", status_code=204, summary="Remove a member (owner)")
@min_role(Role.VIEWER)
def remove_member(
    workspace_id: str, request: Request, db: DB, caller: CurrentCaller, fields: Fields
) -> Response:
    workspace = svc.membership(db, caller_user(caller), workspace_id, Role.OWNER)
    svc.remove_member(db, workspace, svc.find_user(db, _who(fields, request)))
    return Response(status_code=204)


# -- service tokens --------------------------------------------------------------------------
@router.get("/{workspace_id}/token/", summary="Service tokens (owner)")
def list_tokens(workspace_id: str, db: DB, caller: CurrentCaller) -> dict[str, Any]:
    workspace = svc.membership(db, caller_user(caller), workspace_id, Role.OWNER)
    items = [token_out(t) for t in svc.list_tokens(db, workspace)]
    return {"count": len(items), "next": None, "previous": None, "results": items}


@router.post("/{workspace_id}/token/", status_code=201, summary="New service token (owner)")
@min_role(Role.VIEWER)
def create_token(
    workspace_id: str, db: DB, caller: CurrentCaller, fields: Fields
) -> dict[str, Any]:
    """The token itself is in this answer only (the server keeps its hash)."""
    user = caller_user(caller)
    workspace = svc.membership(db, user, workspace_id, Role.OWNER)
    role = svc.parse_role(fields.get("role") or Role.VIEWER)
    row, secret = svc.create_token(db, workspace, user, fields.get("name") or "", role)
    return {**token_out(row), "token": secret}


@router.delete(
    "/{workspace_id}/token/{token_id}/", status_code=204, summary="Revoke a service token"
)
@min_role(Role.VIEWER)
def revoke_token(workspace_id: str, token_id: str, db: DB, caller: CurrentCaller) -> Response:
    workspace = svc.membership(db, caller_user(caller), workspace_id, Role.OWNER)
    svc.revoke_token(db, workspace, token_id)
    return Response(status_code=204)
