"""Workspaces: who is calling, in which workspace, with which role.

Ximilar's client sends ``workspace=<uuid>`` (query parameter and body field) when it was
created with one; without it a request acts in the caller's default workspace, whose id is
derived from the user id (so it is the id the client has always seen). A workspace the caller
is not a member of answers 404, never the default workspace's data.

``resolve_user`` / ``resolve_token`` run once per request and give the one ``Caller`` the
routes pass to the services: every query scopes by ``caller.workspace_id`` (see
``services.common.get_owned`` and ``in_workspace``), never by the user id.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from vize.db.engine import savepoint
from vize.db.states import Role
from vize.db.tables import Image, Model, Task, User, Workspace, WorkspaceMember, WorkspaceToken
from vize.errors import Conflict, InvalidInput, NotFound, VizeError
from vize.services.common import name_field

# Fixed namespace: a user's default workspace id is derived from the user id, so it stays
# what Ximilar's client was told (migration 0009 froze the same value).
WORKSPACE_NAMESPACE = uuid.UUID("6f1c2b7e-93a4-4f5d-9a0e-2b8d1c4e7a10")
# What the Ximilar client calls the default workspace when none was given (it sends nothing).
DEFAULT_NAMES = ("Default", "default")
DEFAULT_NAME = "Default"
# Service tokens carry this prefix: the credential check knows which table to ask.
SERVICE_TOKEN_PREFIX = "vzs_"


class ForbiddenRole(VizeError):
    status = 403
    code = "forbidden_role"


def default_workspace(user_id: str) -> str:
    return str(uuid.uuid5(WORKSPACE_NAMESPACE, user_id))


@dataclass(frozen=True)
class Caller:
    """The request's subject: a user (or a service token) acting in one workspace."""

    workspace_id: str
    role: Role
    user_id: str  # the user; for a service token, the user who made it (usage, job owner)
    user: User | None = None  # None when a service token authenticated
    token_id: str | None = None

    @property
    def actor(self) -> str:
        """Key of the caller's own rate limits and fair share: the user, or the token."""
        return f"token:{self.token_id}" if self.token_id else self.user_id

    def require(self, needed: Role) -> None:
        if not self.role.allows(needed):
            raise ForbiddenRole(f"Your role in this workspace is {self.role}; this needs {needed}.")


def workspace_not_found() -> NotFound:
    return NotFound(
        "Workspace not found, or you are not a member of it (your workspaces: GET /v2/workspace/).",
        code="workspace_not_found",
    )


def _ref_id(ref: Any) -> str | None:
    """The workspace id a request names, None for the default, 404 for what names none."""
    if ref is None or ref == "" or ref in DEFAULT_NAMES:
        return None
    if not isinstance(ref, str):
        raise workspace_not_found()
    try:
        return str(uuid.UUID(ref.strip()))
    except ValueError:
        raise workspace_not_found() from None


def ensure_default(db: Session, user: User) -> WorkspaceMember:
    """The user's default workspace and their owner membership, created on first need (for
    accounts made before a code path created it); a parallel request may create it first."""
    wid = default_workspace(user.id)
    member = db.get(WorkspaceMember, (wid, user.id))
    if member is not None:
        return member
    try:
        with savepoint(db):
            if db.get(Workspace, wid) is None:
                db.add(Workspace(id=wid, name=DEFAULT_NAME, default_for=user.id))
                db.flush()
            db.add(WorkspaceMember(workspace_id=wid, user_id=user.id, role=Role.OWNER))
            db.flush()
    except IntegrityError:
        pass
    member = db.get(WorkspaceMember, (wid, user.id))
    if member is None:  # the default exists without its user: never left so by this code
        raise workspace_not_found()
    return member


def resolve_user(db: Session, user: User, ref: Any) -> Caller:
    wid = _ref_id(ref) or default_workspace(user.id)
    member = db.get(WorkspaceMember, (wid, user.id))
    if member is None and wid == default_workspace(user.id):
        member = ensure_default(db, user)
    if member is None:
        raise workspace_not_found()
    return Caller(wid, Role(member.role), user.id, user=user)


