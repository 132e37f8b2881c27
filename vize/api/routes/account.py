"""/v2/account/ — who am I, token regeneration, notification switch, usage."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from vize.api.deps import DB, CurrentUser, Fields, State
from vize.api.routing import SlashRouter
from vize.api.schemas import base_url, iso
from vize.db.tables import User
from vize.services import email_confirm
from vize.services import usage as usage_service
from vize.services import users as users_service
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
def me(user: CurrentUser) -> dict[str, Any]:
    return account_out(user)


@router.patch("/account/", summary="Update email or the notification switch")
def update_me(
    request: Request, state: State, db: DB, user: CurrentUser, fields: Fields
) -> dict[str, Any]:
    before = user.email
    user = users_service.update_account(db, user, fields)
    if user.email != before:  # a new address gets mail only once its link is followed
        base = base_url(request, state.settings)
        counter = state.services.counter
        secret = state.signer.secret_key
        email_confirm.send_confirmation(state.settings, secret, counter, user, base)
    return account_out(user)


@router.post("/account/regenerate-token/", summary="Replace your API token")
def regenerate_token(db: DB, user: CurrentUser) -> dict[str, Any]:
    return {"token": users_service.regenerate_token(db, user)}


@router.get("/usage/", summary="Images you have classified")
def usage(db: DB, user: CurrentUser) -> dict[str, Any]:
    return usage_service.summary(db, user.id)


@ximilar_router.get("/user/", summary="Your account, where Ximilar's client asks for it")
def ximilar_user(user: CurrentUser) -> dict[str, Any]:
    # The one workspace Vize has per user: the id Ximilar's client may send as workspace.
    workspace = default_workspace(user.id)
    return {
        **account_out(user),
        "default_workspace": workspace,
        "workspaces": [{"id": workspace, "name": "Default", "default": True}],
    }
