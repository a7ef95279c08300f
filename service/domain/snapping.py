"""Geodesic snapping of points to the border, vectorised over points.

For each point the answer is the point of the border (edges drawn straight in lon/lat, as GeoJSON
draws them) at the least WGS84 geodesic distance. Three steps, all numpy/GEOS arrays, no Python loop
over points or edges:

1. Candidate edges from the STRtree inside a lon/lat box that provably holds the geodesic disc
   whose radius is the distance to some vertex (ellipsoid radii at their smallest). Degree-space
   nearness is never the answer: at 49 N a degree of longitude is 0.66 of a degree of latitude.
2. The candidates ranked in a mid-latitude plane around each point, the close ones measured with
   pyproj ``Geod.inv`` at the foot point, refined once by a Newton step along the edge.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import shapely

from service.domain.geodesy import A_M, GEOD, MIN_MERIDIAN_RADIUS_M, FloatArray, radii
from service.domain.reports import BEYOND, SnapResult, SnapStatus
from service.domain.segments import IntArray, SegmentIndex

# How far a planar distance may be from the geodesic one. The relative part covers the plane itself
# (mid-latitude scaling: ~1e-5 at 25 km); the absolute part (SegmentIndex.plane_abs_tol_m) covers
# the bow of an edge drawn straight in lon/lat. They only decide which candidates get an exact
# measurement, so they are generous.
PLANE_REL_TOL = 0.002
ON_LINE_M = 0.01  # closer than this a point has no side: it is on the line
VERTEX_T = 1e-9


@dataclass(frozen=True, slots=True)
class SnapArrays:
    """Snap results as arrays, one entry per input point; ``edge`` is -1 where nothing is in reach."""

    edge: IntArray
    segment: IntArray
    distance_m: FloatArray
    lon: FloatArray
    lat: FloatArray
    chainage_km: FloatArray
    side: npt.NDArray[np.object_]


@dataclass(frozen=True, slots=True)
class _Points:
    lon: FloatArray
    lat: FloatArray
    m: FloatArray
    n: FloatArray
    cos: FloatArray

    @classmethod
    def of(cls, lon: FloatArray, lat: FloatArray) -> _Points:
        return cls(lon, lat, *radii(lat))

    def take(self, i: IntArray) -> _Points:
        return _Points(self.lon[i], self.lat[i], self.m[i], self.n[i], self.cos[i])


def _plane(
    p: _Points, lon: FloatArray, lat: FloatArray, m: FloatArray, n: FloatArray, cos: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """(lon, lat) in metres east/north of each point, scaled at the pair's mean radii and cosine.

    Means of the end values stand in for values at the mid latitude (relative error ~1e-5 over a
    degree), which saves all trigonometry per pair. No antimeridian wrap: no land border crosses it.
    """
    x = np.radians(lon - p.lon) * (0.25 * (p.n + n) * (p.cos + cos))
    y = np.radians(lat - p.lat) * (0.5 * (p.m + m))
    return x, y


def _plane_foot(
    index: SegmentIndex, p: _Points, edge: IntArray
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Planar distance, foot parameter t in [0, 1], and the cross product sign term, point to edge."""
    axp, ayp = _plane(
        p, index.ax[edge], index.ay[edge], index.a_m[edge], index.a_n[edge], index.a_cos[edge]
    )
    bxp, byp = _plane(
        p, index.bx[edge], index.by[edge], index.b_m[edge], index.b_n[edge], index.b_cos[edge]
    )
    dx, dy = bxp - axp, byp - ayp
    len2 = dx * dx + dy * dy
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.where(len2 > 0, -(axp * dx + ayp * dy) / len2, 0.0)
    t = np.clip(t, 0.0, 1.0)
    fx, fy = axp + t * dx, ayp + t * dy
    cross = dy * axp - dx * ayp  # > 0: the point (the origin) is left of A->B
    return np.hypot(fx, fy), t, cross


def _on_edge(index: SegmentIndex, edge: IntArray, t: FloatArray) -> tuple[FloatArray, FloatArray]:
    return index.ax[edge] + t * (index.bx[edge] - index.ax[edge]), index.ay[edge] + t * (
        index.by[edge] - index.ay[edge]
    )


