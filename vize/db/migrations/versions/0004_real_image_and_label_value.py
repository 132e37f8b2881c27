"""images.real_image and image_labels.value (Ximilar client compatibility)

``real_image`` is Ximilar's "real" flag (an image from the production source, as opposed to
a web or synthetic one), set by ``training-image/update``; ``value`` is the value of a label
on an image (``add-label`` / ``update-label`` with ``value``).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 13:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("real_image", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table("image_labels", schema=None) as batch_op:
        batch_op.add_column(sa.Column("value", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("image_labels", schema=None) as batch_op:
        batch_op.drop_column("value")
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.drop_column("real_image")
