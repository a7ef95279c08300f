"""Rollups that map tiles and aggregates read instead of scanning reports (migrations 0002, 0003,
0007).

- ``tile_cells``: reports and people per kind in each Web Mercator grid cell at the levels of
  ``ROLLUP_LEVELS``;
- ``segment_totals``: snapped reports and people per segment and kind;
- ``count_days``, ``count_months``: reports and people per UTC day / month and
  (segment_id, side, kind, direction), '' standing for none;
- ``count_segment_months``: the same per UTC month and (segment_id, kind) only, and per
  (segment_id) under kind ``ALL_KINDS``;
- ``cell_days``: the same per level-``CELL_DAYS_LEVEL`` grid cell, UTC day and
  (segment_id, side, kind, direction), for aggregates in a box.

Ingest keeps them in the same statement, so in the same transaction, as the reports it creates
(``ROLLUP_NEW_ROWS``, spliced into the insert); ``rebuild`` recomputes them from the reports, for
data written around ingest (bulk COPY) or after a change of rules. Upserts go in key order, so
two batches that touch the same cells lock them in the same order and cannot deadlock.
"""

from __future__ import annotations

from sqlalchemy import Connection

from service.domain.tiles import GRID_LEVEL, ROLLUP_LEVELS

CELL_DAYS_LEVEL = 12
ROLLUP_TABLES = (
    "tile_cells",
    "segment_totals",
    "count_days",
    "count_months",
    "count_segment_months",
    "cell_days",
)
_CELL_SHIFT = GRID_LEVEL - CELL_DAYS_LEVEL
ALL_KINDS = "*"  # count_segment_months' kind for every kind together (never a report's kind)
# The source rows of each count rollup, over reports (or ingest's ``new``), weight aside: its
# columns, their values over {r}, and what the rows are joined to (each report counted twice in
# count_segment_months: under its kind and under ALL_KINDS).
_COUNT_KEYS = {
    "count_days": (
        "segment_id, period, side, kind, direction",
        "coalesce({r}.segment_id, ''), date_trunc('day', {r}.observed_at, 'UTC'),"
        " coalesce({r}.side::text, ''), {r}.kind, coalesce({r}.direction::text, '')",
        "",
    ),
    "count_months": (
        "segment_id, period, side, kind, direction",
        "coalesce({r}.segment_id, ''), date_trunc('month', {r}.observed_at, 'UTC'),"
        " coalesce({r}.side::text, ''), {r}.kind, coalesce({r}.direction::text, '')",
        "",
    ),
    "count_segment_months": (
        "segment_id, period, kind",
        "coalesce({r}.segment_id, ''), date_trunc('month', {r}.observed_at, 'UTC'),"
        f" CASE WHEN every.kind THEN '{ALL_KINDS}' ELSE {{r}}.kind END",
        " CROSS JOIN (VALUES (false), (true)) AS every(kind)",
    ),
    "cell_days": (
        "cx, cy, period, segment_id, side, kind, direction",
        f"{{r}}.grid_x >> {_CELL_SHIFT}, {{r}}.grid_y >> {_CELL_SHIFT},"
        " date_trunc('day', {r}.observed_at, 'UTC'), coalesce({r}.segment_id, ''),"
        " coalesce({r}.side::text, ''), {r}.kind, coalesce({r}.direction::text, '')",
        "",
    ),
}


def _places(columns: str) -> str:
    """GROUP BY / ORDER BY positions of a column list: "1, 2, 3"."""
    return ", ".join(str(i + 1) for i in range(columns.count(",") + 1))


def _count_upsert(table: str) -> str:
    columns, values, joined = _COUNT_KEYS[table]
    places = _places(columns)
    return f"""
    {table} AS (
        INSERT INTO {table} AS t ({columns}, reports, people)
        SELECT {values.format(r="new")}, sum(new.weight), sum(new.weight * new.people_count)
        FROM new{joined}
        GROUP BY {places}
        ORDER BY {places}
        ON CONFLICT ({columns}) DO UPDATE
            SET reports = t.reports + EXCLUDED.reports, people = t.people + EXCLUDED.people
    )"""


_LEVELS = "(VALUES " + ", ".join(f"({int(level)})" for level in ROLLUP_LEVELS) + ") AS l(level)"

# CTEs over a row source ``new`` (grid_x, grid_y, kind, people_count, snap_status, segment_id,
# observed_at, side, direction, weight): weight 1 counts a report in, -1 counts it out.
ROLLUP_NEW_ROWS = f"""
    cells AS (
        INSERT INTO tile_cells AS t (level, cx, cy, kind, reports, people)
        SELECT l.level, new.grid_x >> ({GRID_LEVEL} - l.level), new.grid_y >> ({GRID_LEVEL} - l.level),
               new.kind, sum(new.weight), sum(new.weight * new.people_count)
        FROM new CROSS JOIN {_LEVELS}
        GROUP BY 1, 2, 3, 4
        ORDER BY 1, 2, 3, 4
        ON CONFLICT (level, cx, cy, kind) DO UPDATE
            SET reports = t.reports + EXCLUDED.reports, people = t.people + EXCLUDED.people
    ),
    totals AS (
        INSERT INTO segment_totals AS t (segment_id, kind, reports, people)
        SELECT new.segment_id, new.kind, sum(new.weight), sum(new.weight * new.people_count)
        FROM new
        WHERE new.snap_status = 'snapped'
        GROUP BY 1, 2
        ORDER BY 1, 2
        ON CONFLICT (segment_id, kind) DO UPDATE
            SET reports = t.reports + EXCLUDED.reports, people = t.people + EXCLUDED.people
    ),
    {",".join(_count_upsert(table) for table in _COUNT_KEYS)}
"""


def rebuild(conn: Connection) -> None:
    """Recompute every rollup from the stored reports (locks them against ingest meanwhile)."""
    conn.exec_driver_sql(f"LOCK TABLE {', '.join(ROLLUP_TABLES)} IN EXCLUSIVE MODE")
    for table in ROLLUP_TABLES:
        conn.exec_driver_sql(f"DELETE FROM {table}")
    for table, (columns, values, joined) in _COUNT_KEYS.items():
        places = _places(columns)
        conn.exec_driver_sql(
            f"""
            INSERT INTO {table} ({columns}, reports, people)
            SELECT {values.format(r="reports")}, count(*), sum(people_count)
            FROM reports{joined}
            GROUP BY {places}
            """
        )
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
    # Fresh statistics, or the planner guesses at tables it has just seen emptied and refilled.
    conn.exec_driver_sql(f"ANALYZE {', '.join(ROLLUP_TABLES)}")


# Delete one report and count it out of every rollup, in one statement; then drop emptied rows.
UNCOUNT_DELETED = f"""
    WITH new AS (
        DELETE FROM reports WHERE id = %(id)s
        RETURNING id, grid_x, grid_y, kind, people_count, snap_status, segment_id, observed_at,
            side, direction, -1 AS weight
    ),
    {ROLLUP_NEW_ROWS}
    SELECT id FROM new
"""
DROP_EMPTIED = tuple(f"DELETE FROM {table} WHERE reports = 0" for table in ROLLUP_TABLES)