def _geodesic_to_edge(
    index: SegmentIndex, lon: FloatArray, lat: FloatArray, edge: IntArray, t: FloatArray
) -> FloatArray:
    """Exact WGS84 geodesic distance from each point to the point at ``t`` on its edge.

    The plane misplaces the foot only along the edge and only by millimetres (its error is a bow of
    the edge, perpendicular to it), and distance is flat around its minimum, so measuring at the
    planar foot is exact to well under a millimetre (the property tests check it by brute force).
    """
    xl, yl = _on_edge(index, edge, t)
    _, _, dist = GEOD.inv(lon, lat, xl, yl)
    return np.asarray(dist)


def _boxes(lon: FloatArray, lat: FloatArray, reach_m: FloatArray) -> npt.NDArray[np.object_]:
    """Lon/lat boxes that hold every point within ``reach_m`` (geodesic) of each point.

    A geodesic of length r moves at most r / M_min in latitude, and at most r / (a cos(phi_max)) in
    longitude, phi_max being the highest latitude it can reach.
    """
    dlat = np.degrees(reach_m / MIN_MERIDIAN_RADIUS_M)
    phi_max = np.minimum(np.abs(lat) + dlat, 89.9)
    dlon = np.minimum(np.degrees(reach_m / (A_M * np.cos(np.radians(phi_max)))), 180.0)
    return shapely.box(lon - dlon, lat - dlat, lon + dlon, lat + dlat)


def _ranked_candidates(
    index: SegmentIndex, lon: FloatArray, lat: FloatArray, max_distance_m: float
) -> tuple[IntArray, IntArray, FloatArray]:
    """(point, edge, foot t) for every edge that may be a point's geodesically nearest.

    The nearest vertex (in degree space: cheap, and any vertex will do) bounds the distance from
    above, so a box of that reach holds every edge that could be nearer. Candidates are ranked in
    the plane, and those that could still win within the margin are kept for exact measurement.
    """
    points = _Points.of(lon, lat)
    nearest = index.vertex_tree.query_nearest(shapely.points(lon, lat), all_matches=False)
    vertex = np.empty(len(lon), dtype=np.int64)
    vertex[nearest[0]] = nearest[1]
    vx, vy = _plane(
        points,
        index.vx[vertex],
        index.vy[vertex],
        index.v_m[vertex],
        index.v_n[vertex],
        index.v_cos[vertex],
    )
    bound = np.hypot(vx, vy)
    reach = np.minimum(bound, max_distance_m) * (1 + PLANE_REL_TOL) + index.plane_abs_tol_m
    pairs = index.tree.query(_boxes(lon, lat, reach))
    pi, ei = pairs[0].astype(np.int64), pairs[1].astype(np.int64)
    planar, t, _ = _plane_foot(index, points.take(pi), ei)
    best = np.full(len(lon), np.inf)
    np.minimum.at(best, pi, planar)
    limit = np.minimum(best * (1 + PLANE_REL_TOL) + index.plane_abs_tol_m, reach)
    keep = planar <= limit[pi]
    return pi[keep], ei[keep], t[keep]


def snap_arrays(
    lon: npt.ArrayLike, lat: npt.ArrayLike, index: SegmentIndex, *, max_distance_m: float
) -> SnapArrays:
    """Snap every (lon, lat) to the geodesically nearest border edge within ``max_distance_m``."""
    lon = np.asarray(lon, dtype=np.float64)
    lat = np.asarray(lat, dtype=np.float64)
    n = len(lon)
    edge = np.full(n, -1, dtype=np.int64)
    dist = np.full(n, np.nan)
    foot_t = np.zeros(n)
    if n and len(index):
        pi, ei, t = _ranked_candidates(index, lon, lat, max_distance_m)
        exact = _geodesic_to_edge(index, lon[pi], lat[pi], ei, t)
        # Least distance per point; ties go to the lowest edge index so results never depend on order.
        order = np.lexsort((ei, exact, pi))
        first = np.ones(len(order), dtype=bool)
        first[1:] = pi[order][1:] != pi[order][:-1]
        chosen = order[first]
        chosen = chosen[exact[chosen] <= max_distance_m]
        edge[pi[chosen]] = ei[chosen]
        dist[pi[chosen]] = exact[chosen]
        foot_t[pi[chosen]] = t[chosen]
    return _assemble(index, lon, lat, edge, dist, foot_t)


