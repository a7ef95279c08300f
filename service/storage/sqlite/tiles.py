"""Map tiles on SQLite: a tile's reports and the segments' counts as plain data; the caller encodes
them (service/usecases/tile_encoding.py), as SQLite has no tile encoder of its own.

Reports are found through the R*Tree with the tile's box; each is then placed in its grid cell by
``grid_cell``, the same arithmetic PostGIS uses for its generated columns. Counts are computed from
the reports at each request: the embedded store holds a laptop's worth of data, and keeps no
rollups.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from service.domain.grid import GRID_LEVEL, grid_cell
from service.domain.tiles import (
    BUFFER,
    SegmentCount,
    TileCluster,
    TileFilter,
    TilePoint,
    TileQuery,
    TileReports,
)
from service.storage.sqlite.rows import from_micros, to_micros

_IN_BOX = (
    "row_no IN (SELECT row_no FROM reports_rtree WHERE min_lon <= :e AND max_lon >= :w"
    " AND min_lat <= :n AND max_lat >= :s)"
    " AND lon BETWEEN :w AND :e AND lat BETWEEN :s AND :n"
)


def _filters(flt: TileFilter) -> tuple[str, dict[str, Any]]:
    clauses: list[str] = []
    params: dict[str, Any] = {}
    if flt.start is not None:
        clauses.append("observed_at >= :start")
        params["start"] = to_micros(flt.start)
    if flt.end is not None:
        clauses.append("observed_at < :end")
        params["end"] = to_micros(flt.end)
    if flt.kind is not None:
        clauses.append("kind = :kind")
        params["kind"] = flt.kind
    return "".join(f" AND {c}" for c in clauses), params


def _box(bounds: tuple[float, float, float, float]) -> dict[str, float]:
    w, s, e, n = bounds
    return {"w": w, "s": s, "e": e, "n": n}


def tile_reports(conn: sqlite3.Connection, query: TileQuery) -> TileReports:
    where, params = _filters(query.filter)
    tile = query.tile
    # The tile's own box, a pixel wider (float rounding); the grid cell decides membership.
    rows = conn.execute(
        f"SELECT lon, lat, people_count FROM reports WHERE {_IN_BOX}{where}",
        params | _box(tile.lonlat_bounds(1.0)),
    ).fetchall()
    gx0, gy0, gx1, gy1 = tile.grid_range()
    inside = []
    for lon, lat, people in rows:
        gx, gy = grid_cell(lon, lat)
        if gx0 <= gx < gx1 and gy0 <= gy < gy1:
            inside.append((gx, gy, people))
    # Points when the tile itself holds at most max_points reports (the rule of both stores).
    if query.points and len(inside) <= query.max_points:
        points = conn.execute(
            "SELECT id, lon, lat, observed_at, kind, people_count, direction, snap_status,"
            f" segment_id, side FROM reports WHERE {_IN_BOX}{where}",
            params | _box(tile.lonlat_bounds(BUFFER)),
        ).fetchall()
        return TileReports(points=tuple(_point(row) for row in points))
    shift = GRID_LEVEL - tile.cluster_level
    cells: dict[tuple[int, int], list[int]] = {}
    for gx, gy, people in inside:
        cell = cells.setdefault((gx >> shift, gy >> shift), [0, 0])
        cell[0] += 1
        cell[1] += people
    clusters = (TileCluster(cx, cy, n, people) for (cx, cy), (n, people) in cells.items())
    return TileReports(clusters=tuple(sorted(clusters, key=lambda c: (c.cx, c.cy))))


def _point(row: Any) -> TilePoint:
    id_, lon, lat, observed, kind, people, direction, status, segment_id, side = row
    return TilePoint(
        UUID(id_),
        lon,
        lat,
        from_micros(observed),
        kind,
        people,
        direction,
        status,
        segment_id,
        side,
    )


def segment_counts(
    conn: sqlite3.Connection, flt: TileFilter, segment_ids: Sequence[str]
) -> dict[str, SegmentCount]:
    where, params = _filters(flt)
    rows = conn.execute(
        "SELECT segment_id, count(*), sum(people_count) FROM reports"
        " WHERE snap_status = 'snapped'"
        f" AND segment_id IN (SELECT value FROM json_each(:ids)){where}"
        " GROUP BY segment_id",
        params | {"ids": json.dumps(list(segment_ids))},
    )
    return {sid: SegmentCount(n, people) for sid, n, people in rows}
