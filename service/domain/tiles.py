"""Map tiles: Web Mercator tile arithmetic, and a tile's content as plain data (encoded as Mapbox
Vector Tile or GeoJSON by service/usecases/tile_encoding.py).

Clustering. Every report is kept with its cell in the global grid (service/domain/grid.py, 2^24
cells a side, about 2.4 m at the equator). Below ``points_min_zoom``, and in any tile that would hold more than
``max_points`` points, the ``reports`` layer holds one point per non-empty cluster cell instead of
the reports: cells are 1/64 of the tile's side (64 px of the 4096 extent), aligned to the global
grid, so a tile has at most 4,096 of them whatever the data volume, a cell never straddles two
tiles, and the cells of a tile add up to exactly the reports inside it. A cell is drawn at its
centre, never at its reports' mean position: a cluster gives away no more than its cell.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from service.domain.errors import FieldError, InvalidParameter, TileNotFound
from service.domain.grid import GRID_LEVEL, MAX_LAT, lat_of_row
from service.domain.segments import BorderSegment, SegmentIndex

MAX_ZOOM = 22
EXTENT = 4096  # MVT coordinates per tile side
BUFFER = 64  # pixels drawn beyond each edge, so symbols and lines do not stop at tile borders
CELL_LEVELS = 6  # a cluster cell is 2^-6 of a tile side: 64 px


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
    groups: int | None = None  # linked reports counted once, where known and shown
    people_est: int | None = None


def shows_points(tile: TileAddress, points_min_zoom: int) -> bool:
    return tile.z >= points_min_zoom


def cluster_centre_px(tile: TileAddress, c: TileCluster) -> tuple[int, int]:
    cells = 1 << (tile.cluster_level - tile.z)
    size = tile.cell_px
    return (c.cx - tile.x * cells) * size + size // 2, (c.cy - tile.y * cells) * size + size // 2


@dataclass(frozen=True, slots=True)
class TileQuery:
    """One map tile's reports: individual points (within the tile grown by its buffer) when
    ``points`` and the tile itself holds at most ``max_points`` reports (counted by grid cell),
    else the tile's cluster cells."""

    tile: TileAddress
    filter: TileFilter
    points: bool
    max_points: int


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
