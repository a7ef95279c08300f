"""The global grid: every report is kept with its cell in a 2^24 x 2^24 Web Mercator grid
(``grid_cell``, about 2.4 m at the equator), and everything that counts reports by place stands
on it: map tiles and their cluster cells (service/domain/tiles.py), the rollups kept per cell at
ROLLUP_LEVELS, a box's pages and counts (whole cells inside it, ``cells_inside``), and retention
(a purged report moves to its cell's centre, ``cell_centre``)."""

from __future__ import annotations

import math
from dataclasses import dataclass

GRID_LEVEL = 24  # reports' cells: the Web Mercator grid of 2^24 cells a side
# Grid levels whose cells are kept counted (the PostGIS store's tile_cells): the cluster cells of
# zooms 0-6 (level 12), 7-9 (level 15) and 10-12 (level 18) are sums of these; whether a tile of
# zoom 15 or less holds too many reports to draw one by one is a sum of its level-15 cells.
ROLLUP_LEVELS = (12, 15, 18)
COUNT_LEVEL = 15
# A purged report (retention) moves to the centre of its cell at this level: about 1.2 km.
PURGE_LEVEL = 15
MAX_LAT = 85.051128779806592  # Web Mercator's edge
_GRID_SIZE = 1 << GRID_LEVEL


def lat_of_row(row: float, n: int) -> float:
    return math.degrees(math.atan(math.sinh(math.pi * (1.0 - 2.0 * row / n))))


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


@dataclass(frozen=True, slots=True)
class CellBlock:
    """The cells x0..x1 by y0..y1 of the 2^level grid that lie wholly inside a box, and strips
    (w, s, e, n) that together hold every position of the box outside those cells."""

    level: int
    x0: int
    x1: int
    y0: int
    y1: int
    strips: tuple[tuple[float, float, float, float], ...]


# Strips reach this far (degrees) into the block: far more than float rounding in grid_cell
# (~1e-13), far less than a cell. They only narrow an index search; the cells decide.
_STRIP_OVERLAP = 1e-7


def cells_inside(bbox: tuple[float, float, float, float], level: int) -> CellBlock | None:
    """The block of whole level-``level`` cells inside ``bbox`` (w, s, e, n; inclusive), or None
    when it holds no whole cell.

    A block cell lies strictly right of the cell holding the box's west edge, so every position in
    it has a grid_x above that edge's and, grid_cell being monotonic, a longitude above w; the
    same holds for the other three edges. So a report in a block cell is in the box, whatever the
    float rounding: the cells the box's edges cross are left for the reports themselves.
    """
    w, s, e, n = bbox
    shift = GRID_LEVEL - level
    west, north = grid_cell(w, n)
    east, south = grid_cell(e, s)
    x0, x1 = (west >> shift) + 1, (east >> shift) - 1
    y0, y1 = (north >> shift) + 1, (south >> shift) - 1
    if x0 > x1 or y0 > y1:
        return None
    size = 1 << level
    inner_w, inner_e = x0 / size * 360.0 - 180.0, (x1 + 1) / size * 360.0 - 180.0
    inner_n, inner_s = lat_of_row(y0, size), lat_of_row(y1 + 1, size)
    lap = _STRIP_OVERLAP
    strips = (
        (w, s, inner_w + lap, n),
        (inner_e - lap, s, e, n),
        (w, inner_n - lap, e, n),
        (w, s, e, inner_s + lap),
    )
    return CellBlock(level, x0, x1, y0, y1, strips)
