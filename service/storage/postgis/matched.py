"""numberMatched of an OGC page when the rollups give it exactly, for a query without filters or
with a box alone: a sum over small tables, never a count of the reports themselves."""

from __future__ import annotations

from sqlalchemy import Connection

from service.domain.grid import GRID_LEVEL, ROLLUP_LEVELS, grid_cell
from service.domain.queries import ReportQuery
from service.storage.postgis.rollups import ALL_KINDS, live

_LEVEL = min(ROLLUP_LEVELS)
_SHIFT = GRID_LEVEL - _LEVEL
_CELLS_MAX = 20_000  # a box over more rollup cells with reports than this is not counted


def count_matched(conn: Connection, query: ReportQuery) -> int | None:
    """The number of reports ``query`` matches, when the rollups (with the reports still pending
    for them) say it exactly: with no filter, their total; with a box alone, the total of the
    rollup cells under it when every cell holding reports there lies wholly inside the box (as a
    box around all the data does). Else None."""
    if query.filters_nothing():
        # Every report once, under ALL_KINDS in the narrow month rollup (as the SQLite store
        # reads its month rollup): a row per segment and month however many reports there are.
        # (The level-12 tile cells, read before, grow with the area the reports cover: 17,000
        # rows at 1,000,000 reports, 23,000 at 10,000,000.)
        total = conn.exec_driver_sql(
            f"SELECT coalesce(sum(reports), 0) FROM {live('count_segment_months')} AS months"
            " WHERE kind = %(every)s",
            {"every": ALL_KINDS},
        ).scalar_one()
        return int(total)
    if query.bbox is None or not query.filters_nothing(but_bbox=True):
        return None
    min_lon, min_lat, max_lon, max_lat = query.bbox
    gx0, gy1 = grid_cell(min_lon, min_lat)
    gx1, gy0 = grid_cell(max_lon, max_lat)  # grid y runs south
    cx0, cx1, cy0, cy1 = gx0 >> _SHIFT, gx1 >> _SHIFT, gy0 >> _SHIFT, gy1 >> _SHIFT
    rows = conn.exec_driver_sql(
        f"SELECT cx, cy, sum(reports) FROM {live('tile_cells')} AS cells WHERE level = %(level)s"
        " AND cx BETWEEN %(cx0)s AND %(cx1)s AND cy BETWEEN %(cy0)s AND %(cy1)s"
        " GROUP BY cx, cy HAVING sum(reports) > 0 LIMIT %(most)s",
        {"level": _LEVEL, "cx0": cx0, "cx1": cx1, "cy0": cy0, "cy1": cy1, "most": _CELLS_MAX + 1},
    ).all()
    if len(rows) > _CELLS_MAX:
        return None
    size = 1 << _SHIFT
    total = 0
    for cx, cy, reports in rows:
        # Wholly inside: every grid cell of it lies beyond the box's edge grid cells (a report in
        # an edge grid cell may be on either side of the edge).
        if not (cx * size > gx0 and (cx + 1) * size - 1 < gx1):
            return None
        if not (cy * size > gy0 and (cy + 1) * size - 1 < gy1):
            return None
        total += int(reports)
    return total
