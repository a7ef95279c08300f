"""The bounds snapping's pruning rests on hold against pyproj's geodesics."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from service.domain.geodesy import box_radius_m, metres_per_degree, reach_degrees, scale_spread

from .brute_force import GEOD

BOUNDS = settings(max_examples=200, deadline=None)
# GeographicLib (inside pyproj) is accurate to 15 nm; degrees carry float rounding.
GEOD_ACCURACY_M = 2e-8
ROUNDING_DEG = 1e-12
latitudes = st.floats(-80.0, 80.0)


@BOUNDS
@given(latitudes, st.floats(1e-4, 1.0), st.floats(1e-4, 1.0), st.floats(0, 1), st.floats(0, 1))
def test_box_radius_bounds_the_distance_from_the_centre_to_any_point_of_the_box(
    south: float, width: float, height: float, u: float, v: float
) -> None:
    north = min(south + height, 89.0)
    lon, lat = -100.0 + u * width, south + v * (north - south)
    _, _, distance = GEOD.inv(-100.0 + width / 2, (south + north) / 2, lon, lat)
    radius = box_radius_m(np.array([south]), np.array([north]), lon_span_deg=np.array([width]))
    assert distance <= radius[0] + GEOD_ACCURACY_M


@BOUNDS
@given(latitudes, st.floats(0.0, 200_000.0), st.floats(0.0, 360.0))
def test_reach_box_holds_every_point_within_reach(lat: float, reach: float, azimuth: float) -> None:
    lon, far_lat, _ = GEOD.fwd(-100.0, lat, azimuth, reach)
    dlon, dlat = reach_degrees(np.array([lat]), np.array([reach]))
    assert abs(far_lat - lat) <= dlat[0] + ROUNDING_DEG
    assert abs(lon + 100.0) <= dlon[0] + ROUNDING_DEG


@BOUNDS
@given(latitudes, st.floats(-0.5, 0.5), st.floats(-0.5, 0.5))
def test_a_local_plane_stretches_distances_within_the_spread_of_its_band(
    lat: float, dlon: float, dlat: float
) -> None:
    # The geodesic between two points 0.5 degrees apart bulges poleward by far less than 0.5 deg.
    other = lat + dlat
    rho = scale_spread(np.array([min(lat, other) - 0.5]), np.array([max(lat, other) + 0.5]))[0]
    kx, ky = metres_per_degree(np.array([lat]))
    planar = np.hypot(dlon * kx[0], dlat * ky[0])
    _, _, geodesic = GEOD.inv(-100.0, lat, -100.0 + dlon, other)
    assert geodesic / rho <= planar + GEOD_ACCURACY_M
    assert planar <= geodesic * rho + GEOD_ACCURACY_M
