"""Groups counted once (issue #20, docs/linking.md; SQLite schema step 11).

``group_days``: what linking changes in the count rollups, per level-12 grid cell, UTC day and
(segment_id, side, kind, direction) ('' for none), as cell_days keys its counts;
``group_months`` the same per UTC month without cells (a year's months read a few rows). A report without
a group row counts as one group of its own people; a linked report's row changes that by
``groups`` (its is_anchor - 1: 0 on the anchor, -1 elsewhere) and ``people`` (its group_people -
its people_count). So ``groups = reports + groups`` and ``people_est = people + people`` over any
set of whole days or months, cells and keys. Written by whatever writes report_groups, in its transaction
(storage/postgis/links.py), so it is never behind the groups.

``release_cells`` gains ``groups`` and ``people_est``; the cut in place is counted again here so
that it holds them (the next cut would, too).

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07
"""

from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE group_days (
            period     timestamptz NOT NULL,
            segment_id text NOT NULL,
            side       text NOT NULL,
            kind       text NOT NULL,
            direction  text NOT NULL,
            cx         integer NOT NULL,
            cy         integer NOT NULL,
            groups     bigint NOT NULL,
            people     bigint NOT NULL,
            PRIMARY KEY (period, segment_id, side, kind, direction, cx, cy)
        )
        """
    )
    op.execute(
        """
        INSERT INTO group_days (period, segment_id, side, kind, direction, cx, cy, groups, people)
        SELECT date_trunc('day', r.observed_at, 'UTC'), coalesce(r.segment_id, ''),
               coalesce(r.side::text, ''), r.kind, coalesce(r.direction::text, ''),
               r.grid_x >> 12, r.grid_y >> 12,
               sum(g.is_anchor::int - 1), sum(g.group_people - r.people_count)
        FROM report_groups g JOIN reports r ON r.id = g.report_id
        GROUP BY 1, 2, 3, 4, 5, 6, 7
        """
    )
    op.execute(
        """
        CREATE TABLE group_months (
            period     timestamptz NOT NULL,
            segment_id text NOT NULL,
            side       text NOT NULL,
            kind       text NOT NULL,
            direction  text NOT NULL,
            groups     bigint NOT NULL,
            people     bigint NOT NULL,
            PRIMARY KEY (period, segment_id, side, kind, direction)
        )
        """
    )
    op.execute(
        """
        INSERT INTO group_months (period, segment_id, side, kind, direction, groups, people)
        SELECT date_trunc('month', period, 'UTC'), segment_id, side, kind, direction,
               sum(groups), sum(people)
        FROM group_days
        GROUP BY 1, 2, 3, 4, 5
        HAVING sum(groups) <> 0 OR sum(people) <> 0
        """
    )
    op.execute(
        "ALTER TABLE release_cells ADD COLUMN groups bigint NOT NULL DEFAULT 0,"
        " ADD COLUMN people_est bigint NOT NULL DEFAULT 0"
    )
    op.execute(
        """
        UPDATE release_cells c
        SET groups = n.groups, people_est = n.people_est
        FROM (
            SELECT (r.observed_at AT TIME ZONE 'UTC')::date AS day, r.segment_id, r.kind,
                   r.direction, r.side,
                   count(*) FILTER (WHERE g.report_id IS NULL OR g.is_anchor) AS groups,
                   sum(coalesce(g.group_people, r.people_count)) AS people_est
            FROM reports r LEFT JOIN report_groups g ON g.report_id = r.id
            WHERE r.observed_at < (SELECT through FROM release_info)
            GROUP BY 1, 2, 3, 4, 5
        ) AS n
        WHERE c.day = n.day AND c.kind = n.kind
          AND c.segment_id IS NOT DISTINCT FROM n.segment_id
          AND c.direction IS NOT DISTINCT FROM n.direction
          AND c.side IS NOT DISTINCT FROM n.side
        """
    )


def downgrade() -> None:
    op.execute("ALTER TABLE release_cells DROP COLUMN groups, DROP COLUMN people_est")
    op.execute("DROP TABLE group_months")
    op.execute("DROP TABLE group_days")
