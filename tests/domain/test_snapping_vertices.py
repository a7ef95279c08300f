"""A vertex left unmeasured: snapping measures a survivor's foot at a vertex once, or not at all
where the neighbouring edge's survivor holds the same vertex or a foot inside its edge
(snapping._measured). Checked against measuring every survivor, and against brute force."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings

from service.domain import snapping
from service.domain.geodesy import FloatArray, IntArray
from service.domain.segments import SegmentIndex

from .brute_force import GEOD, Edges, nearest_on_border
from .bundled import near_the_river

MAX_DISTANCE_M = 25_000.0
# The steps put a foot at its edge's least distance to micrometres (test_snapping_properties).
MICROMETRE = 1e-6


def _every_survivor(
    index: SegmentIndex, lon: FloatArray, lat: FloatArray
) -> tuple[IntArray, FloatArray, np.ndarray]:
    """(point, exact distance, left unmeasured?) of every survivor of the points, the distance
    measured at its stepped foot whether snapping measures it or not."""
    rows, dists, dropped = [], [], []
    for points, found, chains in snapping._paths(index, lon, lat, MAX_DISTANCE_M):
        plon, plat = lon[points], lat[points]
        row, e, t = snapping._survivors(index, plon, plat, found, chains)
        lines = snapping._Lines.of(index, e)
        t = snapping._steps(lines, plon[row], plat[row], t)
        _, _, exact = GEOD.inv(plon[row], plat[row], *lines.at(t))
        rows.append(points[row])
        dists.append(np.asarray(exact))
        dropped.append(snapping._beside_survivor(index, row, e, t))
    return np.concatenate(rows), np.concatenate(dists), np.concatenate(dropped)


def _least_measured_is_least(index: SegmentIndex, lon: FloatArray, lat: FloatArray) -> int:
    """Asserts that each point's snapped distance is the least over every survivor, measured or
    not (to a micrometre); returns how many survivors were left unmeasured."""
    got = snapping.snap_arrays(lon, lat, index, max_distance_m=MAX_DISTANCE_M)
    row, dist, dropped = _every_survivor(index, lon, lat)
    least = np.full(len(lon), np.inf)
    np.minimum.at(least, row, dist)
    near = least <= MAX_DISTANCE_M
    np.testing.assert_array_equal(got.edge >= 0, near)
    assert np.all(got.distance_m[near] - least[near] <= MICROMETRE)
    assert np.all(got.distance_m[near] >= least[near])
    return int(dropped.sum())


@settings(max_examples=150, deadline=None)
@given(near_the_river())
def test_a_vertex_left_unmeasured_is_never_the_nearest(
    index: SegmentIndex, edges: Edges, point: tuple[float, float]
) -> None:
    lon, lat = np.array([point[0]]), np.array([point[1]])
    _least_measured_is_least(index, lon, lat)
    got = snapping.snap_arrays(lon, lat, index, max_distance_m=MAX_DISTANCE_M)
    want = nearest_on_border(edges, point, window_m=40_000)
    if want.distance_m <= MAX_DISTANCE_M:
        assert abs(float(got.distance_m[0]) - want.distance_m) <= 0.001


def test_vertices_beside_a_survivor_are_left_unmeasured_and_change_nothing(
    index: SegmentIndex,
) -> None:
    # Points about a kilometre off the line (most of the bundled border's edges are the Rio
    # Grande's): a nearest foot is often inside an edge next to a vertex that the ranking keeps
    # too. The rule must come into play there, and change no distance.
    rng = np.random.default_rng(15)
    edge = rng.choice(np.flatnonzero(index.dlat != 0), 4_000)
    t = rng.uniform(0, 1, len(edge))
    lon0, lat0 = index.ax[edge] + t * index.dlon[edge], index.ay[edge] + t * index.dlat[edge]
    lon, lat, _ = GEOD.fwd(lon0, lat0, rng.uniform(0, 360, len(edge)),
                           rng.exponential(1_500.0, len(edge)))  # fmt: skip
    assert _least_measured_is_least(index, np.asarray(lon), np.asarray(lat)) > 100
