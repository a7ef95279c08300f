"""Geodesic snapping of points to the border, vectorised over points.

For each point the answer is the point of the border (edges drawn straight in lon/lat, as GeoJSON
draws them) at the least WGS84 geodesic distance. All numpy/GEOS arrays and one compiled loop (the
ranking's, domain.ranking), no Python loop over points or edges:

1. Candidate edges. Most points sit in a leaf of the index's candidate grid, which lists every edge
   that can be nearest to any point of the leaf, or, where edges are short and many (a river
   line), every chain of edges that can hold it: the chains' bounds then leave the few whose
   edges are measured (domain.chains). The others (far from the border, or where even chains are
   too crowded to list) take a box query on the STRtree whose reach is the exact geodesic
   distance to some vertex. Degree-space nearness is never the answer: at 49 N a degree of
   longitude is 0.66 of a degree of latitude.
2. Ranking. Each point measures its candidates in its own local plane (see geodesy), which is affine
   in lon/lat, so edges stay straight; only candidates within the plane's proven error of the
   planar best survive, that error bounded for the point's own distance from the line. The
   planar measuring runs in domain.ranking's compiled loop, points of a leaf one after another
   (they share candidates, which then stay in the cache); the bound is numpy's (geodesy).
3. Measuring. Survivors (about one per point) get their foot moved by two Gauss-Newton steps that
   allow for the convergence of the meridians, then the exact distance with pyproj ``Geod.inv``
   (a foot at a vertex is measured once, and not at all beside a foot inside the neighbouring
   edge, see ``_measured``); the least wins, ties to the lowest edge index, so that no result
   depends on the order of points. The property tests compare this with a brute-force search:
   micrometres at 100 km. Results are worked out points of a leaf together and then put in
   input order (``_Placed``).

Checked exact to micrometres up to 85 degrees of latitude (millimetres at 88); no land border
comes near that (the northernmost is at 70 N). No wrap at the antimeridian, which none crosses.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import shapely

from service.domain.candidate_grid import GRID_REACH_M
from service.domain.chains import Chains
from service.domain.geodesy import (
    GEOD,
    FloatArray,
    IntArray,
    metres_per_degree,
    rank_ratio,
    reach_degrees,
)
from service.domain.ranking import Ranking
from service.domain.reports import BEYOND, SnapResult, SnapStatus
from service.domain.segments import SegmentIndex

ON_LINE_M = 0.01  # closer than this a point has no side: it is on the line
VERTEX_T = 1e-9
# Planar distances carry float rounding of ~1e-11 m; a millimetre of slack keeps it out of ranking.
RANK_SLACK_M = 1e-3


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
class _Candidates:
    """Each point's candidate edges, ``edges[start:start + count]`` in edge order, and its factor
    for planar ranking (geodesy.rank_ratio)."""

    edges: IntArray
    start: IntArray
    count: IntArray
    ratio: FloatArray


def snap_arrays(
    lon: npt.ArrayLike, lat: npt.ArrayLike, index: SegmentIndex, *, max_distance_m: float
) -> SnapArrays:
    """Snap every (lon, lat) to the geodesically nearest border edge within ``max_distance_m``."""
    lon = np.asarray(lon, dtype=np.float64)
    lat = np.asarray(lat, dtype=np.float64)
    n = len(lon)
    placed = _Placed.empty(n)
    if n and len(index):
        for points, found, chains in _paths(index, lon, lat, max_distance_m):
            plon, plat = lon[points], lat[points]
            e, d, t, lines = _nearest(index, plon, plat, found, chains)
            within = np.flatnonzero(d <= max_distance_m)  # not where no candidate (NaN)
            placed.put(index, points[within], plon[within], plat[within], e[within], d[within],
                       t[within], lines.take(within))  # fmt: skip
    return placed.arrays(index)


def _paths(
    index: SegmentIndex, lon: FloatArray, lat: FloatArray, max_distance_m: float
) -> Iterator[tuple[IntArray, _Candidates, Chains | None]]:
    """(points, their candidates, the chains those are of, or None for edges) for each way
    points find their candidates: leaves listing edges, leaves listing chains, the STRtree."""
    grid = index.grid
    leaf = grid.locate(lon, lat)
    inside = leaf >= 0
    listed, chained = inside.copy(), inside.copy()
    listed[inside] = grid.stop[leaf[inside]] > grid.start[leaf[inside]]
    chained[inside] = grid.chain_stop[leaf[inside]] > grid.chain_start[leaf[inside]]
    far = ~listed & ~chained & np.isfinite(lon) & np.isfinite(lat)
    if max_distance_m <= GRID_REACH_M:
        far &= inside  # outside the grid's band every edge is farther than its reach
    # Points of one leaf together: they read the same candidates, which then stay in cache.
    fast, by_chain = np.flatnonzero(listed), np.flatnonzero(chained)
    fast = fast[np.argsort(leaf[fast], kind="stable")]
    by_chain = by_chain[np.argsort(leaf[by_chain], kind="stable")]
    slow = np.flatnonzero(far)
    if len(fast):
        yield fast, _grid_candidates(index, leaf[fast]), None
    if len(by_chain):
        yield by_chain, _chain_candidates(index, leaf[by_chain]), index.chains
    if len(slow):
        yield slow, _tree_candidates(index, lon[slow], lat[slow], max_distance_m), None


@dataclass(frozen=True, slots=True)
class _Placed:
    """Snap results under construction, one entry per input point.

    Each path's results are worked out in its own order (points of a leaf together, so the
    edges' arrays are read where they were just read) and then written to the points' places:
    in input order the reads of the edges' arrays would be scattered over all of them, which
    a border of tens of thousands of edges no longer keeps in the cache.
    """

    edge: IntArray
    dist: FloatArray
    segment: IntArray
    lon: FloatArray
    lat: FloatArray
    chainage: FloatArray
    is_left: npt.NDArray[np.bool_]

    @classmethod
    def empty(cls, n: int) -> _Placed:
        return cls(
            edge=np.full(n, -1, dtype=np.int64),
            dist=np.full(n, np.nan),
            segment=np.full(n, -1, dtype=np.int64),
            lon=np.full(n, np.nan),
            lat=np.full(n, np.nan),
            chainage=np.full(n, np.nan),
            is_left=np.zeros(n, dtype=bool),
        )

    def put(
        self,
        index: SegmentIndex,
        points: IntArray,
        lon: FloatArray,
        lat: FloatArray,
        edge: IntArray,
        dist: FloatArray,
        t: FloatArray,
        lines: _Lines,
    ) -> None:
        """Place the snaps of ``points`` (at ``lon``, ``lat``) to ``edge`` at foot ``t``;
        ``lines`` are the edges as ``_measured`` read them."""
        segment = index.segment_of_edge[edge]
        self.edge[points], self.dist[points], self.segment[points] = edge, dist, segment
        self.lon[points], self.lat[points] = lines.at(t)
        self.chainage[points] = (
            index.start_km[segment] + (index.offset_m[edge] + t * index.length_m[edge]) / 1000.0
        )
        self.is_left[points] = _is_left(index, lon, lat, edge, t, lines)

    def arrays(self, index: SegmentIndex) -> SnapArrays:
        hit = self.edge >= 0
        seg = self.segment[hit]
        side = np.full(len(hit), None, dtype=object)
        side[hit] = np.where(self.is_left[hit], index.left_a2[seg], index.right_a2[seg])
        side[hit & (np.nan_to_num(self.dist, nan=np.inf) < ON_LINE_M)] = None
        return SnapArrays(
            edge=self.edge,
            segment=self.segment,
            distance_m=self.dist,
            lon=self.lon,
            lat=self.lat,
            chainage_km=self.chainage,
            side=side,
        )


def _grid_candidates(index: SegmentIndex, leaf: IntArray) -> _Candidates:
    grid = index.grid
    start = grid.start[leaf]
    return _Candidates(grid.edges, start, grid.stop[leaf] - start, grid.rank_ratio[leaf])


def _chain_candidates(index: SegmentIndex, leaf: IntArray) -> _Candidates:
    """The leaf's chains (``items`` are chains of index.chains), sorted out by ``_nearest``."""
    grid = index.grid
    start = grid.chain_start[leaf]
    return _Candidates(grid.chains, start, grid.chain_stop[leaf] - start, grid.rank_ratio[leaf])


