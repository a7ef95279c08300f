"""Map tiles: a third tile_cells level, 18: the 64 px cluster cells of zoom 12 (and, summed, of
zooms 10-11), so that a tile above the points zoom that holds too many reports to draw them one
by one sums a few thousand rollup rows instead of grouping tens of thousands of reports.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        INSERT INTO tile_cells (level, cx, cy, kind, reports, people)
        SELECT 18, grid_x >> 6, grid_y >> 6, kind, count(*), sum(people_count)
        FROM reports
        GROUP BY 2, 3, 4
        """
    )


def downgrade() -> None:
    op.execute("DELETE FROM tile_cells WHERE level = 18")
