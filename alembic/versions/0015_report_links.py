"""Links between reports of one crossing by different monitors, and each linked report's group
(issue #20, docs/linking.md; SQLite schema step 9).

``report_links``: one row per linked pair (a < b), with the levels and per-field weights it was
scored with, and its review. ``report_groups``: the group of each report in a group of two or
more (a report without a row is a group of its own), with where the group counts. ``link_pending``:
the snapped reports not linked yet, filled by a statement trigger on reports (whatever writes
them: ingest's statement, a bulk COPY) and emptied by the background linker (storage/postgis/
links.py), so that linking stays off ingest's acknowledgement. Reports already stored are queued
here, so an upgraded database links them in the background.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07
"""

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE report_links (
            id          uuid PRIMARY KEY,
            a           uuid NOT NULL,
            b           uuid NOT NULL,
            segment_a   text,
            segment_b   text,
            levels      smallint[] NOT NULL,
            per_field   text NOT NULL,
            weight      double precision NOT NULL,
            state       text NOT NULL DEFAULT 'proposed'
                        CHECK (state IN ('proposed', 'confirmed', 'rejected')),
            created_at  timestamptz NOT NULL,
            reviewed_by text,
            reviewed_at timestamptz,
            CHECK (a < b),
            UNIQUE (a, b)
        )
        """
    )
    op.execute("CREATE INDEX report_links_b ON report_links (b)")
    op.execute("CREATE INDEX report_links_created ON report_links (created_at, id)")
    op.execute(
        "CREATE INDEX report_links_confirmed ON report_links (state) WHERE state = 'confirmed'"
    )
    op.execute(
        """
        CREATE TABLE report_groups (
            report_id    uuid PRIMARY KEY,
            group_id     uuid NOT NULL,
            is_anchor    boolean NOT NULL,
            group_people integer NOT NULL
        )
        """
    )
    op.execute("CREATE TABLE link_pending (id uuid PRIMARY KEY)")
    op.execute(
        """
        CREATE FUNCTION link_pending_new() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO link_pending (id)
            SELECT id FROM new_reports WHERE segment_id IS NOT NULL
            ON CONFLICT DO NOTHING;
            RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER reports_link_pending AFTER INSERT ON reports
        REFERENCING NEW TABLE AS new_reports
        FOR EACH STATEMENT EXECUTE FUNCTION link_pending_new()
        """
    )
    op.execute("INSERT INTO link_pending (id) SELECT id FROM reports WHERE segment_id IS NOT NULL")


def downgrade() -> None:
    op.execute("DROP TRIGGER reports_link_pending ON reports")
    op.execute("DROP FUNCTION link_pending_new()")
    op.execute("DROP TABLE link_pending")
    op.execute("DROP TABLE report_groups")
    op.execute("DROP TABLE report_links")