def _tree_candidates(
    index: SegmentIndex, lon: FloatArray, lat: FloatArray, max_distance_m: float
) -> _Candidates:
    """Every edge that may be nearest, found through the STRtree.

    The degree-nearest vertex is a cheap pick, and any vertex bounds the distance from above, so a
    box holding the geodesic disc of that reach holds every edge that could be nearer.
    """
    if not len(lon):
        empty = np.zeros(0, dtype=np.int64)
        return _Candidates(empty, empty, empty, np.zeros(0))
    near = index.vertex_tree.query_nearest(shapely.points(lon, lat), all_matches=False)
    vertex = np.empty(len(lon), dtype=np.int64)
    vertex[near[0]] = near[1]
    _, _, to_vertex = GEOD.inv(lon, lat, index.vx[vertex], index.vy[vertex])
    reach = np.minimum(np.asarray(to_vertex), max_distance_m) + RANK_SLACK_M
    dlon, dlat = reach_degrees(lat, reach)
    point, edge = index.tree.query(shapely.box(lon - dlon, lat - dlat, lon + dlon, lat + dlat))
    order = np.lexsort((edge, point))
    count = np.bincount(point, minlength=len(lon))
    return _Candidates(
        edge[order].astype(np.int64),
        np.cumsum(count) - count,
        count,
        rank_ratio(lat, lat, reach_m=reach),
    )


