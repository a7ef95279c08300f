"""A cell's centre lies in that cell: a report moved there (retention) keeps its cells, so counts
and clusters at that level and every coarser one do not change."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.domain.grid import GRID_LEVEL, MAX_LAT, ROLLUP_LEVELS, cell_centre, grid_cell

longitudes = st.floats(-180.0, 180.0)
# Beyond Web Mercator's edge too: such reports belong to its first or last row.
latitudes = st.floats(-90.0, 90.0)
levels = st.integers(0, GRID_LEVEL)


def _cell(lon: float, lat: float, level: int) -> tuple[int, int]:
    gx, gy = grid_cell(lon, lat)
    shift = GRID_LEVEL - level
    return gx >> shift, gy >> shift


@settings(max_examples=2_000, deadline=None)
@given(longitudes, latitudes, levels)
def test_a_cells_centre_lies_in_that_cell(lon: float, lat: float, level: int) -> None:
    cell = _cell(lon, lat, level)
    assert _cell(*cell_centre(level, *cell), level) == cell


@settings(max_examples=2_000, deadline=None)
@given(longitudes, latitudes)
def test_moving_to_the_finest_rollup_centre_keeps_every_rollup_cell(lon: float, lat: float) -> None:
    finest = max(ROLLUP_LEVELS)
    centre = cell_centre(finest, *_cell(lon, lat, finest))
    for level in range(finest + 1):
        assert _cell(*centre, level) == _cell(lon, lat, level)


@pytest.mark.parametrize("level", [0, 12, 15, GRID_LEVEL])
def test_the_corner_cells_centres_lie_inside_web_mercator(level: int) -> None:
    last = (1 << level) - 1
    for cx, cy in ((0, 0), (last, last), (0, last), (last, 0)):
        lon, lat = cell_centre(level, cx, cy)
        assert -180.0 < lon < 180.0
        assert -MAX_LAT < lat < MAX_LAT
        assert _cell(lon, lat, level) == (cx, cy)


@pytest.mark.parametrize("level", [-1, GRID_LEVEL + 1])
def test_levels_beyond_the_grid_are_refused(level: int) -> None:
    with pytest.raises(ValueError, match="grid level"):
        cell_centre(level, 0, 0)
