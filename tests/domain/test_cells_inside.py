"""cells_inside: a report in a whole cell of the block is in the box, and every other report in
the box lies in one of the strips, whatever the float rounding at the edges."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from service.domain.grid import GRID_LEVEL, cells_inside, grid_cell, lat_of_row

LEVEL = 12
SHIFT = GRID_LEVEL - LEVEL
# Cell edges near 45° N, 73.5° W, and values a hair either side of them.
_EDGE_LONS = [k / 4096 * 360.0 - 180.0 for k in range(1205, 1218)]
_EDGE_LATS = [lat_of_row(k, 4096) for k in range(1466, 1480)]


def _near(values: list[float]) -> st.SearchStrategy[float]:
    return st.one_of(
        st.sampled_from(values),
        st.tuples(st.sampled_from(values), st.sampled_from([1e-12, -1e-12, 1e-9, -1e-9])).map(sum),
        st.floats(min(values), max(values)),
    )


_lon, _lat = _near(_EDGE_LONS), _near(_EDGE_LATS)


@given(
    west=_lon, east=_lon, south=_lat, north=_lat,
    points=st.lists(st.tuples(_lon, _lat), min_size=1, max_size=50),
)  # fmt: skip
def test_block_cells_are_inside_and_strips_hold_the_rest(
    west: float, east: float, south: float, north: float, points: list[tuple[float, float]]
) -> None:
    w, e = sorted((west, east))
    s, n = sorted((south, north))
    block = cells_inside((w, s, e, n), LEVEL)
    for lon, lat in points:
        gx, gy = grid_cell(lon, lat)
        in_box = w <= lon <= e and s <= lat <= n
        if block is None:
            continue
        in_block = block.x0 <= gx >> SHIFT <= block.x1 and block.y0 <= gy >> SHIFT <= block.y1
        if in_block:
            assert in_box, (lon, lat, block)
        elif in_box:
            assert any(sw <= lon <= se and ss <= lat <= sn for sw, ss, se, sn in block.strips), (
                lon,
                lat,
                block,
            )


def test_a_box_narrower_than_two_cells_has_no_block() -> None:
    w = _EDGE_LONS[3] + 1e-6
    assert cells_inside((w, 45.0, w + 360.0 / 4096 * 1.5, 45.5), LEVEL) is None


def test_the_block_is_every_cell_the_edges_do_not_cross() -> None:
    # Edges a hair inside cells 1207 (west), 1212 (east), rows 1468 (north) and 1475 (south):
    # those are crossed, so the block is columns 1208-1211 and rows 1469-1474.
    w, e = _EDGE_LONS[2] + 1e-9, _EDGE_LONS[8] - 1e-9  # in columns 1207 and 1212
    n, s = _EDGE_LATS[2] - 1e-9, _EDGE_LATS[10] + 1e-9  # in rows 1468 and 1475
    block = cells_inside((w, s, e, n), LEVEL)
    assert block is not None
    assert (block.x0, block.x1, block.y0, block.y1) == (1208, 1211, 1469, 1474)


@given(
    west=st.sampled_from(_EDGE_LONS[:4]),
    south=st.sampled_from(_EDGE_LATS[-4:]),
    width=st.integers(3, 6),
    height=st.integers(3, 6),
    nudge=st.sampled_from([0.0, 1e-12, -1e-12, 1e-9]),
    points=st.lists(st.tuples(_lon, _lat), min_size=1, max_size=50),
)
def test_a_box_three_cells_wide_always_has_a_block_inside_it(
    west: float,
    south: float,
    width: int,
    height: int,
    nudge: float,
    points: list[tuple[float, float]],
) -> None:
    k, j = _EDGE_LONS.index(west), _EDGE_LATS.index(south)
    box = (
        west + nudge,
        south + nudge,
        _EDGE_LONS[k + width] + nudge,
        _EDGE_LATS[j - height] + nudge,
    )
    block = cells_inside(box, LEVEL)
    assert block is not None
    assert block.x1 - block.x0 >= width - 3 and block.y1 - block.y0 >= height - 3
    w, s, e, n = box
    for lon, lat in points:
        gx, gy = grid_cell(lon, lat)
        if block.x0 <= gx >> SHIFT <= block.x1 and block.y0 <= gy >> SHIFT <= block.y1:
            assert w <= lon <= e and s <= lat <= n