def _nearest(
    index: SegmentIndex,
    lon: FloatArray,
    lat: FloatArray,
    found: _Candidates,
    chains: Chains | None,
) -> tuple[IntArray, FloatArray, FloatArray, _Lines]:
    """(edge, geodesic distance, foot t, the edge's line) of each point's nearest candidate;
    -1/NaN without one.

    Ranking, in each point's own plane (the compiled loop of domain.ranking): where the
    candidates are chains, those whose lower bound exceeds the least of their upper bounds
    times ``ratio`` are left out first. The nearest edge's planar distance is at most ``ratio``
    times the least planar distance to the border (geodesy.rank_ratio), which is at most the
    least of the chains' upper bounds; so a chain left out holds no edge that can win, nor the
    planar-nearest edge, and ranking the edges of the others gives what ranking every edge
    would. Then every edge within the point's own limit (``_own_ratio``) of the least planar
    distance survives to be measured.
    """
    row, e, t = _survivors(index, lon, lat, found, chains)
    edge, dist, foot, lines = _measured(index, lon, lat, row, e, t)
    dist[edge < 0] = np.nan
    return edge, dist, foot, lines


def _survivors(
    index: SegmentIndex,
    lon: FloatArray,
    lat: FloatArray,
    found: _Candidates,
    chains: Chains | None,
) -> tuple[IntArray, IntArray, FloatArray]:
    """(point, edge, planar foot t) of every candidate edge within its point's own limit of the
    least planar distance, point by point in edge order (see ``_nearest``)."""
    kx, ky = metres_per_degree(lat)
    ranking = Ranking(
        lon,
        lat,
        kx,
        ky,
        found.ratio,
        (found.start, found.count, found.edges),
        chains=chains,
        edges=(index.ax, index.ay, index.dlon, index.dlat),
    )
    least_d2, row, e, t, d2 = ranking.run()
    least = np.sqrt(least_d2)
    limit = (least * _own_ratio(lat, found.ratio, least) + RANK_SLACK_M) ** 2
    np.minimum(limit, np.finfo(np.float64).max, out=limit)
    keep = d2 <= limit[row]
    return row[keep], e[keep], t[keep]