def resolve_token(token: WorkspaceToken, ref: Any) -> Caller:
    """A service token acts in its own workspace only: naming another is a 404."""
    wid = _ref_id(ref)
    if wid is not None and wid != token.workspace_id:
        raise workspace_not_found()
    return Caller(token.workspace_id, Role(token.role), token.created_by, token_id=token.id)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_service_token() -> str:
    return SERVICE_TOKEN_PREFIX + secrets.token_hex(24)


def token_by_secret(db: Session, token: str) -> WorkspaceToken | None:
    """The live service token with this secret (only its hash is stored)."""
    if not token.startswith(SERVICE_TOKEN_PREFIX) or len(token) > 64:
        return None
    if not (token.isascii() and token.isprintable()):
        return None
    row = db.scalar(select(WorkspaceToken).where(WorkspaceToken.token_hash == hash_token(token)))
    if row is None or not secrets.compare_digest(row.token_hash, hash_token(token)):
        return None
    return row


# -- workspaces ------------------------------------------------------------------------------
def parse_role(value: Any) -> Role:
    try:
        return Role(str(value).strip().lower())
    except ValueError:
        roles = ", ".join(r.value for r in Role)
        raise InvalidInput(f"'role' must be one of {roles}.", code="invalid_role") from None


def list_for_user(db: Session, user: User) -> list[tuple[Workspace, Role]]:
    """The user's workspaces with their role: the default one first, then by name."""
    ensure_default(db, user)
    rows = db.execute(
        select(Workspace, WorkspaceMember.role)
        .join(WorkspaceMember, WorkspaceMember.workspace_id == Workspace.id)
        .where(WorkspaceMember.user_id == user.id)
        .order_by(Workspace.default_for.is_(None), Workspace.name, Workspace.id)
    ).all()
    return [(ws, Role(role)) for ws, role in rows]


def _name(value: Any) -> str:
    name = name_field(value, "name")
    if not name:
        raise InvalidInput("Workspace name must not be empty.", code="invalid_name")
    return name


def create_workspace(db: Session, user: User, name: Any) -> Workspace:
    workspace = Workspace(name=_name(name))
    db.add(workspace)
    db.flush()
    db.add(WorkspaceMember(workspace_id=workspace.id, user_id=user.id, role=Role.OWNER))
    db.flush()
    return workspace


def membership(db: Session, user: User, workspace_id: Any, needed: Role) -> Workspace:
    """The workspace ``workspace_id`` if the user is a member (else 404, as for one that does
    not exist) with at least the role ``needed`` (else 403)."""
    # A path id answers like every other object's (``not_found``); a ``workspace`` reference
    # of a request answers ``workspace_not_found``.
    try:
        wid = str(uuid.UUID(str(workspace_id)))
    except ValueError:
        raise NotFound("Workspace not found.") from None
    member = db.get(WorkspaceMember, (wid, user.id))
    workspace = db.get(Workspace, wid)
    if member is None or workspace is None:
        raise NotFound("Workspace not found.")
    Caller(wid, Role(member.role), user.id, user=user).require(needed)
    return workspace


def rename_workspace(db: Session, workspace: Workspace, name: Any) -> Workspace:
    workspace.name = _name(name)
    db.flush()
    return workspace


def delete_workspace(db: Session, workspace: Workspace) -> tuple[list[str], list[str]]:
    """Delete it and (cascading in the database) everything in it; returns the keys of its
    image files and of its model files, to purge after the commit."""
    if workspace.default_for is not None:
        raise Conflict("A user's default workspace cannot be deleted.", code="default_workspace")
    images = db.execute(
        select(Image.blob_key, Image.thumb_key).where(Image.workspace_id == workspace.id)
    ).all()
    models = db.scalars(
        select(Model.artifact_key)
        .join(Task, Task.id == Model.task_id)
        .where(Task.workspace_id == workspace.id)
    )
    image_keys = [k for row in images for k in row]
    model_keys = [k for k in models if k]
    db.execute(delete(Workspace).where(Workspace.id == workspace.id))
    return image_keys, model_keys


