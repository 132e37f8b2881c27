"""Workspaces, as far as Vize has them: one per user, its default, with a stable id.

Ximilar's client sends ``workspace=<uuid>`` (query parameter and body field) when it was
created with one. Until Vize has several workspaces per user, the only workspace that exists
is the user's default; any other id is refused with 404 (never ignored: ignoring it would
act on the default workspace's data while the caller meant another).
"""

from __future__ import annotations

import uuid
from typing import Any

from vize.errors import NotFound

# Fixed namespace: a user's workspace id is derived from the user id, so it needs no column
# and stays the same across restarts and replicas.
WORKSPACE_NAMESPACE = uuid.UUID("6f1c2b7e-93a4-4f5d-9a0e-2b8d1c4e7a10")
# What the Ximilar client calls the default workspace when none was given (it sends nothing).
DEFAULT_NAMES = ("Default", "default")


def default_workspace(user_id: str) -> str:
    return str(uuid.uuid5(WORKSPACE_NAMESPACE, user_id))


def check_workspace(user_id: str, ref: Any) -> None:
    """404 unless ``ref`` is absent or names the user's default workspace."""
    if ref is None or ref == "" or ref in DEFAULT_NAMES:
        return
    if not isinstance(ref, str) or ref.strip().lower() != default_workspace(user_id):
        raise NotFound(
            "Workspace not found. Vize has one workspace per user, its default "
            "(its id is 'default_workspace' in GET /account/v2/user/).",
            code="workspace_not_found",
        )