def _measured(
    index: SegmentIndex,
    lon: FloatArray,
    lat: FloatArray,
    row: IntArray,
    e: IntArray,
    t: FloatArray,
) -> tuple[IntArray, FloatArray, FloatArray, _Lines]:
    """(edge, distance, foot t, the edge's line) of each point's geodesically nearest survivor,
    from the survivors (point, edge, planar foot t), point by point in edge order; -1/inf/NaN
    without any.

    Each survivor's edge is read from the index once (``_Lines``), for the steps, the foot
    measured, and the winner's foot and side (``_Placed.put``): reading it again at each use
    cost more on a border of tens of thousands of edges, whose arrays the cache does not keep.
    """
    plon, plat = lon[row], lat[row]
    lines = _Lines.of(index, e)
    t = _steps(lines, plon, plat, t)
    # A foot at the vertex an edge shares with the next is a point of both edges. Where the
    # other edge is a survivor too, that point need not be measured apart: if its foot is the
    # same vertex, it is one point, measured once, on the first edge (as ties go); if its foot
    # is inside the edge, the vertex is a point of that edge, no nearer than its foot, which
    # the steps put at the edge's least distance (to their micrometres).
    again = _beside_survivor(index, row, e, t)
    once = np.flatnonzero(~again)
    row, e, t = row[once], e[once], t[once]
    _, _, exact = GEOD.inv(plon[once], plat[once], *lines.take(once).at(t))
    edge = np.full(len(lon), -1, dtype=np.int64)
    dist = np.full(len(lon), np.inf)
    foot = np.zeros(len(lon))
    winner = np.zeros(len(lon), dtype=np.int64)
    if len(row):
        first = np.flatnonzero(np.r_[True, row[1:] != row[:-1]])
        least_exact = np.minimum.reduceat(exact, first)
        best = np.flatnonzero(exact == np.repeat(least_exact, np.diff(np.r_[first, len(row)])))
        # The first least of each row: ties go to the lowest edge index.
        best = best[np.r_[True, row[best][1:] != row[best][:-1]]]
        edge[row[best]], dist[row[best]], foot[row[best]] = e[best], exact[best], t[best]
        winner[row[best]] = once[best]
    # Where a point has no survivor, any line will do: its edge is -1 and it is not placed.
    return edge, dist, foot, lines.take(winner) if len(once) else _Lines.of(index, winner)


@dataclass(frozen=True, slots=True)
class _Lines:
    """The edges of a list of (point, edge) pairs, read from the index once: start, extent."""

    ax: FloatArray
    ay: FloatArray
    dlon: FloatArray
    dlat: FloatArray

    @classmethod
    def of(cls, index: SegmentIndex, edge: IntArray) -> _Lines:
        return cls(index.ax[edge], index.ay[edge], index.dlon[edge], index.dlat[edge])

    def take(self, which: IntArray) -> _Lines:
        return _Lines(self.ax[which], self.ay[which], self.dlon[which], self.dlat[which])

    def at(self, t: FloatArray) -> tuple[FloatArray, FloatArray]:
        """The point at t along each line."""
        return self.ax + t * self.dlon, self.ay + t * self.dlat

    def cross(self, lon: FloatArray, lat: FloatArray) -> FloatArray:
        """> 0 where the point is left of its line (A -> B), in lon/lat."""
        return self.dlon * (lat - self.ay) - self.dlat * (lon - self.ax)


def _steps(lines: _Lines, lon: FloatArray, lat: FloatArray, t: FloatArray) -> FloatArray:
    """Each foot's parameter t on its line after the Gauss-Newton steps (``_converge``).

    Two steps: the second starts within metres, micrometres are left at 100 km. A step is a
    function of (point, edge, t) alone, element by element; where the first left t as it was (a
    foot held at a vertex, a third of the survivors near a river line) the second would too, so
    it is taken only where t moved.
    """
    stepped = _converge(lines, lon, lat, t)
    moved = np.flatnonzero(stepped != t)  # NaN != NaN: a NaN foot is stepped again, as before
    stepped[moved] = _converge(lines.take(moved), lon[moved], lat[moved], stepped[moved])
    return stepped


def _beside_survivor(
    index: SegmentIndex, row: IntArray, e: IntArray, t: FloatArray
) -> npt.NDArray[np.bool_]:
    """Which survivors (point by point, in edge order) have their foot at a vertex shared with
    the point's survivor on the neighbouring edge, that survivor's foot being the same vertex
    (then the second of the two) or inside its edge."""
    again = np.zeros(len(row), dtype=bool)
    if len(row) < 2:
        return again
    pair = (row[1:] == row[:-1]) & (index.next_edge[e[:-1]] == e[1:])
    inside = (t > 0.0) & (t < 1.0)
    at_end, at_start = t[:-1] == 1.0, t[1:] == 0.0
    again[1:] = pair & at_start & (at_end | inside[:-1])
    again[:-1] |= pair & at_end & inside[1:]
    return again