# -- members ---------------------------------------------------------------------------------
def find_user(db: Session, who: str) -> User | None:
    """A user by username, else by (case-insensitive) email address."""
    user = db.scalar(select(User).where(User.username == who))
    if user is None and "@" in who:
        user = db.scalar(select(User).where(func.lower(User.email) == who.lower()).limit(1))
    return user


def list_members(db: Session, workspace: Workspace) -> list[tuple[User, Role]]:
    rows = db.execute(
        select(User, WorkspaceMember.role)
        .join(WorkspaceMember, WorkspaceMember.user_id == User.id)
        .where(WorkspaceMember.workspace_id == workspace.id)
        .order_by(User.username)
    ).all()
    return [(user, Role(role)) for user, role in rows]


def add_member(db: Session, workspace: Workspace, user: User, role: Role) -> WorkspaceMember:
    if db.get(WorkspaceMember, (workspace.id, user.id)) is not None:
        raise Conflict(f"{user.username} is a member already.", code="already_member")
    member = WorkspaceMember(workspace_id=workspace.id, user_id=user.id, role=role)
    try:
        with savepoint(db):
            db.add(member)
            db.flush()
    except IntegrityError:  # added by a parallel request
        raise Conflict(f"{user.username} is a member already.", code="already_member") from None
    return member


def _member(db: Session, workspace: Workspace, user: User | None) -> WorkspaceMember:
    member = db.get(WorkspaceMember, (workspace.id, user.id)) if user is not None else None
    if member is None:
        raise NotFound("No such member in this workspace.", code="member_not_found")
    return member


def _keep_an_owner(db: Session, workspace: Workspace, member: WorkspaceMember) -> None:
    if workspace.default_for == member.user_id:
        raise Conflict(
            "The user whose default workspace this is stays its owner.", code="default_owner"
        )
    if member.role == Role.OWNER:
        owners = db.scalar(
            select(func.count()).where(
                WorkspaceMember.workspace_id == workspace.id, WorkspaceMember.role == Role.OWNER
            )
        )
        if (owners or 0) <= 1:
            raise Conflict("A workspace keeps at least one owner.", code="last_owner")


def set_role(db: Session, workspace: Workspace, user: User | None, role: Role) -> WorkspaceMember:
    member = _member(db, workspace, user)
    if member.role != role:
        _keep_an_owner(db, workspace, member)
        member.role = role
        db.flush()
    return member


def remove_member(db: Session, workspace: Workspace, user: User | None) -> None:
    """Their access ends with this commit: every request resolves the membership anew."""
    member = _member(db, workspace, user)
    _keep_an_owner(db, workspace, member)
    db.delete(member)
    db.flush()


# -- service tokens --------------------------------------------------------------------------
def create_token(
    db: Session, workspace: Workspace, maker: User, name: Any, role: Role
) -> tuple[WorkspaceToken, str]:
    """A new service token; the secret is returned once, only its hash is kept."""
    secret = new_service_token()
    row = WorkspaceToken(
        workspace_id=workspace.id,
        name=name_field(name, "name"),
        role=role,
        token_hash=hash_token(secret),
        prefix=secret[:10],
        created_by=maker.id,
    )
    db.add(row)
    db.flush()
    return row, secret


def list_tokens(db: Session, workspace: Workspace) -> list[WorkspaceToken]:
    stmt = select(WorkspaceToken).where(WorkspaceToken.workspace_id == workspace.id)
    return list(db.scalars(stmt.order_by(WorkspaceToken.created, WorkspaceToken.id)))


def revoke_token(db: Session, workspace: Workspace, token_id: Any) -> None:
    row = db.get(WorkspaceToken, str(token_id)) if isinstance(token_id, str) else None
    if row is None or row.workspace_id != workspace.id:
        raise NotFound("Service token not found.", code="not_found")
    db.delete(row)
    db.flush()


def join_invited(db: Session, user: User, workspace_id: str, role: str) -> None:
    """A new account made with a workspace's invitation joins it (if it still exists)."""
    workspace = db.get(Workspace, workspace_id) if workspace_id else None
    if workspace is None:
        return
    with suppress(Conflict):
        add_member(db, workspace, user, parse_role(role))
