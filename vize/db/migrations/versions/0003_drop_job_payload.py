"""drop jobs.payload

Never read or written: a job's work is described by its kind, task and model.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 13:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("payload")


def downgrade() -> None:
    # Rows that exist at the downgrade get the empty object the column defaulted to; the
    # server default is only for them (0002 had none).
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("payload", sa.JSON(), nullable=False, server_default=sa.text("'{}'"))
        )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.alter_column("payload", server_default=None)
