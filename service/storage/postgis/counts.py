"""Aggregate counts on PostGIS: one statement sums the signed parts of every bucket, reading the
rollups for whole UTC periods and the reports for the ranges between.

Groups and people_est (linked reports counted once, docs/linking.md): a rollup's period counts
each report as a group of its own people, and ``group_months`` / ``group_days`` (migration 0017)
add what linking changes in that for the period (in a box, ``group_days`` for the whole cells);
the reports read directly are each counted where their group counts (``report_groups``).

Which rollup a period reads (each with the reports pending for it: rollups.live):
- a month: ``count_segment_months`` when the keys and filters need no side or direction (5x
  fewer rows; its ALL_KINDS rows, 4x fewer again, when they need no kind either), else
  ``count_months``;
- a day: ``count_days``; with a box, ``cell_days`` for the whole level-12 cells inside the box,
  and the reports themselves in the cells its edges cross (service/domain/grid.cells_inside).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from service.domain.aggregation import COUNT_KEYS, CountQuery, CountRow, Grain, period_end
from service.domain.grid import GRID_LEVEL, CellBlock, cells_inside
from service.storage.postgis.rollups import ALL_KINDS, CELL_DAYS_LEVEL, live
from service.storage.rows import rows_of

# The key columns of a rollup row (the narrow month rollup keeps no side or direction), and of a
# report.
_ALL_KEYS = "c.segment_id, c.side, c.kind, c.direction"
_NARROW_KEYS = "c.segment_id, '' AS side, c.kind, '' AS direction"
_REPORT_KEYS = """coalesce(r.segment_id, '') AS segment_id, coalesce(r.side::text, '') AS side,
               r.kind, coalesce(r.direction::text, '') AS direction, r.people_count AS people,
               (g.report_id IS NULL OR g.is_anchor)::int AS groups,
               coalesce(g.group_people, r.people_count) AS people_est"""
# A report is a group of its own, or counted where its group counts (docs/linking.md). Its row
# of report_groups is looked up by key, report by report (LATERAL, fenced by OFFSET 0): joined
# plainly, the planner hashed the whole of report_groups once per range (13 ranges of a
# St John's monthly series: 49 of 111 ms, and report_groups grows with the reports).
_REPORTS_GROUPED = """reports r LEFT JOIN LATERAL (
                   SELECT g.report_id, g.is_anchor, g.group_people FROM report_groups g
                   WHERE g.report_id = r.id OFFSET 0) AS g ON true"""


def _rollup_sql(name: str, source: str, columns: str, filters: str) -> str:
    """The rows of rollup ``source`` for the periods bound as ``name``_period/_bucket/_sign, each
    with its bucket and sign, keyed by ``columns``.

    The periods are also a condition on the rollup itself (``= ANY``), which reaches its period
    index: by the join alone, the planner read every row of count_days in a hash join (150 ms
    at 1,000,000 reports for 14 days of 553,000 rows, and the table grows with the data)."""
    return f"""
        SELECT v.bucket, v.sign, {columns}, c.reports, c.people, c.reports AS groups,
               c.people AS people_est
        FROM unnest(%({name}_period)b::timestamptz[], %({name}_bucket)b::int[],
                    %({name}_sign)b::int[]) AS v(period, bucket, sign)
        JOIN {source} c ON c.period = v.period
        WHERE c.period = ANY(%({name}_period)b::timestamptz[]){filters}
    """


def _group_counts_sql(name: str, grain: Grain, filters: str) -> str:
    """What linking changes in the counts of the ``grain`` periods bound as ``name``_period/
    _bucket/_sign (group_days or group_months, migration 0017), with their buckets and signs."""
    return f"""
        SELECT v.bucket, v.sign, {_ALL_KEYS}, 0 AS reports, 0 AS people, c.groups,
               c.people AS people_est
        FROM unnest(%({name}_period)b::timestamptz[], %({name}_bucket)b::int[],
                    %({name}_sign)b::int[]) AS v(period, bucket, sign)
        JOIN group_{grain}s c ON c.period = v.period
        WHERE true{filters}
    """


# Each range reads its own reports (LATERAL, fenced by OFFSET 0): joined plainly, the planner
# read every report of a segment once per range and filtered the join afterwards (bench/aggregates:
# 190 of 244 ms for one segment's days; 0.5 ms as ranges on the (segment_id, observed_at) index).
# A range that two buckets share (local weeks: the hours between UTC and local midnight, counted
# out of one week and into the next) is read once, and counted into each (u.k: its number); its
# reports are summed by the keys asked for before they meet the buckets, as the planner joins
# them by a nested loop (106 parts x 2,700 reports took 18 ms).
def _ranges_sql(kept: str, grouped: str, filters: str) -> str:
    """The reports of each distinct span bound as u_start/u_end, summed by the keys ``kept``
    (``grouped``: those asked for), then counted into each bucket that has the span."""
    return f"""
        SELECT v.bucket, v.sign, r.segment_id, r.side, r.kind, r.direction, r.reports, r.people,
               r.groups, r.people_est
        FROM (
            SELECT u.k, {kept}, count(*) AS reports, sum(r.people) AS people,
                   sum(r.groups) AS groups, sum(r.people_est) AS people_est
            FROM unnest(%(u_start)b::timestamptz[], %(u_end)b::timestamptz[]) WITH ORDINALITY
                AS u(t0, t1, k)
            CROSS JOIN LATERAL (
                SELECT {_REPORT_KEYS}
                FROM {_REPORTS_GROUPED}
                WHERE r.observed_at >= u.t0 AND r.observed_at < u.t1{filters}
                OFFSET 0
            ) AS r
            GROUP BY u.k{grouped}
        ) AS r
        JOIN unnest(%(r_range)b::int[], %(r_bucket)b::int[], %(r_sign)b::int[])
            AS v(k, bucket, sign) ON v.k = r.k
    """


# The reports of a box's day periods that no whole cell of the block holds: found through the
# GiST index by the strips along the box's edges. Each finds its day among the sorted periods by
# binary search (width_bucket): a join on the day was planned as a nested loop, 365 comparisons a
# report.
def _edges_sql(strips: str, filters: str) -> str:
    """The reports of the day periods bound as d_period/_bucket/_sign that lie in ``strips``
    (boxes OR'd), each with its day's bucket and sign."""
    return f"""
        SELECT (%(d_bucket)b::int[])[e.i] AS bucket, (%(d_sign)b::int[])[e.i] AS sign,
               e.segment_id, e.side, e.kind, e.direction, 1 AS reports, e.people, e.groups,
               e.people_est
        FROM (
            SELECT width_bucket(r.observed_at, %(d_period)b::timestamptz[]) AS i,
                   date_trunc('day', r.observed_at, 'UTC') AS day, {_REPORT_KEYS}
            FROM {_REPORTS_GROUPED}
            WHERE r.observed_at >= %(d_first)s AND r.observed_at < %(d_last)s
              AND ({strips}){filters}
        ) AS e
        WHERE e.i > 0 AND (%(d_period)b::timestamptz[])[e.i] = e.day
    """


# With a box, every range is shorter than a day (the box asks for day periods): its reports are
# found by time alone. (Adding the GiST index made the planner AND a bitmap of every report in
# the box into every range: 8 ms a range for a box of 100,000 reports.)
_BOX = " AND ST_X(r.geom) BETWEEN %(w)s AND %(e)s AND ST_Y(r.geom) BETWEEN %(s)s AND %(n)s"
_BOX_ENVELOPE = "r.geom && ST_MakeEnvelope(%(w)s, %(s)s, %(e)s, %(n)s, 4326)"
_BLOCK_CELLS = " AND c.cx BETWEEN %(x0)s AND %(x1)s AND c.cy BETWEEN %(y0)s AND %(y1)s"


def _in_block(shift: int) -> str:
    """A report in a whole cell of the block (its grid cell ``shift`` levels down)."""
    return (
        f"r.grid_x >> {shift} BETWEEN %(x0)s AND %(x1)s"
        f" AND r.grid_y >> {shift} BETWEEN %(y0)s AND %(y1)s"
    )


def _strip_envelope(i: int) -> str:
    return f"r.geom && ST_MakeEnvelope(%(sw{i})s, %(ss{i})s, %(se{i})s, %(sn{i})s, 4326)"


_NARROW = {"segment_id", "kind"}  # what count_segment_months keeps


def _filters(query: CountQuery, alias: str) -> str:
    out = ""
    if query.kind is not None:
        out += f" AND {alias}.kind = %(kind)s"
    if query.segment_ids is not None:
        out += f" AND {alias}.segment_id = ANY(%(segment_ids)s)"
    return out


def _box_days(query: CountQuery, params: dict[str, Any], block: CellBlock | None) -> list[str]:
    """The sources of a box's day periods: whole cells from cell_days, and the reports in the
    cells the box's edges cross (all of the box's reports when it holds no whole cell)."""
    days = sorted((p for p in query.periods if p.grain == "day"), key=lambda p: p.period)
    if not days:
        return []
    if len({p.period for p in days}) != len(days):
        raise ValueError("a box counts each day period once")
    params |= {
        "d_period": [p.period for p in days],
        "d_bucket": [p.bucket for p in days],
        "d_sign": [p.sign for p in days],
        "d_first": days[0].period,
        "d_last": period_end("day", days[-1].period),
    }
    filters = _filters(query, "r") + _BOX
    if block is None:
        return [_edges_sql(_BOX_ENVELOPE, filters)]
    params |= {"x0": block.x0, "x1": block.x1, "y0": block.y0, "y1": block.y1}
    for i, strip in enumerate(block.strips):
        params |= dict(zip((f"sw{i}", f"ss{i}", f"se{i}", f"sn{i}"), strip, strict=True))
    strips = " OR ".join(_strip_envelope(i) for i in range(len(block.strips)))
    not_in_block = f" AND NOT ({_in_block(GRID_LEVEL - block.level)})"
    edges = _edges_sql(strips, filters + not_in_block)
    cell_filters = _filters(query, "c") + _BLOCK_CELLS
    cells = _rollup_sql("d", live("cell_days"), _ALL_KEYS, cell_filters)
    return [cells, _group_counts_sql("d", "day", cell_filters), edges]


def _period_sources(query: CountQuery, params: dict[str, Any]) -> list[str]:
    """The sources of whole UTC months and days (no box): the narrow month rollup when the
    keys and filters need no side or direction, and its every-kind rows when no kind either."""
    narrow = set(query.keys) <= _NARROW
    sources = []
    grain: Grain
    for name, table, grain, columns in (
        ("m", "count_segment_months" if narrow else "count_months", "month",
         _NARROW_KEYS if narrow else _ALL_KEYS),
        ("d", "count_days", "day", _ALL_KEYS),
    ):  # fmt: skip
        chosen = [p for p in query.periods if p.grain == grain]
        if not chosen:
            continue
        filters = _filters(query, "c")
        if table == "count_segment_months":
            every = "kind" not in query.keys and query.kind is None
            filters += f" AND c.kind {'=' if every else '<>'} '{ALL_KINDS}'"
        params |= {
            f"{name}_period": [p.period for p in chosen],
            f"{name}_bucket": [p.bucket for p in chosen],
            f"{name}_sign": [p.sign for p in chosen],
        }
        sources.append(_rollup_sql(name, live(table), columns, filters))
        sources.append(_group_counts_sql(name, grain, _filters(query, "c")))
    return sources


def _range_source(query: CountQuery, params: dict[str, Any]) -> str:
    """The source of the ranges of observed_at, each distinct span read once."""
    spans = list(dict.fromkeys((r.start, r.end) for r in query.ranges))
    number = {span: k for k, span in enumerate(spans, start=1)}
    params |= {
        "u_start": [start for start, _ in spans],
        "u_end": [end for _, end in spans],
        "r_range": [number[r.start, r.end] for r in query.ranges],
        "r_bucket": [r.bucket for r in query.ranges],
        "r_sign": [r.sign for r in query.ranges],
    }
    filters = _filters(query, "r") + (_BOX if query.bbox is not None else "")
    kept = ", ".join(f"r.{key}" if key in query.keys else f"'' AS {key}" for key in COUNT_KEYS)
    grouped = "".join(f", r.{key}" for key in query.keys)
    return _ranges_sql(kept, grouped, filters)


def count_reports(conn: Connection, query: CountQuery) -> list[CountRow]:
    if query.bbox is not None and any(p.grain != "day" for p in query.periods):
        raise ValueError("only day rollups know positions: a box counts days and ranges")
    params: dict[str, Any] = {
        "kind": query.kind,
        "segment_ids": None if query.segment_ids is None else sorted(query.segment_ids),
    }
    sources = []
    if query.bbox is not None:
        w, s, e, n = query.bbox
        params |= {"w": w, "s": s, "e": e, "n": n}
        sources.extend(_box_days(query, params, cells_inside(query.bbox, CELL_DAYS_LEVEL)))
    else:
        sources.extend(_period_sources(query, params))
    if query.ranges:
        sources.append(_range_source(query, params))
    if not sources:
        return []
    sql = _summed_sql(sources, query.keys)
    width = len(query.keys)
    # Straight from psycopg: SQLAlchemy's row objects cost more than the query for big tables.
    driver = conn.connection.dbapi_connection
    cursor = driver.cursor()  # type: ignore[union-attr]
    try:
        # The store's call stops the statement when the request's client goes away
        # (PostgisStore._run, storage/cancel.py).
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    finally:
        cursor.close()
    return rows_of(rows, width=width)


def _summed_sql(sources: list[str], keys: tuple[str, ...]) -> str:
    """The signed sum of ``sources`` per bucket and ``keys``. Each source sums its own rows before
    they meet: tens of thousands of rollup rows are summed where they are read, not carried
    through the union."""
    columns = "".join(f", {k}" for k in keys)
    places = ", ".join(str(i + 1) for i in range(len(keys) + 1))
    parts = " UNION ALL ".join(
        f"SELECT bucket{columns}, sum(sign * reports) AS reports, sum(sign * people) AS people,"
        " sum(sign * groups) AS groups, sum(sign * people_est) AS people_est"
        f" FROM ({source}) AS part GROUP BY {places}"
        for source in sources
    )
    return (
        f"SELECT bucket{columns}, sum(reports)::bigint, sum(people)::bigint,"
        " sum(groups)::bigint, sum(people_est)::bigint"
        f" FROM ({parts}) AS parts GROUP BY {places}"
    )


def observed_range(conn: Connection) -> tuple[Any, Any] | None:
    first, last = conn.exec_driver_sql(
        "SELECT min(observed_at), max(observed_at) FROM reports"
    ).one()
    return None if first is None else (first, last)
