"""runs record their heartbeat and owning process

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("owner_host", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("owner_pid", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("owner_token", sa.String(length=128), nullable=True))
        batch_op.create_index("ix_runs_status", ["status"], unique=False)
    # A run still running from before has no owner: it is judged by its heartbeat, which starts
    # at its start (a run orphaned long ago is marked killed at the first check).
    op.execute("UPDATE runs SET heartbeat_at = started_at WHERE status = 'running'")


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index("ix_runs_status")
        batch_op.drop_column("owner_token")
        batch_op.drop_column("owner_pid")
        batch_op.drop_column("owner_host")
        batch_op.drop_column("heartbeat_at")
