"""leases: work that must run once per workspace (due monitors, retraining, log compaction)

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-04 08:00:00

Several server processes share one store (issue 17): each runs the background tick, and a lease
row makes one of them do the once-only work (keel.storage.leases).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "leases",
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("holder", sa.String(128), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("leases")
