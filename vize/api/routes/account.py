"""/v2/account/ — who am I, token regeneration, notification switch, usage."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from vize.api.deps import DB, CurrentCaller, Fields, State, caller_user
from vize.api.routing import SlashRouter, min_role
from vize.api.schemas import base_url, iso
from vize.db.states import Role
from vize.db.tables import User
from vize.services import email_confirm
from vize.services import usage as usage_service
from vize.services import users as users_service
from vize.services import workspaces as workspaces_service
from vize.services.workspaces import default_workspace

router = SlashRouter(tags=["account"])
# Mounted at /account/v2: where Ximilar's client asks for the user (get_user_details).
ximilar_router = SlashRouter(tags=["account"])


def account_out(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "username": user.username,
        "email": user.email,
        "notify_email": user.notify_email,
        "created": iso(user.created),
    }


@router.get("/account/", summary="Your account")
def me(caller: CurrentCaller) -> dict[str, Any]:
    return account_out(caller_user(caller))


# The account is the user's own, whatever their role in the workspace of the request.
@router.patch("/account/", summary="Update email or the notification switch")
@min_role(Role.VIEWER)
def update_me(
    request: Request, state: State, db: DB, caller: CurrentCaller, fields: Fields
) -> dict[str, Any]:
    user = caller_user(caller)
    before = user.email
    user = users_service.update_account(db, user, fields)
    if user.email != before:  # a new address gets mail only once its link is followed
        base = base_url(request, state.settings)
        counter = state.services.counter
        secret = state.signer.secret_key
        email_confirm.send_confirmation(state.settings, secret, counter, user, base)
    return account_out(user)


@router.post("/account/regenerate-token/", summary="Replace your API token")
@min_role(Role.VIEWER)
def regenerate_token(db: DB, caller: CurrentCaller) -> dict[str, Any]:
    return {"token": users_service.regenerate_token(db, caller_user(caller))}


@router.get("/usage/", summary="Images classified by you, and in the workspace")
def usage(db: DB, caller: CurrentCaller) -> dict[str, Any]:
    return {
        **usage_service.summary(db, caller.user_id),
        "workspace": {
            "id": caller.workspace_id,
            **usage_service.workspace_summary(db, caller.workspace_id),
        },
    }


@ximilar_router.get("/user/", summary="Your account, where Ximilar's client asks for it")
def ximilar_user(db: DB, caller: CurrentCaller) -> dict[str, Any]:
    # The ids Ximilar's client may send as workspace: the default one, and every other one
    # the user is a member of.
    user = caller_user(caller)
    mine = workspaces_service.list_for_user(db, user)
    return {
        **account_out(user),
        "default_workspace": default_workspace(user.id),
        "workspaces": [
            {"id": ws.id, "name": ws.name, "default": ws.default_for == user.id} for ws, _ in mine
        ],
    }