def _own_ratio(lat: FloatArray, ratio: FloatArray, least_m: FloatArray) -> FloatArray:
    """``ratio`` (geodesy.rank_ratio for wherever each point may be) narrowed to the point itself.

    With ``ratio`` = rho ** 2, the point's distance to the border is at most rho times its least
    planar distance to it, ``least_m`` or anything above it (rank_ratio's argument); rank_ratio
    over the point's own latitude with that reach is then as valid, and much tighter for a point
    a kilometre from the line than for the farthest point of its leaf.
    """
    with np.errstate(invalid="ignore"):  # inf where the leaf's ratio is
        reach = np.sqrt(ratio) * least_m + RANK_SLACK_M
        own: FloatArray = np.minimum(ratio, rank_ratio(lat, lat, reach_m=reach))
    return own


def _converge(lines: _Lines, lon: FloatArray, lat: FloatArray, t: FloatArray) -> FloatArray:
    """The foot's parameter on each line after one Gauss-Newton step on the ellipsoid.

    A plane misplaces the foot because a geodesic is not straight in it: between the point and
    the foot its azimuth turns by the meridians' convergence, about dlon * sin(lat), which at
    25 km from the line moves the foot by tens of metres and the distance by decimetres. The step
    takes the chord's direction in the plane scaled halfway (the geodesic's azimuth halfway along),
    turns it by half the convergence to get the geodesic's azimuth at the foot, and moves the foot
    along the edge until that direction is square to the edge (in metres at the foot).
    """
    flon, flat = lines.at(t)
    mid = 0.5 * (lat + flat)
    mx, my = metres_per_degree(mid)
    cx, cy = (flon - lon) * mx, (flat - lat) * my
    turn = 0.5 * np.radians(flon - lon) * np.sin(np.radians(mid))
    cos, sin = np.cos(turn), np.sin(turn)
    kx, ky = metres_per_degree(flat)
    vx, vy = lines.dlon * kx, lines.dlat * ky
    along = (cx * cos + cy * sin) * vx + (cy * cos - cx * sin) * vy
    return np.clip(t - along / np.maximum(vx * vx + vy * vy, np.finfo(np.float64).tiny), 0.0, 1.0)


def _is_left(
    index: SegmentIndex,
    lon: FloatArray,
    lat: FloatArray,
    edge: IntArray,
    t: FloatArray,
    lines: _Lines,
) -> npt.NDArray[np.bool_]:
    """Whether each point lies left of the line, walking in coordinate order.

    Worked out in lon/lat itself: the edges are straight there, and lon/lat keeps the orientation
    of the ground (east is +x, north is +y), so a side in lon/lat is the side on the ellipsoid.
    Where the foot is a vertex, the two edges meeting there decide together: at a left turn the
    left side is where both edges say left, at a right turn where either does.
    """
    left = lines.cross(lon, lat) > 0
    at_start = (t <= VERTEX_T) & (index.prev_edge[edge] >= 0)
    at_end = (t >= 1 - VERTEX_T) & (index.next_edge[edge] >= 0)
    for mask, before, after in (
        (at_start, index.prev_edge[edge], edge),
        (at_end, edge, index.next_edge[edge]),
    ):
        if not mask.any():
            continue
        b, a = before[mask], after[mask]
        c1 = _Lines.of(index, b).cross(lon[mask], lat[mask]) > 0
        c2 = _Lines.of(index, a).cross(lon[mask], lat[mask]) > 0
        turn = index.dlon[b] * index.dlat[a] - index.dlat[b] * index.dlon[a]
        left[mask] = np.where(turn > 0, c1 & c2, c1 | c2)
    return left


def snap(
    lon: npt.ArrayLike, lat: npt.ArrayLike, index: SegmentIndex, *, max_distance_m: float
) -> list[SnapResult]:
    """Snap points and return one SnapResult each, in input order."""
    a = snap_arrays(lon, lat, index, max_distance_m=max_distance_m)
    # Whole columns to Python lists first: indexing numpy arrays element by element costs more
    # than the snapping itself for a batch of a few hundred points.
    ids = index.ids[np.maximum(a.segment, 0)].tolist()
    columns = zip(
        a.edge.tolist(),
        ids,
        a.distance_m.tolist(),
        a.lon.tolist(),
        a.lat.tolist(),
        a.chainage_km.tolist(),
        a.side.tolist(),
        strict=True,
    )
    return [
        BEYOND
        if edge < 0
        else SnapResult(SnapStatus.SNAPPED, segment_id, distance, x, y, chainage, side)
        for edge, segment_id, distance, x, y, chainage, side in columns
    ]
