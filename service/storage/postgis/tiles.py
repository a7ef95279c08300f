"""Map tiles on PostGIS: a whole Mapbox Vector Tile from one statement (ST_AsMVT), and the same
content as plain data for GeoJSON tiles.

What a tile reads (see service/domain/tiles.py for what it shows):
- without a time window, the rollups (``tile_cells`` for cluster cells, ``segment_totals`` for
  the segments layer, each with the reports pending for it: rollups.live): a low-zoom tile sums a
  few thousand rows however many reports there are;
- with a window, the window's reports themselves (exact for any instants; the GiST index finds the
  tile's reports, and the segments layer counts through the (segment_id, observed_at) index);
- individual points always from ``reports``, found through the GiST index with the tile's
  buffered box.

Every value travels as a bound parameter; the statement text only varies by which clauses apply.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection

from service.domain.grid import COUNT_LEVEL, GRID_LEVEL, MAX_LAT, ROLLUP_LEVELS
from service.domain.tiles import (
    BUFFER,
    EXTENT,
    SegmentCount,
    TileCluster,
    TileFilter,
    TilePoint,
    TileQuery,
    TileReports,
)
from service.storage.postgis.rollups import live

_ENVELOPE = "ST_MakeEnvelope(%(w)s, %(s)s, %(e)s, %(n)s, 4326)"
_TILE_3857 = "ST_TileEnvelope(%(z)s, %(x)s, %(y)s)"
# The buffered tile as an exact lon/lat box: && finds candidates through the GiST index (its
# float4 boxes let in points a hair outside), the ranges on ST_X/ST_Y decide.
_IN_BUFFERED_TILE = (
    f"geom && {_ENVELOPE} AND ST_X(geom) BETWEEN %(w)s AND %(e)s"
    " AND ST_Y(geom) BETWEEN %(s)s AND %(n)s"
)
_IN_TILE_CELLS = (
    f"geom && {_ENVELOPE} AND grid_x >= %(gx0)s AND grid_x < %(gx1)s"
    " AND grid_y >= %(gy0)s AND grid_y < %(gy1)s"
)
# A report beyond Web Mercator's edge is drawn at the edge (where grid_cell counts it).
_ON_MERCATOR = f"""
    CASE WHEN abs(ST_Y(geom)) <= {MAX_LAT} THEN geom
         ELSE ST_SetSRID(ST_MakePoint(ST_X(geom), sign(ST_Y(geom)) * {MAX_LAT}), 4326) END
"""
_FEATURE_ID = "('x' || substr(replace(id::text, '-', ''), 1, 15))::bit(60)::bigint"
_POINT_COLUMNS = f"""
    {_FEATURE_ID} AS fid, id, observed_at, kind, people_count, snap_status,
    direction::text AS direction, segment_id, side::text AS side
