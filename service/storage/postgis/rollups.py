"""Rollups that map tiles and aggregates read instead of scanning reports (migrations 0002, 0003,
0007), and how they stay exact while ingest does not write them (migration 0012).

- ``tile_cells``: reports and people per kind in each Web Mercator grid cell at the levels of
  ``ROLLUP_LEVELS``;
- ``segment_totals``: snapped reports and people per segment and kind;
- ``count_days``, ``count_months``: reports and people per UTC day / month and
  (segment_id, side, kind, direction), '' standing for none;
- ``count_segment_months``: the same per UTC month and (segment_id, kind) only, and per
  (segment_id) under kind ``ALL_KINDS``;
- ``cell_days``: the same per level-``CELL_DAYS_LEVEL`` grid cell, UTC day and
  (segment_id, side, kind, direction), for aggregates in a box.

Ingest appends each report it creates to ``rollup_pending`` in the same statement as the report
(``PENDING_NEW_ROWS``), and touches no rollup row: concurrent writers no longer queue on the hot
rows of the low-level cells and the day counts. ``fold`` moves pending rows into the rollups in
one statement (it deletes them and adds them up, so a fold that dies midway leaves them pending,
and none is counted twice); a maintainer thread per server process runs it (folder.py), one
process at a time (an advisory lock). Every reader reads ``live(table)``: the rollup plus what is
pending, as TimescaleDB's real-time aggregates read the materialised part plus the raw rows
after it; one statement sees either a report pending or folded, never both.

``rebuild`` recomputes them from the reports, for data written around ingest (bulk COPY) or after
a change of rules. Upserts go in key order, so two transactions that touch the same cells lock
them in the same order and cannot deadlock. Locks are taken in one order everywhere: reports,
rollup_pending, the rollups.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from datetime import date

from sqlalchemy import Connection

from service.domain.grid import GRID_LEVEL, ROLLUP_LEVELS

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
PENDING = "rollup_pending"
# The source rows of each count rollup, over reports (or a fold's ``new``, or rollup_pending),
# weight aside: its columns, their values over {r} (with {day} and {month} its UTC periods), and
# what the rows are joined to (each report counted twice in count_segment_months: under its kind
# and under ALL_KINDS).
_COUNT_KEYS = {
    "count_days": (
        "segment_id, period, side, kind, direction",
        "coalesce({r}.segment_id, ''), {day},"
        " coalesce({r}.side::text, ''), {r}.kind, coalesce({r}.direction::text, '')",
        "",
    ),
    "count_months": (
        "segment_id, period, side, kind, direction",
        "coalesce({r}.segment_id, ''), {month},"
        " coalesce({r}.side::text, ''), {r}.kind, coalesce({r}.direction::text, '')",
        "",
    ),
    "count_segment_months": (
        "segment_id, period, kind",
        "coalesce({r}.segment_id, ''), {month},"
        f" CASE WHEN every.kind THEN '{ALL_KINDS}' ELSE {{r}}.kind END",
        " CROSS JOIN (VALUES (false), (true)) AS every(kind)",
    ),
    "cell_days": (
        "cx, cy, period, segment_id, side, kind, direction",
        f"{{r}}.grid_x >> {_CELL_SHIFT}, {{r}}.grid_y >> {_CELL_SHIFT},"
        " {day}, coalesce({r}.segment_id, ''),"
        " coalesce({r}.side::text, ''), {r}.kind, coalesce({r}.direction::text, '')",
        "",
    ),
}


def _periods(r: str) -> dict[str, str]:
    """The values of a _COUNT_KEYS template over the rows of ``r``."""
    return {
        "r": r,
        "day": f"date_trunc('day', {r}.observed_at, 'UTC')",
        "month": f"date_trunc('month', {r}.observed_at, 'UTC')",
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
        SELECT {values.format(**_periods("new"))}, sum(new.weight),
               sum(new.weight * new.people_count)
        FROM new{joined}
        GROUP BY {places}
        ORDER BY {places}
        ON CONFLICT ({columns}) DO UPDATE
            SET reports = t.reports + EXCLUDED.reports, people = t.people + EXCLUDED.people
    )"""


# smallint, tile_cells.level's type: in live("tile_cells") the pending rows' branch of the UNION ALL
# must have the rollup's column types, or PostgreSQL cannot push a reader's conditions (level,
# cx, cy) into the branches and reads every row of tile_cells - all levels, growing with the
# data - to keep the few it wants (a numberMatched 0.6 s at 1M reports, 10M: docs/performance.md).
_LEVELS = (
    "(VALUES " + ", ".join(f"({int(level)}::smallint)" for level in ROLLUP_LEVELS) + ") AS l(level)"
)

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


_PENDING_COLUMNS = (
    "id, grid_x, grid_y, kind, people_count, snap_status, segment_id, observed_at, side, direction"
)
# A CTE of ingest's statement over its ``new`` (the reports it created): each waits in
# rollup_pending until a fold counts it in.
PENDING_NEW_ROWS = f"""
    pending AS (
        INSERT INTO {PENDING} ({_PENDING_COLUMNS}, day, month)
        SELECT {_PENDING_COLUMNS}, date_trunc('day', observed_at, 'UTC'),
               date_trunc('month', observed_at, 'UTC')
        FROM new
    )
"""

