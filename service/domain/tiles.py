"""Map tiles: Web Mercator tile arithmetic, the integer grid reports are clustered on, and a tile's
content as plain data, encoded as Mapbox Vector Tile or GeoJSON.

Clustering. Every report is kept with its cell in a 2^24 x 2^24 Web Mercator grid (``grid_xy``,
about 2.4 m at the equator). Below ``points_min_zoom``, and in any tile that would hold more than
``max_points`` points, the ``reports`` layer holds one point per non-empty cluster cell instead of
the reports: cells are 1/64 of the tile's side (64 px of the 4096 extent), aligned to the global
grid, so a tile has at most 4,096 of them whatever the data volume, a cell never straddles two
tiles, and the cells of a tile add up to exactly the reports inside it. A cell is drawn at its
centre, never at its reports' mean position: a cluster gives away no more than its cell.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import mapbox_vector_tile
import numpy as np
import shapely

from service.domain.errors import FieldError, InvalidParameter, NotFound
from service.domain.segments import BorderSegment, SegmentIndex

MAX_ZOOM = 22
EXTENT = 4096  # MVT coordinates per tile side
BUFFER = 64  # pixels drawn beyond each edge, so symbols and lines do not stop at tile borders
GRID_LEVEL = 24  # reports' cells: the Web Mercator grid of 2^24 cells a side
CELL_LEVELS = 6  # a cluster cell is 2^-6 of a tile side: 64 px
# Grid levels whose cells are kept counted (the PostGIS store's tile_cells): the cluster cells of
# zooms 0-6 (level 12), 7-9 (level 15) and 10-12 (level 18) are sums of these; whether a tile of
# zoom 15 or less holds too many reports to draw one by one is a sum of its level-15 cells.
ROLLUP_LEVELS = (12, 15, 18)
COUNT_LEVEL = 15
# A purged report (retention) moves to the centre of its cell at this level: about 1.2 km.
PURGE_LEVEL = 15
MAX_LAT = 85.051128779806592  # Web Mercator's edge
_GRID_SIZE = 1 << GRID_LEVEL
_EARTH_HALF = math.pi * 6378137.0  # half the Web Mercator world, metres


class TileNotFound(NotFound):
    pass


@dataclass(frozen=True, slots=True)
class TileAddress:
    z: int
    x: int
    y: int

    @property
    def cluster_level(self) -> int:
        """The grid level of this tile's cluster cells."""
        return min(self.z + CELL_LEVELS, GRID_LEVEL)

    @property
    def cell_px(self) -> int:
        """A cluster cell's side in tile pixels."""
        return EXTENT >> (self.cluster_level - self.z)

    def grid_range(self) -> tuple[int, int, int, int]:
        """The tile as a half-open range of grid cells: x0, y0, x1, y1."""
        shift = GRID_LEVEL - self.z
        return self.x << shift, self.y << shift, (self.x + 1) << shift, (self.y + 1) << shift

    def lonlat_bounds(self, margin_px: float = 0.0) -> tuple[float, float, float, float]:
        """West, south, east, north in degrees, grown by ``margin_px`` tile pixels each side."""
        n = 1 << self.z
        m = margin_px / EXTENT
        west = (self.x - m) / n * 360.0 - 180.0
        east = (self.x + 1 + m) / n * 360.0 - 180.0
        # Reports beyond Web Mercator's edge (85.05 degrees) belong to its first or last row of
        # tiles, as grid_cell puts them, and are drawn at that edge.
        north = 90.0 if self.y == 0 else lat_of_row(self.y - m, n)
        south = -90.0 if self.y == n - 1 else lat_of_row(self.y + 1 + m, n)
        return max(west, -180.0), south, min(east, 180.0), north


def lat_of_row(row: float, n: int) -> float:
    return math.degrees(math.atan(math.sinh(math.pi * (1.0 - 2.0 * row / n))))


def tile_address(z: int, x: int, y: int) -> TileAddress:
    """The tile, or TileNotFound when it does not exist (z beyond 0-22, x or y beyond 2^z - 1)."""
    if not 0 <= z <= MAX_ZOOM:
        raise TileNotFound(
            f"no zoom level {z}: tiles exist for z 0-{MAX_ZOOM}",
            errors=[FieldError("z", f"must be between 0 and {MAX_ZOOM}")],
        )
    n = 1 << z
    for name, value in (("x", x), ("y", y)):
        if not 0 <= value < n:
            raise TileNotFound(
                f"no tile {z}/{x}/{y}: at zoom {z}, {name} runs from 0 to {n - 1}",
                errors=[FieldError(name, f"must be between 0 and {n - 1} at zoom {z}")],
            )
    return TileAddress(z, x, y)


