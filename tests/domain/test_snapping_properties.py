"""Rules snapping keeps for every point, checked on the bundled border against a brute-force search."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from service.domain.candidate_grid import GRID_REACH_M
from service.domain.geodesy import metres_per_degree, plane_foot
from service.domain.reports import SnapStatus
from service.domain.segments import SegmentIndex
from service.domain.snapping import SnapArrays, snap, snap_arrays

from . import bundled
from .brute_force import GEOD, Edges, Nearest, nearest_on_border

MAX_OFFSET_M = 100_000.0
MAX_DISTANCE_M = 150_000.0
WINDOW_M = MAX_OFFSET_M + 60_000.0
# Half a metre is the promise; snapping is exact to micrometres, so a millimetre catches a foot in
# the wrong place long before it would matter.
DISTANCE_TOLERANCE_M = 0.001
ON_LINE_M = 0.01
# start_km/end_km are published to the metre and were summed differently from the service's
# geodesic edge lengths: on the bundled border they disagree by up to 1.1 m.
PUBLISHED_KM_SLACK = 0.0015
BRUTE = settings(max_examples=120, deadline=None)
CHEAP = settings(max_examples=150, deadline=None)


@st.composite
def near_border(draw: st.DrawFn, max_offset_m: float = MAX_OFFSET_M) -> tuple[float, float]:
    """A point a random distance and direction from a random point of a random edge."""
    e = bundled.edges()
    edge = draw(st.integers(0, len(e.ax) - 1))
    t = draw(st.floats(0.0, 1.0))
    offset = draw(
        st.one_of(
            st.floats(0.0, 50.0),
            st.floats(0.0, 5_000.0),
            st.floats(0.0, max_offset_m),
        )
    )
    azimuth = draw(st.floats(0.0, 360.0, exclude_max=True))
    x, y = e.at(edge, t)
    lon, lat, _ = GEOD.fwd(float(x), float(y), azimuth, offset)
    return float(lon), float(lat)


def one(point: tuple[float, float], index: SegmentIndex) -> SnapArrays:
    return snap_arrays([point[0]], [point[1]], index, max_distance_m=MAX_DISTANCE_M)


def brute(edges: Edges, point: tuple[float, float]) -> Nearest:
    return nearest_on_border(edges, point, window_m=WINDOW_M)


@BRUTE
@given(near_border())
def test_snapped_distance_is_the_least_geodesic_distance(
    index: SegmentIndex, edges: Edges, point: tuple[float, float]
) -> None:
    got = one(point, index)
    want = brute(edges, point)
    assert abs(got.distance_m[0] - want.distance_m) <= DISTANCE_TOLERANCE_M


@CHEAP
@given(near_border())
def test_snapped_point_lies_on_the_chosen_segment(
    index: SegmentIndex, point: tuple[float, float]
) -> None:
    got = one(point, index)
    segment = Edges.of([index.segments[got.segment[0]]])
    on_line = nearest_on_border(segment, (got.lon[0], got.lat[0]), window_m=WINDOW_M)
    assert on_line.distance_m < ON_LINE_M


@CHEAP
@given(near_border())
def test_distance_is_the_geodesic_distance_to_the_snapped_point(
    index: SegmentIndex, point: tuple[float, float]
) -> None:
    got = one(point, index)
    _, _, measured = GEOD.inv(*point, got.lon[0], got.lat[0])
    assert abs(got.distance_m[0] - measured) < 0.001


@CHEAP
@given(near_border())
def test_snapping_a_snapped_point_returns_it(
    index: SegmentIndex, point: tuple[float, float]
) -> None:
    first = one(point, index)
    again = one((first.lon[0], first.lat[0]), index)
    _, _, moved = GEOD.inv(first.lon[0], first.lat[0], again.lon[0], again.lat[0])
    assert again.distance_m[0] < ON_LINE_M
    assert moved < ON_LINE_M
    if again.segment[0] != first.segment[0]:
        # Only where two segments meet may the other one claim the point.
        a, b = index.segments[first.segment[0]], index.segments[again.segment[0]]
        shared = {a.coords[0], a.coords[-1]} & {b.coords[0], b.coords[-1]}
        assert any(
            GEOD.inv(first.lon[0], first.lat[0], *vertex)[2] < ON_LINE_M for vertex in shared
        )


@st.composite
def measured(draw: st.DrawFn) -> tuple[float, float, float]:
    """(lon, lat, brute-force distance), often near the grid's reach, where the paths change."""
    lon, lat = draw(st.one_of(near_border(), near_border(max_offset_m=GRID_REACH_M + 2_000)))
    return lon, lat, brute(bundled.edges(), (lon, lat)).distance_m