# Up to %(n)s pending rows out of rollup_pending and into every rollup, in one statement.
FOLD = f"""
    WITH new AS (
        DELETE FROM {PENDING}
        WHERE ctid = ANY(ARRAY(SELECT ctid FROM {PENDING} LIMIT %(n)s))
        RETURNING {_PENDING_COLUMNS}, 1 AS weight
    ),
    {ROLLUP_NEW_ROWS}
    SELECT coalesce(segment_id, ''), kind, (observed_at AT TIME ZONE 'UTC')::date, count(*)
    FROM new GROUP BY 1, 2, 3
"""
# One folder at a time (the maintainer threads of every server process, and the recounts of
# retention and rebuild, which wait for it): folders would otherwise queue on each other's rows.
FOLD_LOCK = 0x726F6C6C  # pg_advisory_xact_lock key ("roll")


# What a fold counted, for surge detection in its transaction (surges.detect): the (segment_id,
# kind) pairs of each UTC day.
Touched = dict[date, set[tuple[str, str]]]
OnCounted = Callable[[Connection, Touched], object]


def fold(conn: Connection, limit: int, on_counted: OnCounted | None = None) -> int | None:
    """Count up to ``limit`` pending reports into the rollups, in the caller's transaction: how
    many, or None when another transaction is folding. ``on_counted`` is told, in the same
    transaction, which days and segments the reports counted touched."""
    if not conn.exec_driver_sql(
        "SELECT pg_try_advisory_xact_lock(%(k)s)", {"k": FOLD_LOCK}
    ).scalar():
        return None
    return _fold_batch(conn, limit, on_counted)


def fold_all(conn: Connection, *, batch: int = 50_000, on_counted: OnCounted | None = None) -> int:
    """Count every pending report in, waiting for a folder at work (in the caller's transaction,
    which then keeps every other folder out until it ends)."""
    conn.exec_driver_sql("SELECT pg_advisory_xact_lock(%(k)s)", {"k": FOLD_LOCK})
    done = 0
    while n := _fold_batch(conn, batch, on_counted):
        done += n
    return done


def _fold_batch(conn: Connection, limit: int, on_counted: OnCounted | None) -> int:
    rows = conn.exec_driver_sql(FOLD, {"n": limit}).all()
    if on_counted is not None:
        touched: Touched = defaultdict(set)
        for segment_id, kind, day, _ in rows:
            if segment_id:
                touched[day].add((segment_id, kind))
        if touched:
            on_counted(conn, touched)
    return sum(int(row[3]) for row in rows)


def pending_count(conn: Connection) -> int:
    return int(conn.exec_driver_sql(f"SELECT count(*) FROM {PENDING}").scalar_one())


def _live_sources() -> dict[str, str]:
    """Each rollup's rows read as the rollup plus the pending reports (one row each)."""
    out = {}
    for table, (columns, values, joined) in _COUNT_KEYS.items():
        pending = values.format(r="p", day="p.day", month="p.month")
        out[table] = (
            f"(SELECT {columns}, reports, people FROM {table}"
            f" UNION ALL SELECT {pending}, 1, p.people_count FROM {PENDING} p{joined})"
        )
    out["tile_cells"] = (
        "(SELECT level, cx, cy, kind, reports, people FROM tile_cells"
        f" UNION ALL SELECT l.level, p.grid_x >> ({GRID_LEVEL} - l.level),"
        f" p.grid_y >> ({GRID_LEVEL} - l.level), p.kind, 1, p.people_count"
        f" FROM {PENDING} p CROSS JOIN {_LEVELS})"
    )
    out["segment_totals"] = (
        "(SELECT segment_id, kind, reports, people FROM segment_totals"
        f" UNION ALL SELECT p.segment_id, p.kind, 1, p.people_count FROM {PENDING} p"
        " WHERE p.snap_status = 'snapped')"
    )
    return out


_LIVE = _live_sources()


def live(table: str) -> str:
    """A rollup as readers must read it: a subquery of its rows and the pending reports' (its
    columns, reports, people). Sum its rows by key: a key may come once from each part."""
    return _LIVE[table]


def rebuild(conn: Connection) -> None:
    """Recompute every rollup from the stored reports and empty rollup_pending (locks both
    against ingest meanwhile). Maintenance over every report: not bound by the requests'
    statement timeout (at 1,000,000 reports it takes longer than the default 30 s)."""
    conn.exec_driver_sql("SET LOCAL statement_timeout = 0")
    conn.exec_driver_sql(f"LOCK TABLE {PENDING}, {', '.join(ROLLUP_TABLES)} IN EXCLUSIVE MODE")
    conn.exec_driver_sql(f"DELETE FROM {PENDING}")
    for table in ROLLUP_TABLES:
        conn.exec_driver_sql(f"DELETE FROM {table}")
    for table, (columns, values, joined) in _COUNT_KEYS.items():
        places = _places(columns)
        conn.exec_driver_sql(
            f"""
            INSERT INTO {table} ({columns}, reports, people)
            SELECT {values.format(**_periods("reports"))}, count(*), sum(people_count)
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


# Delete one report and take it out of the rollups, in one statement; then drop emptied rows.
# A report still pending is only taken out of rollup_pending. If a fold holds its pending row,
# the delete waits for the fold's commit, then finds the row gone and counts the report out of
# the rollups the fold counted it into.
UNCOUNT_DELETED = f"""
    WITH gone AS (
        DELETE FROM reports WHERE id = %(id)s
        RETURNING {_PENDING_COLUMNS}
    ),
    unpended AS (
        DELETE FROM {PENDING} WHERE id = %(id)s RETURNING id
    ),
    new AS (
        SELECT gone.*, -1 AS weight FROM gone WHERE NOT EXISTS (SELECT 1 FROM unpended)
    ),
    {ROLLUP_NEW_ROWS}
    SELECT id, coalesce(segment_id, ''), kind, (observed_at AT TIME ZONE 'UTC')::date FROM gone
"""
DROP_EMPTIED = tuple(f"DELETE FROM {table} WHERE reports = 0" for table in ROLLUP_TABLES)