"""


def _filters(flt: TileFilter) -> str:
    clauses = []
    if flt.start is not None:
        clauses.append("observed_at >= %(start)s")
    if flt.end is not None:
        clauses.append("observed_at < %(end)s")
    if flt.kind is not None:
        clauses.append("kind = %(kind)s")
    return "".join(f" AND {c}" for c in clauses)


def _params(query: TileQuery) -> dict[str, Any]:
    tile, flt = query.tile, query.filter
    w, s, e, n = tile.lonlat_bounds(BUFFER)
    gx0, gy0, gx1, gy1 = tile.grid_range()
    cells = 1 << (tile.cluster_level - tile.z)
    return {
        "z": tile.z, "x": tile.x, "y": tile.y, "w": w, "s": s, "e": e, "n": n,
        "gx0": gx0, "gy0": gy0, "gx1": gx1, "gy1": gy1,
        "shift": GRID_LEVEL - tile.cluster_level,
        "cx0": tile.x * cells, "cy0": tile.y * cells, "cell_px": tile.cell_px,
        "half_px": tile.cell_px // 2,
        "start": flt.start, "end": flt.end, "kind": flt.kind,
        "max_points": query.max_points,
    }  # fmt: skip


def _rollup_level(query: TileQuery) -> int | None:
    """The rollup level cluster cells can be summed from, or None to read the reports."""
    if query.filter.start is not None or query.filter.end is not None:
        return None
    return next((lv for lv in ROLLUP_LEVELS if lv >= query.tile.cluster_level), None)


def _clusters_sql(query: TileQuery, params: dict[str, Any]) -> str:
    """cx, cy, n, people of each non-empty cluster cell of the tile."""
    level = _rollup_level(query)
    if level is None:
        return f"""
            SELECT grid_x >> %(shift)s AS cx, grid_y >> %(shift)s AS cy,
                   count(*)::int AS n, sum(people_count)::int AS people
            FROM reports
            WHERE {_IN_TILE_CELLS}{_filters(query.filter)}
            GROUP BY 1, 2
            """
    down = GRID_LEVEL - level
    params |= {
        "level": level,
        "down": level - query.tile.cluster_level,
        "lx0": params["gx0"] >> down, "ly0": params["gy0"] >> down,
        "lx1": params["gx1"] >> down, "ly1": params["gy1"] >> down,
    }  # fmt: skip
    kind = " AND kind = %(kind)s" if query.filter.kind is not None else ""
    return f"""
        SELECT cx >> %(down)s AS cx, cy >> %(down)s AS cy,
               sum(reports)::int AS n, sum(people)::int AS people
        FROM {live("tile_cells")} AS cells
        WHERE level = %(level)s AND cx >= %(lx0)s AND cx < %(lx1)s
          AND cy >= %(ly0)s AND cy < %(ly1)s{kind}
        GROUP BY 1, 2
        """


def _too_many_points_sql(query: TileQuery) -> str:
    """Whether more than max_points reports lie in the tile itself (by grid cell: the rule both
    stores apply). Without a time window, and for tiles no smaller than a level-15 cell, a sum
    of the tile's rollup cells; else a capped count of its reports."""
    tile = query.tile
    if query.filter.start is None and query.filter.end is None and tile.z <= COUNT_LEVEL:
        kind = " AND kind = %(kind)s" if query.filter.kind is not None else ""
        shift = GRID_LEVEL - COUNT_LEVEL
        return f"""
            (SELECT coalesce(sum(reports), 0) FROM {live("tile_cells")} AS cells
             WHERE level = {COUNT_LEVEL} AND cx >= %(gx0)s >> {shift} AND cx < %(gx1)s >> {shift}
               AND cy >= %(gy0)s >> {shift} AND cy < %(gy1)s >> {shift}{kind}) > %(max_points)s
            """
    return f"""
        (SELECT count(*) FROM (
            SELECT 1 FROM reports WHERE {_IN_TILE_CELLS}{_filters(query.filter)}
            LIMIT %(max_points)s + 1) AS probe) > %(max_points)s
        """


def tile_reports(conn: Connection, query: TileQuery) -> TileReports:
    params = _params(query)
    too_many = f"SELECT {_too_many_points_sql(query)}"
    if query.points and not conn.exec_driver_sql(too_many, params).scalar():
        rows = conn.exec_driver_sql(
            f"""SELECT id, ST_X(geom), ST_Y(geom), observed_at, kind, people_count,
                       direction::text, snap_status, segment_id, side::text
                FROM reports WHERE {_IN_BUFFERED_TILE}{_filters(query.filter)}""",
            params,
        )
        return TileReports(points=tuple(TilePoint(*row) for row in rows))
    rows = conn.exec_driver_sql(_clusters_sql(query, params), params)
    return TileReports(clusters=tuple(TileCluster(*row) for row in rows))


_LISTED_SEGMENTS = "segment_id = ANY(%(segment_ids)s)"
_SEGMENTS_OF_TILE = f"segment_id IN (SELECT segment_id FROM segments WHERE geom && {_ENVELOPE})"