def grid_cell(lon: float, lat: float) -> tuple[int, int]:
    """A position's cell in the 2^24 Web Mercator grid (x east, y south from the top-left).
    Latitudes beyond Web Mercator's edge land in its first or last row.

    PostGIS generates the same cells (reports.grid_x/grid_y, migration 0002) with the same
    operations in the same order; both call the C library's tan and asinh, so they agree to the
    bit. (numpy's vectorised tan may differ in the last bit, and move a point across a cell edge.)
    """
    lat = min(max(lat, -MAX_LAT), MAX_LAT)
    gx = math.floor((lon + 180.0) / 360.0 * 16777216.0)
    gy = math.floor((1.0 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2.0 * 16777216.0)
    return min(max(gx, 0), _GRID_SIZE - 1), min(max(gy, 0), _GRID_SIZE - 1)


def cell_centre(level: int, cx: int, cy: int) -> tuple[float, float]:
    """The (lon, lat) at the centre of cell (cx, cy) of the 2^level Web Mercator grid.

    ``grid_cell`` puts it back in that cell, and so in the same cell at every coarser level: it
    lies half a cell from every edge, where float rounding (a few 1e-9 of a 2^24 cell) cannot
    reach. A report moved there keeps every count and cluster drawn at those levels.
    """
    if not 0 <= level <= GRID_LEVEL:
        raise ValueError(f"no grid level {level}: levels run from 0 to {GRID_LEVEL}")
    n = 1 << level
    return (cx + 0.5) / n * 360.0 - 180.0, lat_of_row(cy + 0.5, n)


def pixels(tile: TileAddress, lons: Any, lats: Any) -> tuple[np.ndarray, np.ndarray]:
    """Positions in the tile's pixel space (0-4096, y down), unrounded."""
    n = float(1 << tile.z)
    lon = np.asarray(lons, dtype=np.float64)
    lat = np.clip(np.asarray(lats, dtype=np.float64), -MAX_LAT, MAX_LAT)
    fx = (lon + 180.0) / 360.0
    fy = (1.0 - np.arcsinh(np.tan(np.radians(lat))) / math.pi) / 2.0
    return (fx * n - tile.x) * EXTENT, (fy * n - tile.y) * EXTENT


def lonlat_of_pixel(tile: TileAddress, px: float, py: float) -> tuple[float, float]:
    n = 1 << tile.z
    return (tile.x + px / EXTENT) / n * 360.0 - 180.0, lat_of_row(tile.y + py / EXTENT, n)


def point_feature_id(report_id: Any) -> int:
    """A report's MVT feature id: the first 60 bits of its UUID (MVT ids are unsigned integers)."""
    return int(report_id.hex[:15], 16)


def cluster_feature_id(cx: int, cy: int) -> int:
    return (cx << 32) | cy


@dataclass(frozen=True, slots=True)
class TileFilter:
    """Which reports a tile draws: observed in [start, end), of one kind."""

    start: datetime | None = None
    end: datetime | None = None
    kind: str | None = None


def check_filter(flt: TileFilter, kinds: Sequence[str]) -> TileFilter:
    if flt.start is not None and flt.end is not None and flt.end < flt.start:
        raise InvalidParameter("end is before start", errors=[FieldError("end", "is before start")])
    if flt.kind is not None and flt.kind not in kinds:
        reason = f"must be one of: {', '.join(kinds)}"
        raise InvalidParameter(f"kind {reason}", errors=[FieldError("kind", reason)])
    return flt


@dataclass(frozen=True, slots=True)
class TilePoint:
    """One report as a tile draws it: public attributes only (no notes, no device)."""

    id: Any  # UUID
    lon: float
    lat: float
    observed_at: datetime
    kind: str
    people_count: int
    direction: str | None
    snap_status: str
    segment_id: str | None
    side: str | None


@dataclass(frozen=True, slots=True)
class TileCluster:
    """A non-empty cluster cell: its grid coordinates at the tile's cluster level."""

    cx: int
    cy: int
    reports: int
    people: int


@dataclass(frozen=True, slots=True)
class TileReports:
    """The reports layer of one tile: points, or clusters when points would be too many."""

    points: tuple[TilePoint, ...] = ()
    clusters: tuple[TileCluster, ...] = ()


@dataclass(frozen=True, slots=True)
class SegmentCount:
    reports: int
    people: int


def shows_points(tile: TileAddress, points_min_zoom: int) -> bool:
    return tile.z >= points_min_zoom


def point_properties(p: TilePoint) -> dict[str, Any]:
    """Attributes of a point feature. MVT has no null: unknown values are left out."""
    props: dict[str, Any] = {
        "id": str(p.id),
        "observed_at": p.observed_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "kind": p.kind,
        "people_count": p.people_count,
        "snap_status": p.snap_status,
    }
    for key, value in (("direction", p.direction), ("segment_id", p.segment_id), ("side", p.side)):
        if value is not None:
            props[key] = value
    return props


def segment_properties(
    segment: BorderSegment, count: SegmentCount | None, *, min_count: int = 0, hidden: bool = False
) -> dict[str, Any]:
    """A segment's attributes; a count of 1 to ``min_count`` - 1 reports, or one ``hidden`` by
    the public release's rule, is left out, with ``suppressed`` set (MVT has no null)."""
    count = count or SegmentCount(0, 0)
    props: dict[str, Any] = {
        "segment_id": segment.segment_id,
        "border": segment.border,
        "region_pair": str(segment.properties.get("region_pair") or ""),
    }
    if hidden or 0 < count.reports < min_count:
        props["suppressed"] = True
    else:
        props |= {"reports": count.reports, "people": count.people}
    return props


def cluster_centre_px(tile: TileAddress, c: TileCluster) -> tuple[int, int]:
    cells = 1 << (tile.cluster_level - tile.z)
    size = tile.cell_px
    return (c.cx - tile.x * cells) * size + size // 2, (c.cy - tile.y * cells) * size + size // 2


@dataclass(frozen=True, slots=True)
class TileSegment:
    """A segment a tile crosses; ``fid`` is its place in the border file, counted from 1."""

    segment: BorderSegment
    fid: int
    count: SegmentCount | None
    hidden: bool = False  # a public figure the release's rule hides


@dataclass(frozen=True, slots=True)
class TileContent:
    """What one tile shows: the border segments it crosses with their counts, and its reports."""

    tile: TileAddress
    segments: tuple[TileSegment, ...]
    reports: TileReports
    min_count: int = 0  # smaller counts are not shown: cells left out, segment counts suppressed

    @property
    def is_empty(self) -> bool:
        r = self.reports
        return not self.segments and not r.points and not r.clusters


@functools.lru_cache(maxsize=4)
def segment_boxes(index: SegmentIndex) -> np.ndarray:
    """min_lon, min_lat, max_lon, max_lat of each segment, in index order: once per border."""
    boxes = np.empty((len(index.segments), 4))
    for i, segment in enumerate(index.segments):
        xy = np.asarray(segment.coords)
        boxes[i] = (*xy.min(axis=0), *xy.max(axis=0))
    return boxes


def segments_in_tile(boxes: np.ndarray, tile: TileAddress) -> list[int]:
    """Positions of the segments whose bounding box meets the tile grown by its buffer
    (``boxes``: one min_lon, min_lat, max_lon, max_lat row per segment)."""
    w, s, e, n = tile.lonlat_bounds(BUFFER)
    hit = (boxes[:, 0] <= e) & (boxes[:, 2] >= w) & (boxes[:, 1] <= n) & (boxes[:, 3] >= s)
    return [int(i) for i in np.flatnonzero(hit)]


@functools.lru_cache(maxsize=8_192)
def _line_pixels(tile: TileAddress, coords: Sequence[tuple[float, float]]) -> list[Any]:
    """A segment's line in tile pixels: clipped to the buffered tile, snapped to whole pixels,
    repeated points dropped; empty when nothing of it is left. Kept per tile and line: the
    border does not change between requests, and a low-zoom tile holds hundreds of segments
    (tile 0/0/0: 478 lines, 2/3 of the public tile's cost before). Callers must not change the
    list or its lines (shapely's are immutable)."""
    xy = np.asarray(coords, dtype=np.float64)
    px, py = pixels(tile, xy[:, 0], xy[:, 1])
    line = shapely.linestrings(np.stack([px, py], axis=1))
    clipped = shapely.clip_by_rect(line, -BUFFER, -BUFFER, EXTENT + BUFFER, EXTENT + BUFFER)
    parts = []
    for part in shapely.get_parts(clipped):
        if part.geom_type != "LineString":
            continue
        pts = np.rint(shapely.get_coordinates(part))
        keep = np.ones(len(pts), dtype=bool)
        keep[1:] = np.any(pts[1:] != pts[:-1], axis=1)
        pts = pts[keep]
        if len(pts) >= 2:
            parts.append(shapely.linestrings(pts))
    return parts


def encode_mvt(content: TileContent) -> bytes:
    """The tile as Mapbox Vector Tile 2.1 (extent 4096), encoded in Python: the same layers and
    attributes as the PostGIS store's ST_AsMVT query."""
    tile = content.tile
    layers: list[dict[str, Any]] = []
    seg_features = []
    for ts in content.segments:
        parts = _line_pixels(tile, ts.segment.coords)
        if not parts:
            continue
        geom = parts[0] if len(parts) == 1 else shapely.multilinestrings(parts)
        seg_features.append(
            {
                "geometry": geom,
                "properties": segment_properties(
                    ts.segment, ts.count, min_count=content.min_count, hidden=ts.hidden
                ),
                "id": ts.fid,
            }
        )
    if seg_features:
        layers.append({"name": "segments", "features": seg_features})
    report_features = list(_report_features(content))
    if report_features:
        layers.append({"name": "reports", "features": report_features})
    if not layers:
        return b""
    options = {"y_coord_down": True, "extents": EXTENT}
    return bytes(mapbox_vector_tile.encode(layers, default_options=options))


def _report_features(content: TileContent) -> Iterable[dict[str, Any]]:
    tile = content.tile
    if content.reports.points:
        pts = content.reports.points
        px, py = pixels(tile, [p.lon for p in pts], [p.lat for p in pts])
        for p, x, y in zip(pts, np.rint(px), np.rint(py), strict=True):
            yield {
                "geometry": shapely.Point(x, y),
                "properties": point_properties(p),
                "id": point_feature_id(p.id),
            }
    for c in content.reports.clusters:
        if c.reports < content.min_count:
            continue
        x, y = cluster_centre_px(tile, c)
        yield {
            "geometry": shapely.Point(x, y),
            "properties": {"count": c.reports, "people": c.people},
            "id": cluster_feature_id(c.cx, c.cy),
        }


def geojson_features(content: TileContent) -> list[dict[str, Any]]:
    """The tile's content as GeoJSON features in WGS84, each with its MVT ``layer`` name: lines
    clipped to the buffered tile, reports at their own positions, clusters at their cell centres."""
    tile = content.tile
    out: list[dict[str, Any]] = []
    for ts in content.segments:
        parts = _line_pixels(tile, ts.segment.coords)
        if not parts:
            continue
        lines = []
        for part in parts:
            xy = shapely.get_coordinates(part)
            lines.append([list(lonlat_of_pixel(tile, float(x), float(y))) for x, y in xy])
        geometry: dict[str, Any] = (
            {"type": "LineString", "coordinates": lines[0]}
            if len(lines) == 1
            else {"type": "MultiLineString", "coordinates": lines}
        )
        props = segment_properties(
            ts.segment, ts.count, min_count=content.min_count, hidden=ts.hidden
        )
        out.append(_geojson("segments", ts.segment.segment_id, geometry, props))
    for p in content.reports.points:
        point = {"type": "Point", "coordinates": [p.lon, p.lat]}
        out.append(_geojson("reports", str(p.id), point, point_properties(p)))
    for c in content.reports.clusters:
        if c.reports < content.min_count:
            continue
        lon, lat = lonlat_of_pixel(tile, *cluster_centre_px(tile, c))
        centre = {"type": "Point", "coordinates": [lon, lat]}
        props = {"count": c.reports, "people": c.people}
        out.append(_geojson("reports", cluster_feature_id(c.cx, c.cy), centre, props))
    return out


def _geojson(
    layer: str, fid: str | int, geometry: dict[str, Any], props: dict[str, Any]
) -> dict[str, Any]:
    return {
        "type": "Feature",
        "id": fid,
        "geometry": geometry,
        "properties": {"layer": layer, **props},
    }


# Each layer's attributes and their TileJSON types (what vector_layers declares).
SEGMENT_FIELDS = {
    "segment_id": "String",
    "border": "String",
    "region_pair": "String",
    "reports": "Number",
    "people": "Number",
}
REPORT_FIELDS = {
    "count": "Number (clusters: reports in the cell)",
    "people": "Number (clusters: people in the cell)",
    "id": "String (points: the report's id)",
    "observed_at": "String (points: UTC, to the second)",
    "kind": "String (points)",
    "people_count": "Number (points)",
    "direction": "String (points: country entered, if known)",
    "snap_status": "String (points)",
    "segment_id": "String (points: nearest segment, when snapped)",
    "side": "String (points: country whose side the report lies on)",
}
