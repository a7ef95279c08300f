"""Rollups off ingest's critical path: reports not yet counted into the rollups wait in
``rollup_pending``, written in the same statement as the report itself.

Ingest used to upsert about seven rows of eight rollups in every report's transaction; the
low-level tile cells and the day counts are rows that every writer updates, so concurrent writers
queued on their row locks (issue #17). Now ingest appends one row here, and a maintainer
(service/storage/postgis/rollups.py, ``FOLD``) moves pending rows into the rollups in one
transaction: it deletes them and adds them up, so a fold that dies midway leaves them pending and
counted nowhere twice. Every reader of a rollup reads the rollup plus this table (``live``), so a
report counts from its acknowledgement on, exactly once.

The table holds what the rollups are keyed by, copied from the report as stored (its grid cell
is generated from its position), and its UTC day and month, so that readers compare periods
without computing them. No index: it is read whole and emptied in batches by ``ctid``.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE rollup_pending (
            id           uuid NOT NULL,
            grid_x       integer NOT NULL,
            grid_y       integer NOT NULL,
            kind         text NOT NULL,
            people_count integer NOT NULL,
            snap_status  text NOT NULL,
            segment_id   text,
            observed_at  timestamptz NOT NULL,
            side         char(2),
            direction    char(2),
            day          timestamptz NOT NULL,
            month        timestamptz NOT NULL
        ) WITH (
            -- a queue: rows come and go all day; vacuum it after every few thousand
            autovacuum_vacuum_scale_factor = 0,
            autovacuum_vacuum_threshold = 5000,
            autovacuum_vacuum_insert_scale_factor = 0,
            autovacuum_vacuum_insert_threshold = 5000
        )
        """
    )


def downgrade() -> None:
    # The rollups of revision 0010 hold every report: refuse while some are only pending here
    # (stop the servers and run `crossings db rebuild-rollups` first, which empties it).
    op.execute(
        """
        DO $$ BEGIN
            IF EXISTS (SELECT 1 FROM rollup_pending) THEN
                RAISE EXCEPTION 'rollup_pending holds reports the rollups do not count yet: '
                    'stop the servers and run crossings db rebuild-rollups first';
            END IF;
        END $$
        """
    )
    op.execute("DROP TABLE rollup_pending")
