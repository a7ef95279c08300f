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
    # Built CONCURRENTLY beside the old one, which then gives way: ingest and reads go on
    # meanwhile (a plain CREATE INDEX would hold writes for the whole build).
    with op.get_context().autocommit_block():
        op.execute("DROP INDEX CONCURRENTLY IF EXISTS reports_observed_cover")  # a failed try
        op.execute(
            """
            CREATE INDEX CONCURRENTLY reports_observed_cover ON reports (observed_at, id)
                INCLUDE (geom, segment_id, side, kind, direction, people_count)
            """
        )
        op.execute("DROP INDEX CONCURRENTLY reports_observed_id")
        op.execute("ALTER INDEX reports_observed_cover RENAME TO reports_observed_id")


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.execute("CREATE INDEX CONCURRENTLY reports_observed_plain ON reports (observed_at, id)")
        op.execute("DROP INDEX CONCURRENTLY reports_observed_id")
        op.execute("ALTER INDEX reports_observed_plain RENAME TO reports_observed_id")
