"""global importance of model versions

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-28 20:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "model_importance",
        sa.Column("model_name", sa.String(length=128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("importance", sa.JSON(), nullable=False),
        sa.Column("method", sa.String(length=128), nullable=False),
        sa.Column("space", sa.String(length=32), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("model_name", "version"),
    )


def downgrade() -> None:
    op.drop_table("model_importance")