@BRUTE
@given(measured(), st.data())
def test_points_beyond_max_distance_are_not_assigned(
    index: SegmentIndex, case: tuple[float, float, float], data: st.DataObject
) -> None:
    lon, lat, distance = case
    assume(distance > 0.1)
    below = [distance - 0.01] + ([GRID_REACH_M] if distance - 0.01 > GRID_REACH_M else [])
    max_distance = data.draw(
        st.one_of(st.sampled_from(below), st.floats(0.01, distance - 0.01)), label="max"
    )
    [result] = snap([lon], [lat], index, max_distance_m=max_distance)
    assert result.status is SnapStatus.BEYOND_MAX_DISTANCE


@BRUTE
@given(measured(), st.data())
def test_points_within_max_distance_are_assigned(
    index: SegmentIndex, case: tuple[float, float, float], data: st.DataObject
) -> None:
    lon, lat, distance = case
    above = [distance + 0.01] + ([GRID_REACH_M] if distance + 0.01 < GRID_REACH_M else [])
    max_distance = data.draw(
        st.one_of(st.sampled_from(above), st.floats(distance + 0.01, MAX_DISTANCE_M)), label="max"
    )
    [result] = snap([lon], [lat], index, max_distance_m=max_distance)
    assert result.status is SnapStatus.SNAPPED


@CHEAP
@given(
    st.lists(near_border(), min_size=2, max_size=40).flatmap(
        lambda points: st.tuples(st.just(points), st.permutations(range(len(points))))
    )
)
def test_input_order_never_changes_a_result(
    index: SegmentIndex, case: tuple[list[tuple[float, float]], list[int]]
) -> None:
    points, order = case
    lon, lat = np.array(points).T
    before = snap(lon, lat, index, max_distance_m=25_000)
    after = snap(lon[order], lat[order], index, max_distance_m=25_000)
    assert [before[i] for i in order] == after


@CHEAP
@given(st.lists(near_border(), min_size=1, max_size=40))
def test_batch_snapping_equals_one_by_one(
    index: SegmentIndex, points: list[tuple[float, float]]
) -> None:
    lon, lat = np.array(points).T
    batch = snap(lon, lat, index, max_distance_m=25_000)
    singles = [snap([x], [y], index, max_distance_m=25_000)[0] for x, y in points]
    assert batch == singles


def brute_is_left(edges: Edges, nearest: Nearest, point: tuple[float, float]) -> bool:
    """Whether the point is left of its nearest edge, from azimuths at the foot (geodesic)."""
    step = 1e-4 if nearest.t < 0.5 else -1e-4
    fx, fy = edges.at(nearest.edge, nearest.t)
    ax, ay = edges.at(nearest.edge, nearest.t + step)
    along, _, _ = GEOD.inv(float(fx), float(fy), float(ax), float(ay))
    if step < 0:
        along += 180.0
    to_point, _, _ = GEOD.inv(float(fx), float(fy), *point)
    return math.sin(math.radians(to_point - along)) < 0