def _assemble(
    index: SegmentIndex,
    lon: FloatArray,
    lat: FloatArray,
    edge: IntArray,
    dist: FloatArray,
    t: FloatArray,
) -> SnapArrays:
    hit = edge >= 0
    e = edge[hit]
    segment = np.full(len(edge), -1, dtype=np.int64)
    segment[hit] = index.segment_of_edge[e]
    slon, slat = np.full(len(edge), np.nan), np.full(len(edge), np.nan)
    slon[hit], slat[hit] = _on_edge(index, e, t[hit])
    chainage = np.full(len(edge), np.nan)
    chainage[hit] = (
        index.start_km[segment[hit]] + (index.offset_m[e] + t[hit] * index.length_m[e]) / 1000.0
    )
    side = np.full(len(edge), None, dtype=object)
    is_left = _is_left(index, lon[hit], lat[hit], e, t[hit])
    seg = segment[hit]
    side[hit] = np.where(is_left, index.left_a2[seg], index.right_a2[seg])
    side[hit & (np.nan_to_num(dist, nan=np.inf) < ON_LINE_M)] = None
    return SnapArrays(
        edge=edge,
        segment=segment,
        distance_m=dist,
        lon=slon,
        lat=slat,
        chainage_km=chainage,
        side=side,
    )


def _is_left(
    index: SegmentIndex, lon: FloatArray, lat: FloatArray, edge: IntArray, t: FloatArray
) -> npt.NDArray[np.bool_]:
    """Whether each point lies left of the line, walking in coordinate order.

    Where the foot is a vertex, the two edges meeting there decide together: at a left turn the
    left side is where both edges say left, at a right turn where either does.
    """
    points = _Points.of(lon, lat)
    _, _, cross = _plane_foot(index, points, edge)
    left = cross > 0
    at_start = (t <= VERTEX_T) & (index.prev_edge[edge] >= 0)
    at_end = (t >= 1 - VERTEX_T) & (index.next_edge[edge] >= 0)
    for mask, before, after in (
        (at_start, index.prev_edge[edge], edge),
        (at_end, edge, index.next_edge[edge]),
    ):
        if not mask.any():
            continue
        b, a = before[mask], after[mask]
        at = points.take(np.flatnonzero(mask))
        _, _, c1 = _plane_foot(index, at, b)
        _, _, c2 = _plane_foot(index, at, a)
        # U -> V -> W around the vertex V: (V - U) x (W - V), in a plane at V.
        vertex = _Points(index.bx[b], index.by[b], index.b_m[b], index.b_n[b], index.b_cos[b])
        ux, uy = _plane(
            vertex, index.ax[b], index.ay[b], index.a_m[b], index.a_n[b], index.a_cos[b]
        )
        wx, wy = _plane(
            vertex, index.bx[a], index.by[a], index.b_m[a], index.b_n[a], index.b_cos[a]
        )
        turn = (-ux) * wy - (-uy) * wx
        left[mask] = np.where(turn > 0, (c1 > 0) & (c2 > 0), (c1 > 0) | (c2 > 0))
    return left


def snap(
    lon: npt.ArrayLike, lat: npt.ArrayLike, index: SegmentIndex, *, max_distance_m: float
) -> list[SnapResult]:
    """Snap points and return one SnapResult each, in input order."""
    arrays = snap_arrays(lon, lat, index, max_distance_m=max_distance_m)
    results: list[SnapResult] = []
    for i in range(len(arrays.edge)):
        if arrays.edge[i] < 0:
            results.append(BEYOND)
            continue
        results.append(
            SnapResult(
                status=SnapStatus.SNAPPED,
                segment_id=str(index.ids[arrays.segment[i]]),
                distance_m=float(arrays.distance_m[i]),
                snapped_lon=float(arrays.lon[i]),
                snapped_lat=float(arrays.lat[i]),
                chainage_km=float(arrays.chainage_km[i]),
                side=arrays.side[i],
            )
        )
    return results
