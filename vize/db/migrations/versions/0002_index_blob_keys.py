"""index images.blob_key and images.thumb_key

Removing a stored file asks whether a committed row still references its key (image deletes,
failed uploads, the start-up orphan sweep): without these indexes each question scanned the
images table.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 14:10:00
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_images_blob_key"), ["blob_key"], unique=False)
        batch_op.create_index(batch_op.f("ix_images_thumb_key"), ["thumb_key"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_images_thumb_key"))
        batch_op.drop_index(batch_op.f("ix_images_blob_key"))
