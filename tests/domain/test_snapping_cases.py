"""Snapping in cases built to be hard, and at the published crossing places."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import shapely

from service.domain.geodesy import metres_per_degree
from service.domain.reports import BEYOND, SnapStatus
from service.domain.segments import BorderSegment, SegmentIndex
from service.domain.snapping import snap, snap_arrays
from tests import factories

from . import bundled
from .brute_force import GEOD, Edges, nearest_on_border

ALPHA2 = {"CAN": "CA", "USA": "US", "MEX": "MX"}


def make_segment(segment_id: str, coords: list[tuple[float, float]]) -> BorderSegment:
    """A CA-US segment (Canada on its left) along ``coords``."""
    return factories.make_segment(
        segment_id, border="CA-US", end_km=100.0, left_country="CAN", right_country="USA",
        coords=tuple(coords),
    )  # fmt: skip


def test_nearest_edge_is_the_geodesically_nearest_not_the_nearest_in_degrees() -> None:
    # At 49 N a degree of longitude is 73 km and a degree of latitude 111 km. The point is 0.012
    # degrees west of a north-south line (878 m) and 0.010 degrees south of an east-west one
    # (1,112 m): nearer the east-west line in degrees, nearer the north-south one on the ground.
    lon, lat = -100.0, 49.0
    north_south = make_segment("NS", [(lon + 0.012, 48.9), (lon + 0.012, 49.1)])
    east_west = make_segment("EW", [(lon - 0.1, lat + 0.010), (lon + 0.005, lat + 0.010)])
    segments = [east_west, north_south]
    lines = shapely.linestrings([s.coords for s in segments])
    in_degrees = shapely.distance(shapely.Point(lon, lat), lines)
    assert in_degrees[0] < in_degrees[1]  # the premise: degrees would pick the wrong line

    [result] = snap([lon], [lat], SegmentIndex(segments), max_distance_m=25_000)

    want = nearest_on_border(Edges.of(segments), (lon, lat), window_m=30_000)
    assert result.segment_id == "NS"
    assert result.distance_m == pytest.approx(want.distance_m, abs=0.001)
    assert result.snapped_lon == pytest.approx(lon + 0.012, abs=1e-9)


@pytest.mark.parametrize("dlat", [0.03, 0.1], ids=["5km", "16km"])
def test_planar_ranking_never_decides_a_close_call(dlat: float) -> None:
    # At 60 N, two tiny edges as far east of the point, one north and one south of it. In the
    # point's local plane (scaled at its latitude) the north one is placed 1 m farther; on the
    # ellipsoid, where meridians converge northward, it is the nearer.
    lon, lat = -140.0, 60.0
    kx, ky = metres_per_degree(np.array([lat]))
    south_dlon = 2 * dlat
    south_planar = float(np.hypot(south_dlon * kx[0], dlat * ky[0]))
    north_dlon = float(np.sqrt((south_planar + 1.0) ** 2 - (dlat * ky[0]) ** 2) / kx[0])
    north = make_segment(
        "N", [(lon + north_dlon, lat + dlat), (lon + north_dlon, lat + dlat + 1e-7)]
    )
    south = make_segment(
        "S", [(lon + south_dlon, lat - dlat - 1e-7), (lon + south_dlon, lat - dlat)]
    )
    _, _, to_north = GEOD.inv(lon, lat, lon + north_dlon, lat + dlat)
    _, _, to_south = GEOD.inv(lon, lat, lon + south_dlon, lat - dlat)
    assert to_north < to_south - 0.5  # the premise: the plane and the ellipsoid disagree

    [result] = snap([lon], [lat], SegmentIndex([south, north]), max_distance_m=25_000)

    assert result.segment_id == "N"


@pytest.mark.parametrize(
    ("turn_to", "point", "side"),
    [
        # East, then sharply back north-west (a left turn): the point east of the corner is left
        # of the first edge's line but right of the second's, and outside the turn: right.
        ((-99.95, 49.05), (-99.89, 49.002), "US"),
        # East, then sharply back south-west (a right turn): outside the turn is the left side.
        ((-99.95, 48.95), (-99.89, 48.998), "CA"),
    ],
    ids=["left-turn", "right-turn"],
)
def test_side_at_a_corner_follows_the_turn(
    turn_to: tuple[float, float], point: tuple[float, float], side: str
) -> None:
    corner = (-99.9, 49.0)
    line = make_segment("L", [(-100.0, 49.0), corner, turn_to])  # left CAN, right USA

    [result] = snap([point[0]], [point[1]], SegmentIndex([line]), max_distance_m=25_000)

    assert (result.snapped_lon, result.snapped_lat) == pytest.approx(corner, abs=1e-9)
    assert result.side == side


@pytest.mark.parametrize(
    "place", bundled.known_places(), ids=[p["properties"]["name"] for p in bundled.known_places()]
)
def test_known_place_snaps_as_published(index: SegmentIndex, place: dict[str, Any]) -> None:
    lon, lat = place["geometry"]["coordinates"]
    published = place["properties"]

    [result] = snap([lon], [lat], index, max_distance_m=25_000)

    assert result.segment_id == published["nearest_segment_id"]
    assert result.distance_m == pytest.approx(published["distance_to_segment_line_m"], abs=0.5)
    assert result.side == ALPHA2[published["side_of_segment_line"]]
    assert result.chainage_km == pytest.approx(published["chainage_km"], abs=0.001)


def _like_brute_force(index: SegmentIndex, edges: Edges, cells: np.ndarray) -> None:
    grid = index.grid
    lon = grid.west[cells] + 0.3 * grid.size_deg[cells]
    lat = grid.south[cells] + 0.6 * grid.size_deg[cells]

    got = snap_arrays(lon, lat, index, max_distance_m=25_000)

    want = [
        nearest_on_border(edges, (x, y), window_m=40_000).distance_m
        for x, y in zip(lon, lat, strict=True)
    ]
    np.testing.assert_allclose(got.distance_m, want, atol=0.001)


def test_points_in_leaves_that_list_chains_snap_like_brute_force(
    index: SegmentIndex, edges: Edges
) -> None:
    # Along the Rio Grande edges are tens of metres: leaves list chains of them, and snapping
    # sorts the chains out by their bounds before measuring edges.
    grid = index.grid
    chained = np.flatnonzero((grid.child < 0) & (grid.chain_stop > grid.chain_start))
    assert len(chained)
    _like_brute_force(index, edges, np.random.default_rng(0).choice(chained, 12, replace=False))


def test_points_in_cells_too_crowded_to_list_snap_like_brute_force() -> None:
    # Where even chains are too many the grid leaves a cell unlisted and the STRtree answers.
    # The bundled border has no such cell; a comb of 2,000 separate 111 m lines 3.6 m apart has.
    comb = [
        make_segment(f"C{i}", [(-100.0 + i * 0.00005, 49.0), (-100.0 + i * 0.00005, 49.001)])
        for i in range(2_000)
    ]
    index = SegmentIndex(comb)
    grid = index.grid
    unlisted = np.flatnonzero(
        (grid.child < 0) & (grid.stop == grid.start) & (grid.chain_stop == grid.chain_start)
    )
    assert len(unlisted)
    cells = np.random.default_rng(0).choice(unlisted, min(8, len(unlisted)), replace=False)
    _like_brute_force(index, Edges.of(comb), cells)


def test_points_beyond_the_grid_snap_when_the_reach_allows(
    index: SegmentIndex, edges: Edges
) -> None:
    # 60 km north of the 49th parallel: beyond the grid's band, so the STRtree answers.
    lon, lat, _ = GEOD.fwd(-110.0, 49.0, 0.0, 60_000)

    [result] = snap([lon], [lat], index, max_distance_m=100_000)

    want = nearest_on_border(edges, (lon, lat), window_m=100_000)
    assert result.status is SnapStatus.SNAPPED
    assert result.distance_m == pytest.approx(want.distance_m, abs=0.001)


def test_points_without_finite_coordinates_are_beyond_reach(index: SegmentIndex) -> None:
    results = snap([np.nan, -110.0, np.inf], [49.0, np.nan, 49.0], index, max_distance_m=1e6)

    assert results == [BEYOND, BEYOND, BEYOND]


def test_no_points_give_no_results(index: SegmentIndex) -> None:
    assert snap([], [], index, max_distance_m=25_000) == []


def test_a_point_on_the_line_has_no_side(index: SegmentIndex) -> None:
    e = 1000
    lon = index.ax[e] + 0.5 * (index.bx[e] - index.ax[e])
    lat = index.ay[e] + 0.5 * (index.by[e] - index.ay[e])

    [result] = snap([lon], [lat], index, max_distance_m=25_000)

    assert result.distance_m is not None
    assert result.distance_m < 0.01
    assert result.side is None
