"""Aggregates: the (observed_at, id) index carries what a count reads, so the hours that buckets
take from the reports themselves (between UTC and local midnight, and a box's partial days) are
read from the index alone.

A box's aggregate by Toronto weeks reads 54 spans of 5 hours: 26,000 reports through the heap
took 10 ms of its 19; index-only, 5. The index keeps its key (keyset paging walks it as before)
and grows from 39 to 108 MB per million reports.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-28
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("DROP INDEX reports_observed_id")
    op.execute(
        """
        CREATE INDEX reports_observed_id ON reports (observed_at, id)
            INCLUDE (geom, segment_id, side, kind, direction, people_count)
        """
    )


def downgrade() -> None:
    op.execute("DROP INDEX reports_observed_id")
    op.execute("CREATE INDEX reports_observed_id ON reports (observed_at, id)")
