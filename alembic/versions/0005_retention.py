"""Retention: which reports have had their precise fields purged (``crossings purge``).

- ``reports.purged``: false until the report's position is moved to the centre of its level-15
  grid cell and its notes, device, accuracy and snapped point are cleared (see
  service/storage/postgis/retention.py). A constant default: PostgreSQL adds the column without
  rewriting the table.
- ``reports_unpurged_observed``: the reports not purged yet, by (observed_at, id), so each purge
  reads only the reports it purges, however many it purged before.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE reports ADD COLUMN purged boolean NOT NULL DEFAULT false")
    op.execute(
        "CREATE INDEX reports_unpurged_observed ON reports (observed_at, id) WHERE NOT purged"
    )


def downgrade() -> None:
    op.execute("DROP INDEX reports_unpurged_observed")
    op.execute("ALTER TABLE reports DROP COLUMN purged")
