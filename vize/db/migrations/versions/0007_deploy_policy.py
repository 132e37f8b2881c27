"""deploy policy per task (always / if_better / never) and each version's deploy decision

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 16:00:00

Tasks whose owner had picked a version by hand (``production_pinned``) kept it through later
trainings: they get the policy "never", which does the same and now says so on the page.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "deploy_policy", sa.String(length=20), nullable=False, server_default="if_better"
            )
        )
    with op.batch_alter_table("models", schema=None) as batch_op:
        batch_op.add_column(sa.Column("deploy_decision", sa.JSON(), nullable=True))
    tasks = sa.table("tasks", sa.column("deploy_policy"), sa.column("production_pinned"))
    op.execute(
        tasks.update().where(tasks.c.production_pinned == sa.true()).values(deploy_policy="never")
    )


def downgrade() -> None:
    with op.batch_alter_table("models", schema=None) as batch_op:
        batch_op.drop_column("deploy_decision")
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_column("deploy_policy")
