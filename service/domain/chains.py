"""Chains: runs of consecutive short edges that the search for candidates measures as one.

A river boundary drawn from orthophotos has edges of tens of metres, so a point a kilometre away
has dozens of edges about equally near, and listing each one costs the grid and every snap. A
chain stands for up to CHAIN_SPAN_M of such edges by its chord (first vertex to last) and a
tolerance: every point of its edges lies within ``eps_m`` of the chord, in any local plane. So
for a point at planar distance P from the chord, every edge of the chain is at least P - eps_m
away. The converse holds too: every point of the chord is within ``eps_m`` of some point of the
chain (the chain runs from one end of the chord to the other, so its projection on the chord's
line covers the chord; a point of the chain that projects to a point Q of the chord is at its
distance from the chord, at most the tolerance, from Q). So some point of the chain is at most
``upper`` = min(P + eps_m, distance to the nearer chord end, a vertex) away.
An edge longer than CHAIN_EDGE_MAX_M is a chain of its own, measured exactly (eps 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt
import shapely

from service.domain.geodesy import FloatArray, IntArray, metres_per_degree, plane_foot

CHAIN_SPAN_M = 800.0  # a chain starts every this much line (along its segment)
CHAIN_EDGE_MAX_M = 200.0  # a longer edge is a chain of its own
# The most metres a degree of lon/lat is anywhere (north at the poles, east at the equator): a
# lon/lat distance times this bounds the distance in every local plane.
_EAST_AT_EQUATOR = float(metres_per_degree(np.array([0.0]))[0][0])
_NORTH_AT_POLE = float(metres_per_degree(np.array([90.0]))[1][0])
M_PER_DEG_MAX = max(_EAST_AT_EQUATOR, _NORTH_AT_POLE) * (1 + 1e-9)


class Edges(Protocol):
    """What chains are made of: each edge's ends, geodesic length, offset along its segment and
    segment (a SegmentIndex; a protocol so that this module need not import segments.py)."""

    ax: FloatArray
    ay: FloatArray
    bx: FloatArray
    by: FloatArray
    length_m: FloatArray
    offset_m: FloatArray
    segment_of_edge: IntArray


@dataclass(frozen=True, slots=True)
class Chains:
    """Every chain of an index: its edges ``first[c]:first[c] + count[c]`` (in edge order), its
    chord, its tolerance, and an STRtree over the boxes of its vertices."""

    first: IntArray
    count: IntArray
    ax: FloatArray
    ay: FloatArray
    dlon: FloatArray
    dlat: FloatArray
    eps_m: FloatArray
    single: npt.NDArray[np.bool_]
    tree: shapely.STRtree

    @classmethod
    def of(cls, index: Edges) -> Chains:
        n = len(index.ax)
        if n == 0:
            empty = np.zeros(0, dtype=np.int64)
            none = np.zeros(0)
            return cls(empty, empty, none, none, none, none, none, empty.astype(bool),
                       shapely.STRtree([]))  # fmt: skip
        long = index.length_m > CHAIN_EDGE_MAX_M
        bucket = np.floor(index.offset_m / CHAIN_SPAN_M)
        new = np.ones(n, dtype=bool)
        new[1:] = (
            (index.segment_of_edge[1:] != index.segment_of_edge[:-1])
            | long[1:]
            | long[:-1]
            | (bucket[1:] != bucket[:-1])
        )
        first = np.flatnonzero(new)
        count = np.diff(np.append(first, n))
        last = first + count - 1
        ax, ay = index.ax[first], index.ay[first]
        dlon, dlat = index.bx[last] - ax, index.by[last] - ay
        chain_of_edge = np.repeat(np.arange(len(first)), count)
        # Each edge's two vertices against its chain's chord, in lon/lat degrees.
        worst = np.maximum(
            _to_chord(index.ax, index.ay, ax, ay, dlon, dlat, chain_of_edge),
            _to_chord(index.bx, index.by, ax, ay, dlon, dlat, chain_of_edge),
        )
        single = count == 1
        eps_m = np.where(single, 0.0, np.maximum.reduceat(worst, first) * M_PER_DEG_MAX)
        lo_x = np.minimum.reduceat(np.minimum(index.ax, index.bx), first)
        hi_x = np.maximum.reduceat(np.maximum(index.ax, index.bx), first)
        lo_y = np.minimum.reduceat(np.minimum(index.ay, index.by), first)
        hi_y = np.maximum.reduceat(np.maximum(index.ay, index.by), first)
        tree = shapely.STRtree(shapely.box(lo_x, lo_y, hi_x, hi_y))
        return cls(first, count, ax, ay, dlon, dlat, eps_m, single, tree)

    def __len__(self) -> int:
        return len(self.first)

    def bounds(
        self, lon: FloatArray, lat: FloatArray, *, kx: FloatArray, ky: FloatArray, chain: IntArray
    ) -> tuple[FloatArray, FloatArray]:
        """(lower, upper) planar distances from each point to its chain, in the point's plane:
        no edge of the chain is nearer than lower; some point of it is no farther than upper."""
        d2, _ = plane_foot((self.ax, self.ay, self.dlon, self.dlat), lon, lat, kx=kx, ky=ky,
                           line=chain)  # fmt: skip
        planar = np.sqrt(d2)
        lower = planar - self.eps_m[chain]
        x0 = (self.ax[chain] - lon) * kx
        y0 = (self.ay[chain] - lat) * ky
        x1 = x0 + self.dlon[chain] * kx
        y1 = y0 + self.dlat[chain] * ky
        to_end = np.sqrt(np.minimum(x0 * x0 + y0 * y0, x1 * x1 + y1 * y1))
        # Every point of the chord, its nearest to the point among them, is within eps_m of some
        # point of the chain (see the class docstring), and so is each end: a vertex.
        upper = np.where(self.single[chain], planar, np.minimum(to_end, planar + self.eps_m[chain]))
        return lower, upper


def _to_chord(
    px: FloatArray,
    py: FloatArray,
    ax: FloatArray,
    ay: FloatArray,
    dlon: FloatArray,
    dlat: FloatArray,
    chain: IntArray,
) -> FloatArray:
    """Lon/lat distance from each point to its chain's chord (a segment)."""
    x, y = px - ax[chain], py - ay[chain]
    dx, dy = dlon[chain], dlat[chain]
    length2 = np.maximum(dx * dx + dy * dy, np.finfo(np.float64).tiny)
    t = np.clip((x * dx + y * dy) / length2, 0.0, 1.0)
    distance: FloatArray = np.hypot(x - t * dx, y - t * dy)
    return distance
