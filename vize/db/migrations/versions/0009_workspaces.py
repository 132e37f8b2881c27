"""workspaces, members, service tokens, workspace usage; workspace_id on tasks, labels,
images, jobs and predictions

Every user gets their default workspace (its id derived from the user id, as Ximilar's
client has seen it so far) with the user as its owner, and every existing object moves into
its owner's default workspace. ``owner_id`` stays, as who created the object.

Revision ID: 0009
Revises: 0006
Create Date: 2026-12-01 15:00:00
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# vize.services.workspaces.WORKSPACE_NAMESPACE, frozen here: the ids must never change.
WORKSPACE_NAMESPACE = uuid.UUID("6f1c2b7e-93a4-4f5d-9a0e-2b8d1c4e7a10")
SCOPED = ("tasks", "labels", "images", "jobs", "predictions")


def _create_tables() -> None:
    op.create_table(
        "workspaces",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("default_for", sa.String(length=36), nullable=True),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["default_for"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("default_for"),
    )
    op.create_table(
        "workspace_members",
        sa.Column("workspace_id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("role", sa.String(length=10), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("workspace_id", "user_id"),
    )
    with op.batch_alter_table("workspace_members", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_workspace_members_user_id"), ["user_id"])
    op.create_table(
        "workspace_tokens",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("workspace_id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("role", sa.String(length=10), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=12), nullable=False),
        sa.Column("created_by", sa.String(length=36), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["created_by"], ["users.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
    )
    with op.batch_alter_table("workspace_tokens", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_workspace_tokens_workspace_id"), ["workspace_id"])
    op.create_table(
        "workspace_usage",
        sa.Column("workspace_id", sa.String(length=36), nullable=False),
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("classifications", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("workspace_id", "day"),
    )


def _default_workspaces() -> None:
    """One default workspace per existing user, owned by them."""
    conn = op.get_bind()
    now = datetime.now(UTC)
    workspaces = sa.table(
        "workspaces",
        sa.column("id", sa.String),
        sa.column("name", sa.String),
        sa.column("default_for", sa.String),
        sa.column("created", sa.DateTime(timezone=True)),
    )
    members = sa.table(
        "workspace_members",
        sa.column("workspace_id", sa.String),
        sa.column("user_id", sa.String),
        sa.column("role", sa.String),
        sa.column("created", sa.DateTime(timezone=True)),
    )
    user_ids = [row[0] for row in conn.execute(sa.text("SELECT id FROM users"))]
    rows = [(str(uuid.uuid5(WORKSPACE_NAMESPACE, uid)), uid) for uid in user_ids]
    if not rows:
        return
    op.bulk_insert(
        workspaces,
        [{"id": w, "name": "Default", "default_for": u, "created": now} for w, u in rows],
    )
    op.bulk_insert(
        members,
        [{"workspace_id": w, "user_id": u, "role": "owner", "created": now} for w, u in rows],
    )


def upgrade() -> None:
    _create_tables()
    _default_workspaces()
    for table in SCOPED:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("workspace_id", sa.String(length=36), nullable=True))
        op.execute(
            f"UPDATE {table} SET workspace_id = (SELECT w.id FROM workspaces w"
            f" WHERE w.default_for = {table}.owner_id)"
        )
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column(
                "workspace_id", existing_type=sa.String(length=36), nullable=False
            )
            batch_op.create_index(batch_op.f(f"ix_{table}_workspace_id"), ["workspace_id"])
            batch_op.create_foreign_key(
                f"{table}_workspace_id_fkey",
                "workspaces",
                ["workspace_id"],
                ["id"],
                ondelete="CASCADE",
            )
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.drop_constraint("uq_images_owner_sha256", type_="unique")
        batch_op.create_unique_constraint("uq_images_workspace_sha256", ["workspace_id", "sha256"])
    op.execute(
        "INSERT INTO workspace_usage (workspace_id, day, classifications)"
        " SELECT w.id, u.day, u.classifications FROM usage u"
        " JOIN workspaces w ON w.default_for = u.user_id"
    )


def downgrade() -> None:
    """Back to one space per user: objects of shared workspaces stay with their creator."""
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.drop_constraint("uq_images_workspace_sha256", type_="unique")
    # Two members may have uploaded the same file into different workspaces of one creator.
    op.execute(
        "DELETE FROM images WHERE id NOT IN (SELECT MIN(id) FROM images GROUP BY owner_id, sha256)"
    )
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.create_unique_constraint("uq_images_owner_sha256", ["owner_id", "sha256"])
    for table in reversed(SCOPED):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_constraint(f"{table}_workspace_id_fkey", type_="foreignkey")
            batch_op.drop_index(batch_op.f(f"ix_{table}_workspace_id"))
            batch_op.drop_column("workspace_id")
    op.drop_table("workspace_usage")
    with op.batch_alter_table("workspace_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_workspace_tokens_workspace_id"))
    op.drop_table("workspace_tokens")
    with op.batch_alter_table("workspace_members", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_workspace_members_user_id"))
    op.drop_table("workspace_members")
    op.drop_table("workspaces")