def _counts_sql(flt: TileFilter, among: str) -> str:
    """segment_id, reports, people of segments with matching snapped reports: from the rollup
    (every segment) without a time window, else from the window's reports of the segments
    ``among`` selects."""
    if flt.start is None and flt.end is None:
        kind = " WHERE kind = %(kind)s" if flt.kind is not None else ""
        return f"""
            SELECT segment_id, sum(reports)::int AS reports, sum(people)::int AS people
            FROM {live("segment_totals")} AS totals{kind} GROUP BY segment_id
            """
    return f"""
        SELECT segment_id, count(*)::int AS reports, sum(people_count)::int AS people
        FROM reports
        WHERE snap_status = 'snapped' AND {among}{_filters(flt)}
        GROUP BY segment_id
        """


def segment_counts(
    conn: Connection, flt: TileFilter, segment_ids: Sequence[str]
) -> dict[str, SegmentCount]:
    params = {
        "start": flt.start,
        "end": flt.end,
        "kind": flt.kind,
        "segment_ids": list(segment_ids),
    }
    wanted = set(segment_ids)
    rows = conn.exec_driver_sql(_counts_sql(flt, _LISTED_SEGMENTS), params)
    return {sid: SegmentCount(n, people) for sid, n, people in rows if sid in wanted}


def tile_mvt(conn: Connection, query: TileQuery) -> bytes:
    """Both layers in one statement: ST_AsMVT of each, concatenated (a tile is its layers)."""
    params = _params(query)
    segments = f"""
        SELECT coalesce(ST_AsMVT(g, 'segments', {EXTENT}, 'geom', 'fid'), '')
        FROM (
            SELECT s.load_order + 1 AS fid, s.segment_id, s.border,
                   coalesce(s.properties->>'region_pair', '') AS region_pair,
                   coalesce(c.reports, 0) AS reports, coalesce(c.people, 0) AS people,
                   ST_AsMVTGeom(ST_Transform(s.geom, 3857), {_TILE_3857}, {EXTENT}, {BUFFER}, true)
                       AS geom
            FROM segments s
            LEFT JOIN ({_counts_sql(query.filter, _SEGMENTS_OF_TILE)}) c
                ON c.segment_id = s.segment_id
            WHERE s.geom && {_ENVELOPE}
        ) g
        WHERE g.geom IS NOT NULL
        """
    clusters = f"""
        SELECT coalesce(ST_AsMVT(k, 'reports', {EXTENT}, 'geom', 'fid'), '')
        FROM (
            SELECT (cx::bigint << 32) | cy AS fid, n AS "count", people,
                   ST_MakePoint((cx - %(cx0)s) * %(cell_px)s + %(half_px)s,
                                (cy - %(cy0)s) * %(cell_px)s + %(half_px)s) AS geom
            FROM ({_clusters_sql(query, params)}) cells
        ) k
        """
    if query.points:
        points = f"""
            SELECT coalesce(ST_AsMVT(p, 'reports', {EXTENT}, 'geom', 'fid'), '')
            FROM (
                SELECT fid, id::text AS id,
                       to_char(observed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
                           AS observed_at,
                       kind, people_count, snap_status, direction, segment_id, side,
                       ST_AsMVTGeom(ST_Transform({_ON_MERCATOR}, 3857), {_TILE_3857}, {EXTENT},
                                    {BUFFER}, true) AS geom
                FROM (SELECT {_POINT_COLUMNS}, geom FROM reports
                      WHERE {_IN_BUFFERED_TILE}{_filters(query.filter)}) r
            ) p
            WHERE p.geom IS NOT NULL
            """
        layer = f"CASE WHEN {_too_many_points_sql(query)} THEN ({clusters}) ELSE ({points}) END"
    else:
        layer = f"({clusters})"
    row = conn.exec_driver_sql(f"SELECT ({segments}) || {layer}", params).scalar()
    return bytes(row or b"")
