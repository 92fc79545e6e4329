"""causal studies and their estimates

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 18:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "causal_studies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("dataset_name", sa.String(length=128), nullable=False),
        sa.Column("dataset_version", sa.Integer(), nullable=False),
        sa.Column("dataset_digest", sa.String(length=80), nullable=False),
        sa.Column("treatment", sa.String(length=256), nullable=False),
        sa.Column("outcome", sa.String(length=256), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("author", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_causal_studies")),
        sa.UniqueConstraint("name", "version", name=op.f("uq_causal_studies_name_version")),
    )
    op.create_table(
        "causal_estimates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("estimator", sa.String(length=64), nullable=False),
        sa.Column("estimand", sa.String(length=16), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("stderr", sa.Float(), nullable=True),
        sa.Column("ci_low", sa.Float(), nullable=True),
        sa.Column("ci_high", sa.Float(), nullable=True),
        sa.Column("interval_method", sa.String(length=128), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["study_id"],
            ["causal_studies.id"],
            name=op.f("fk_causal_estimates_study_id_causal_studies"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_causal_estimates")),
    )
    op.create_index("ix_causal_estimates_study_id", "causal_estimates", ["study_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_causal_estimates_study_id", table_name="causal_estimates")
    op.drop_table("causal_estimates")
    op.drop_table("causal_studies")
