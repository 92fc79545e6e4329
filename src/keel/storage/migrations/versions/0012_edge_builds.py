"""edge builds: a model version compiled to C or ONNX, its archive blob and build report

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03 21:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "edge_builds",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_version_id", sa.Integer(), nullable=False),
        sa.Column("model_name", sa.String(length=128), nullable=False),
        sa.Column("model_version", sa.Integer(), nullable=False),
        sa.Column("target", sa.String(length=8), nullable=False),
        sa.Column("quantize", sa.String(length=16), nullable=False),
        sa.Column("mcu", sa.String(length=32), nullable=False),
        sa.Column("digest", sa.String(length=80), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("files", sa.JSON(), nullable=False),
        sa.Column("report", sa.JSON(), nullable=False),
        sa.Column("author", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_version_id"],
            ["model_versions.id"],
            name=op.f("fk_edge_builds_model_version_id_model_versions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_edge_builds")),
    )
    op.create_index("ix_edge_builds_model_version_id", "edge_builds", ["model_version_id"], unique=False)
    op.create_index("ix_edge_builds_model_name", "edge_builds", ["model_name", "model_version"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_edge_builds_model_name", table_name="edge_builds")
    op.drop_index("ix_edge_builds_model_version_id", table_name="edge_builds")
    op.drop_table("edge_builds")
