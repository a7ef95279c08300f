"""The WGS84 ellipsoid: the one Geod every distance is measured with, and local planes around it.

A local plane here maps (lon, lat) affinely to metres: x = (lon - lon0) * kx, y = (lat - lat0) * ky,
with kx, ky the ellipsoid's metres per degree east and north at one reference latitude. Being
affine in lon/lat, it keeps an edge drawn straight in lon/lat a straight line, so a point-to-edge
distance in it is exact plane geometry. Its only error is scale: at latitude phi it stretches a
length by between kx / (N cos phi) and ky / M, both 1 at the reference. `scale_spread` bounds that
stretch over a band of latitudes, which makes planar comparisons provably safe. No wrap at the
antimeridian: no land border crosses it.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from pyproj import Geod

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
GEOD = Geod(ellps="WGS84")
A_M = 6378137.0
FLATTENING = 1 / 298.257223563
E2 = FLATTENING * (2 - FLATTENING)
MIN_MERIDIAN_RADIUS_M = A_M * (1 - E2)  # at the equator: the fewest metres per radian of latitude
MIN_M_PER_DEG_LAT = float(np.radians(MIN_MERIDIAN_RADIUS_M))
MAX_PLANE_LAT = 89.9  # nearer the poles a plane in lon/lat is useless; callers stop pruning there
# Planar bounds are used only while the plane stretches lengths by at most this (far from the
# poles, always: 1.014 within 25 km at 60 N); the bounds' bands assume it.
MAX_SPREAD = 1.25


def metres_per_degree(lat_deg: FloatArray) -> tuple[FloatArray, FloatArray]:
    """(east, north) metres per degree of longitude and latitude at each latitude."""
    phi = np.radians(lat_deg)
    sin = np.sin(phi)
    w2 = 1 - E2 * sin * sin
    n = A_M / np.sqrt(w2)
    east: FloatArray = np.radians(n * np.cos(phi))
    north: FloatArray = np.radians(n * (1 - E2) / w2)  # M = N (1 - e2) / w2
    return east, north


def scale_spread(lat_lo_deg: FloatArray, lat_hi_deg: FloatArray) -> FloatArray:
    """How unevenly a local plane may scale lengths inside each latitude band ``[lo, hi]``.

    Returns rho >= 1 with: for a plane whose reference latitude lies in the band, every path inside
    the band is stretched by a factor in ``[1/rho, rho]``. N cos(phi) falls and M rises with
    |phi|, so each is extreme at the band's least and greatest |phi|; rho is the larger of the two
    ratios. Bands reaching ``MAX_PLANE_LAT`` get ``inf``.
    """
    lo, hi = np.minimum(lat_lo_deg, lat_hi_deg), np.maximum(lat_lo_deg, lat_hi_deg)
    least = np.where((lo <= 0) & (hi >= 0), 0.0, np.minimum(np.abs(lo), np.abs(hi)))
    most = np.maximum(np.abs(lo), np.abs(hi))
    with np.errstate(divide="ignore"):
        kx_least, ky_least = metres_per_degree(least)
        kx_most, ky_most = metres_per_degree(np.minimum(most, MAX_PLANE_LAT))
        rho = np.maximum(kx_least / kx_most, ky_most / ky_least)
    return np.where(most < MAX_PLANE_LAT, rho, np.inf)


def box_radius_m(
    lat_lo_deg: FloatArray, lat_hi_deg: FloatArray, *, lon_span_deg: FloatArray
) -> FloatArray:
    """An upper bound on the geodesic distance from a lon/lat box's centre to any point in it.

    The path drawn straight in lon/lat from the centre is no shorter than the geodesic, and its
    length is at most the hypotenuse of its two spans, each at the largest metres-per-degree
    anywhere in the box (M is largest at the box's greatest |lat|, N cos at its least).
    """
    lo, hi = np.minimum(lat_lo_deg, lat_hi_deg), np.maximum(lat_lo_deg, lat_hi_deg)
    least = np.where((lo <= 0) & (hi >= 0), 0.0, np.minimum(np.abs(lo), np.abs(hi)))
    most = np.maximum(np.abs(lo), np.abs(hi))
    kx, _ = metres_per_degree(least)
    _, ky = metres_per_degree(most)
    radius: FloatArray = 0.5 * np.hypot(kx * lon_span_deg, ky * (hi - lo))
    return radius


def reach_degrees(
    lat_deg: FloatArray, reach_m: FloatArray | float
) -> tuple[FloatArray, FloatArray]:
    """Half-widths (lon, lat) in degrees of a box around a point that holds its geodesic disc.

    A geodesic of length r moves at most r / M_min in latitude, and at most r / (a cos(phi_max))
    in longitude, phi_max being the highest latitude it can reach.
    """
    dlat = np.degrees(reach_m / MIN_MERIDIAN_RADIUS_M)
    phi_max = np.minimum(np.abs(lat_deg) + dlat, MAX_PLANE_LAT)
    dlon = np.minimum(np.degrees(reach_m / (A_M * np.cos(np.radians(phi_max)))), 180.0)
    return dlon, dlat


def rank_ratio(
    lat_lo_deg: FloatArray, lat_hi_deg: FloatArray, *, reach_m: FloatArray
) -> FloatArray:
    """How far apart two planar distances may be when the geodesic ones are in the other order.

    For a point with latitude in ``[lo, hi]`` whose nearest border point is within ``reach_m``:
    in the point's own local plane the nearest edge's planar distance is at most the returned
    factor times the least planar distance to any edge. Why: the geodesic to the nearest point
    (length D <= reach) and the planar segment to the planar-nearest edge (length <= rho * D)
    both stay within MAX_SPREAD * reach of the point, a band where the plane stretches lengths by
    a factor in [1/rho, rho]; so that edge's planar distance is <= rho * D, and D is <= rho
    times the least planar distance. ``inf`` where the band is too distorted to bound.
    """
    band = (MAX_SPREAD * reach_m + 1.0) / MIN_M_PER_DEG_LAT
    rho = scale_spread(lat_lo_deg - band, lat_hi_deg + band)
    return np.where(rho <= MAX_SPREAD, rho * rho, np.inf)


Lines = tuple[FloatArray, FloatArray, FloatArray, FloatArray]  # (ax, ay, dlon, dlat) of each


def plane_foot(
    lines: Lines,
    lon: FloatArray,
    lat: FloatArray,
    *,
    kx: FloatArray,
    ky: FloatArray,
    line: IntArray,
) -> tuple[FloatArray, FloatArray]:
    """Squared planar distance from each point to its straight line piece (``lines[.][line]``),
    and the foot's parameter t in [0, 1].

    The plane is centred on the point with ``kx``, ``ky`` metres per degree (geodesy's local
    plane): affine in lon/lat, so a piece straight in lon/lat is exactly straight in it.
    """
    ax, ay, dlon, dlat = lines
    # In place throughout: on millions of pairs, fresh temporaries cost more than the maths.
    x = ax[line]
    x -= lon
    x *= kx
    y = ay[line]
    y -= lat
    y *= ky
    dx = dlon[line]
    dx *= kx
    dy = dlat[line]
    dy *= ky
    t = x * dx
    scratch = y * dy
    t += scratch
    length2 = dx * dx
    np.multiply(dy, dy, out=scratch)
    length2 += scratch
    np.maximum(length2, np.finfo(np.float64).tiny, out=length2)  # a zero-length piece: t = 0
    np.divide(t, length2, out=t)
    np.negative(t, out=t)
    np.clip(t, 0.0, 1.0, out=t)
    np.multiply(t, dx, out=scratch)
    x += scratch
    np.multiply(t, dy, out=scratch)
    y += scratch
    x *= x
    y *= y
    x += y
    return x, t
