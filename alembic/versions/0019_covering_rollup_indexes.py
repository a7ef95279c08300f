"""Rollups read from their indexes alone, as cell_days is (0007), so that what a read costs
follows the rows it reads and not the size of the table they lie in (issue #17):

- tile_cells' key carries the counts (INCLUDE): map tiles' cluster cells and numberMatched read a
  range of one level's cells from the index alone;
- count_days' and count_months' period indexes carry their keys and counts: an aggregate over
  every segment reads its days (months) from the index alone.

Through the heap, each row cost a page: a level's cells lie scattered among the other levels'
(level 18 holds about as many rows as there are reports in sparse places), so the pages read
grew with the data, not with the cells read. numberMatched of a page with no filter read 17,000
level-12 rows on 4,700 heap pages at 1,000,000 reports (20-30 ms warm); from the index alone, 110
pages (docs/performance.md, "Reads at 10,000,000 reports").

Through their period indexes, count_days' rows cost a heap page each too: 14 days at 1,000,000
reports read 10,800 rows on 9,100 pages (43 ms).

The counts in the indexes cost folds their HOT updates of these tables (a changed count now
changes index entries); folds are off ingest's path (0012). Index-only reads need the visibility
map, which (auto)vacuum keeps.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-07
"""

from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


_COUNT_TABLES = ("count_days", "count_months")


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE tile_cells DROP CONSTRAINT tile_cells_pkey,
            ADD PRIMARY KEY (level, cx, cy, kind) INCLUDE (reports, people)
        """
    )
    for table in _COUNT_TABLES:
        op.execute(f"DROP INDEX {table}_period")
        op.execute(
            f"CREATE INDEX {table}_period ON {table} (period)"
            " INCLUDE (segment_id, side, kind, direction, reports, people)"
        )


def downgrade() -> None:
    for table in _COUNT_TABLES:
        op.execute(f"DROP INDEX {table}_period")
        op.execute(f"CREATE INDEX {table}_period ON {table} (period)")
    op.execute(
        """
        ALTER TABLE tile_cells DROP CONSTRAINT tile_cells_pkey,
            ADD PRIMARY KEY (level, cx, cy, kind)
        """
    )
