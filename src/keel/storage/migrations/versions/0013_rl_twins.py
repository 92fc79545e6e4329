"""digital twins: versions fitted on a dataset version, and their results

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03 23:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rl_twins",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("dataset_name", sa.String(length=128), nullable=False),
        sa.Column("dataset_version", sa.Integer(), nullable=False),
        sa.Column("dataset_digest", sa.String(length=80), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("author", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rl_twins")),
        sa.UniqueConstraint("name", "version", name=op.f("uq_rl_twins_name_version")),
    )
    op.create_table(
        "rl_results",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("twin_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("author", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["twin_id"], ["rl_twins.id"], name=op.f("fk_rl_results_twin_id_rl_twins"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rl_results")),
    )
    op.create_index("ix_rl_results_twin_id_kind", "rl_results", ["twin_id", "kind"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_rl_results_twin_id_kind", table_name="rl_results")
    op.drop_table("rl_results")
    op.drop_table("rl_twins")