@BRUTE
@given(near_border(max_offset_m=20_000))
def test_side_is_the_side_of_the_nearest_edge(
    index: SegmentIndex, edges: Edges, point: tuple[float, float]
) -> None:
    nearest = brute(edges, point)
    assume(1e-6 < nearest.t < 1 - 1e-6)  # a foot at a vertex has two edges to ask
    assume(nearest.distance_m > 0.05)
    segment = index.segments[edges.segment[nearest.edge]]
    left = brute_is_left(edges, nearest, point)
    [result] = snap([point[0]], [point[1]], index, max_distance_m=25_000)
    expected = segment.left_country if left else segment.right_country
    assert result.side == {"CAN": "CA", "USA": "US", "MEX": "MX"}[expected]


@CHEAP
@given(near_border())
def test_chainage_lies_within_the_segment(index: SegmentIndex, point: tuple[float, float]) -> None:
    got = one(point, index)
    segment = index.segments[got.segment[0]]
    assert segment.start_km <= got.chainage_km[0] <= segment.end_km + PUBLISHED_KM_SLACK


@CHEAP
@given(st.data())
def test_chainage_grows_along_a_segment(index: SegmentIndex, data: st.DataObject) -> None:
    number = data.draw(st.integers(0, len(index.segments) - 1))
    edges = np.flatnonzero(index.segment_of_edge == number)
    positions = data.draw(
        st.lists(st.tuples(st.sampled_from(edges.tolist()), st.floats(0.0, 1.0)), min_size=2)
    )
    positions.sort()
    lon = [index.ax[e] + t * (index.bx[e] - index.ax[e]) for e, t in positions]
    lat = [index.ay[e] + t * (index.by[e] - index.ay[e]) for e, t in positions]
    got = snap_arrays(lon, lat, index, max_distance_m=1_000)
    chainage = got.chainage_km[got.segment == number]
    assert np.all(np.diff(chainage) >= -1e-9)  # a micrometre: feet of near-equal points may swap


@CHEAP
@given(st.data())
def test_every_point_of_a_chain_is_within_its_tolerance_of_its_chord(data: st.DataObject) -> None:
    index = bundled.index()
    chains = index.chains
    c = data.draw(st.integers(0, len(chains) - 1))
    e = data.draw(st.integers(int(chains.first[c]), int(chains.first[c] + chains.count[c] - 1)))
    t = data.draw(st.floats(0.0, 1.0))
    lat0 = data.draw(st.floats(-80.0, 80.0))
    x = index.ax[e] + t * index.dlon[e]
    y = index.ay[e] + t * index.dlat[e]
    # In the plane of any point: here one at latitude lat0 (the scale is all that matters).
    kx, ky = metres_per_degree(np.array([lat0]))
    d2, _ = plane_foot(
        (chains.ax, chains.ay, chains.dlon, chains.dlat),
        np.array([x]),
        np.array([y]),
        kx=kx,
        ky=ky,
        line=np.array([c]),
    )
    assert math.sqrt(float(d2[0])) <= chains.eps_m[c] + 1e-6


@CHEAP
@given(st.data())
def test_every_point_of_a_chord_is_within_its_tolerance_of_its_chain(data: st.DataObject) -> None:
    # The converse, which makes a chain's upper bound (Chains.bounds) the distance to its chord
    # plus its tolerance: the chain runs from one end of its chord to the other.
    index = bundled.index()
    chains = index.chains
    c = data.draw(st.integers(0, len(chains) - 1))
    t = data.draw(st.floats(0.0, 1.0))
    lat0 = data.draw(st.floats(-80.0, 80.0))
    x = chains.ax[c] + t * chains.dlon[c]
    y = chains.ay[c] + t * chains.dlat[c]
    edges = np.arange(int(chains.first[c]), int(chains.first[c] + chains.count[c]))
    kx, ky = metres_per_degree(np.array([lat0]))
    d2, _ = index.plane_foot(np.array([x]), np.array([y]), kx=kx, ky=ky, edge=edges)
    assert math.sqrt(float(d2.min())) <= chains.eps_m[c] + 1e-6
