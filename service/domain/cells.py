"""Whole grid cells inside a box: what lets a rollup kept per grid cell (PostGIS's cell_days)
answer for a box exactly, leaving only the cells the box's edges cross to the reports."""

from __future__ import annotations

from dataclasses import dataclass

from service.domain.tiles import GRID_LEVEL, grid_cell, lat_of_row


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
