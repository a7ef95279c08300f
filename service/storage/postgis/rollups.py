"""Rollups the map tiles read instead of scanning reports (tables: migration 0002).

- ``tile_cells``: reports and people per kind in each Web Mercator grid cell at the levels of
  ``ROLLUP_LEVELS``;
- ``segment_totals``: snapped reports and people per segment and kind.

Ingest keeps them in the same statement, so in the same transaction, as the reports it creates
(``ROLLUP_NEW_ROWS``, spliced into the insert); ``rebuild`` recomputes them from the reports, for
data written around ingest (bulk COPY) or after a change of rules. Upserts go in key order, so
two batches that touch the same cells lock them in the same order and cannot deadlock.
"""

from __future__ import annotations

from sqlalchemy import Connection

from service.domain.tiles import GRID_LEVEL, ROLLUP_LEVELS

_LEVELS = "(VALUES " + ", ".join(f"({int(level)})" for level in ROLLUP_LEVELS) + ") AS l(level)"

# CTEs over a row source ``new`` (grid_x, grid_y, kind, people_count, snap_status, segment_id).
ROLLUP_NEW_ROWS = f"""
    cells AS (
        INSERT INTO tile_cells AS t (level, cx, cy, kind, reports, people)
        SELECT l.level, new.grid_x >> ({GRID_LEVEL} - l.level), new.grid_y >> ({GRID_LEVEL} - l.level),
               new.kind, count(*), sum(new.people_count)
        FROM new CROSS JOIN {_LEVELS}
        GROUP BY 1, 2, 3, 4
        ORDER BY 1, 2, 3, 4
        ON CONFLICT (level, cx, cy, kind) DO UPDATE
            SET reports = t.reports + EXCLUDED.reports, people = t.people + EXCLUDED.people
    ),
    totals AS (
        INSERT INTO segment_totals AS t (segment_id, kind, reports, people)
        SELECT new.segment_id, new.kind, count(*), sum(new.people_count)
        FROM new
        WHERE new.snap_status = 'snapped'
        GROUP BY 1, 2
        ORDER BY 1, 2
        ON CONFLICT (segment_id, kind) DO UPDATE
            SET reports = t.reports + EXCLUDED.reports, people = t.people + EXCLUDED.people
    )
"""


def rebuild(conn: Connection) -> None:
    """Recompute both rollups from the stored reports (locks them against ingest meanwhile)."""
    conn.exec_driver_sql("LOCK TABLE tile_cells, segment_totals IN EXCLUSIVE MODE")
    conn.exec_driver_sql("DELETE FROM tile_cells")
    conn.exec_driver_sql("DELETE FROM segment_totals")
    conn.exec_driver_sql(
        f"""
        INSERT INTO tile_cells (level, cx, cy, kind, reports, people)
        SELECT l.level, r.grid_x >> ({GRID_LEVEL} - l.level), r.grid_y >> ({GRID_LEVEL} - l.level),
               r.kind, count(*), sum(r.people_count)
        FROM reports r CROSS JOIN {_LEVELS}
        GROUP BY 1, 2, 3, 4
        """
    )
    conn.exec_driver_sql(
        """
        INSERT INTO segment_totals (segment_id, kind, reports, people)
        SELECT segment_id, kind, count(*), sum(people_count)
        FROM reports WHERE snap_status = 'snapped'
        GROUP BY 1, 2
        """
    )
