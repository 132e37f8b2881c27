"""tasks.unknown (when to answer "unknown") and predictions (the review queue)

Revision ID: 0008
Revises: 0006
Create Date: 2026-12-01 16:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(
            sa.Column("unknown", sa.String(length=20), nullable=False, server_default="off")
        )
    op.create_table(
        "predictions",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("owner_id", sa.String(length=36), nullable=False),
        sa.Column("task_id", sa.String(length=36), nullable=False),
        sa.Column("model_version", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("blob_key", sa.String(length=255), nullable=False),
        sa.Column("thumb_key", sa.String(length=255), nullable=False),
        sa.Column("label_id", sa.String(length=36), nullable=True),
        sa.Column("prob", sa.Float(), nullable=False),
        sa.Column("uncertainty", sa.Float(), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("image_id", sa.String(length=36), nullable=True),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["owner_id"], ["users.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["task_id"], ["tasks.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("task_id", "sha256", name="uq_predictions_task_sha256"),
    )
    op.create_index("ix_predictions_owner_id", "predictions", ["owner_id"])
    op.create_index("ix_predictions_blob_key", "predictions", ["blob_key"])
    op.create_index("ix_predictions_thumb_key", "predictions", ["thumb_key"])
    op.create_index(
        "ix_predictions_task_status_score", "predictions", ["task_id", "status", "uncertainty"]
    )


def downgrade() -> None:
    op.drop_table("predictions")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("unknown")
