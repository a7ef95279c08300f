"""Surge detection's state (issue #19): one row per watched series, the JSON state of its CUSUM
(service/domain/surges/series.py: the last days' counts and statistics), updated in the
transaction that counts the reports touching it (the rollup fold), with the alerts it raises.
Kept as text, not jsonb: the service alone reads it, whole, and parsing thousands of states into
jsonb on every fold cost more than detection itself (bench/surge_cost.py).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07
"""

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE surge_series (
            series     text PRIMARY KEY,
            state      text NOT NULL,
            updated_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE surge_series")
