"""Map tiles: each report's Web Mercator grid cell, and rollups the unfiltered tiles read.

- ``reports.grid_x``/``grid_y``: the report's cell in the 2^24 x 2^24 Web Mercator grid, generated
  from ``geom`` (so COPY and every writer fill them), by the same arithmetic, in the same order,
  as ``service.domain.tiles.grid_cell``. (PostgreSQL raises an underflow error where a product
  of non-zero numbers rounds to zero, so latitudes within 1e-200 of the equator count as 0: the
  cell is the same, as 1 - tiny / pi rounds to 1 either way.)
- ``tile_cells``: reports and people per kind in each grid cell at levels 12 and 15 (the cluster
  cells of zooms 0-6 and 7-9), so that low-zoom tiles read a few thousand rows, not every report.
- ``segment_totals``: snapped reports and people per segment and kind, for the segments layer.

Both rollups are kept by ingest in the same transaction as the reports (see
service/storage/postgis/rollups.py). This migration fills them from the reports already stored.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_GRID_X = """
    least(greatest(floor((ST_X(geom) + 180.0) / 360.0 * 16777216.0), 0), 16777215)::integer
"""
_GRID_Y = """
    least(greatest(floor(
        (1.0 - asinh(tan(radians(
            CASE WHEN abs(ST_Y(geom)) < 1e-200 THEN 0.0
                 ELSE least(greatest(ST_Y(geom), -85.051128779806592), 85.051128779806592) END
        ))) / pi()) / 2.0 * 16777216.0
    ), 0), 16777215)::integer
"""


def upgrade() -> None:
    # One statement, so the table is rewritten once.
    op.execute(
        f"""
        ALTER TABLE reports
            ADD COLUMN grid_x integer GENERATED ALWAYS AS ({_GRID_X}) STORED,
            ADD COLUMN grid_y integer GENERATED ALWAYS AS ({_GRID_Y}) STORED
        """
    )
    op.execute(
        """
        CREATE TABLE tile_cells (
            level   smallint NOT NULL,
            cx      integer NOT NULL,
            cy      integer NOT NULL,
            kind    text NOT NULL,
            reports integer NOT NULL,
            people  integer NOT NULL,
            PRIMARY KEY (level, cx, cy, kind)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE segment_totals (
            segment_id text NOT NULL,
            kind       text NOT NULL,
            reports    integer NOT NULL,
            people     integer NOT NULL,
            PRIMARY KEY (segment_id, kind)
        )
        """
    )
    op.execute(
        """
        INSERT INTO tile_cells (level, cx, cy, kind, reports, people)
        SELECT l.level, r.grid_x >> (24 - l.level), r.grid_y >> (24 - l.level), r.kind,
               count(*), sum(r.people_count)
        FROM reports r CROSS JOIN (VALUES (12), (15)) AS l(level)
        GROUP BY 1, 2, 3, 4
        """
    )
    op.execute(
        """
        INSERT INTO segment_totals (segment_id, kind, reports, people)
        SELECT segment_id, kind, count(*), sum(people_count)
        FROM reports WHERE snap_status = 'snapped'
        GROUP BY 1, 2
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE segment_totals")
    op.execute("DROP TABLE tile_cells")
    op.execute("ALTER TABLE reports DROP COLUMN grid_y, DROP COLUMN grid_x")
