"""Aggregates: reports and people per UTC day and per UTC month, by segment, side, kind, direction.

``count_days`` and ``count_months`` hold, for each UTC period, the reports and their people per
(segment_id, side, kind, direction), '' standing for none (a report beyond reach has no segment or
side; a report may have no direction). Ingest keeps them in the same statement as the reports it
creates (service/storage/postgis/rollups.py); aggregates sum them, and read the reports themselves
only for pieces of time that are not whole UTC days (see service/domain/aggregation.py). This
migration fills them from the reports already stored.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_GRAINS = {"count_days": "day", "count_months": "month"}


def upgrade() -> None:
    for table, grain in _GRAINS.items():
        op.execute(
            f"""
            CREATE TABLE {table} (
                segment_id text NOT NULL,
                period     timestamptz NOT NULL,
                side       text NOT NULL,
                kind       text NOT NULL,
                direction  text NOT NULL,
                reports    integer NOT NULL,
                people     integer NOT NULL,
                PRIMARY KEY (segment_id, period, side, kind, direction)
            )
            """
        )
        # Aggregates over all segments pick periods; one segment's series walks the primary key.
        op.execute(f"CREATE INDEX {table}_period ON {table} (period)")
        op.execute(
            f"""
            INSERT INTO {table} (segment_id, period, side, kind, direction, reports, people)
            SELECT coalesce(segment_id, ''), date_trunc('{grain}', observed_at, 'UTC'),
                   coalesce(side::text, ''), kind, coalesce(direction::text, ''),
                   count(*), sum(people_count)
            FROM reports
            GROUP BY 1, 2, 3, 4, 5
            """
        )


def downgrade() -> None:
    for table in _GRAINS:
        op.execute(f"DROP TABLE {table}")
