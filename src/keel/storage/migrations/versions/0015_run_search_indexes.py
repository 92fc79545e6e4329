"""run search at scale: a covering (key, value, run_id) index on latest metrics, runs by start time

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04 05:00:00

Run search walks the order metric's (key, value) index and tests the filter run by run (issue
17): with run_id in the index, each step reads the index alone, not the table row as well. The
runs page lists the newest runs first: an index on started_at serves that order with a limit
instead of sorting every run. Indexes hold no data of their own: creating them is the backfill.
"""

from __future__ import annotations

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_latest_metrics_key_value_run_id", "latest_metrics", ["key", "value", "run_id"])
    op.drop_index("ix_latest_metrics_key_value", table_name="latest_metrics")
    op.create_index("ix_runs_started_at", "runs", ["started_at"])


def downgrade() -> None:
    op.drop_index("ix_runs_started_at", table_name="runs")
    op.create_index("ix_latest_metrics_key_value", "latest_metrics", ["key", "value"])
    op.drop_index("ix_latest_metrics_key_value_run_id", table_name="latest_metrics")
