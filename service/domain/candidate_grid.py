"""The candidate grid: for each small lon/lat cell near the border, every edge that can be the
geodesically nearest to some point in it, so most points are snapped without a spatial query."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import shapely

from service.domain.geodesy import (
    GEOD,
    MAX_SPREAD,
    MIN_M_PER_DEG_LAT,
    FloatArray,
    box_radius_m,
    metres_per_degree,
    rank_ratio,
    reach_degrees,
    scale_spread,
)
from service.domain.segments import IntArray

if TYPE_CHECKING:
    from service.domain.segments import SegmentIndex

# The candidate grid (see CandidateGrid), tuned on the bundled border with bench/snapping.py:
# about 9 candidates per realistic point, 0.3 s to build, 17 MB. Deeper or finer grids barely
# shorten the lists (where edges are dense, a cell's candidates span the cell's whole width), and
# build time and memory grow fast.
GRID_CELL_DEG = 0.1
GRID_REACH_M = 10_000.0
GRID_MAX_DEPTH = 3
LEAF_MAX_EDGES = 8  # more than this, and a cell splits if that pays (SPLIT_MIN_GAIN)
SPLIT_MIN_GAIN = 0.6
LEAF_MAX_LISTED = 64  # longer lists are left to the STRtree path
CELL_SLACK_M = 1.0
PAIR_BLOCK = 1 << 16  # (node, edge) pairs measured at once while building


def _expand(start: IntArray, count: IntArray) -> tuple[IntArray, IntArray]:
    """(group, position) for every element of the slices ``[start, start + count)``, in order."""
    group = np.repeat(np.arange(len(count)), count)
    before = np.cumsum(count) - count
    return group, np.arange(int(count.sum())) + np.repeat(start - before, count)


@dataclass(frozen=True, slots=True)
class CandidateGrid:
    """The edges that may be nearest to a point, looked up by where the point is.

    Square lon/lat cells of GRID_CELL_DEG cover every place within GRID_REACH_M of an edge; a cell
    with more than LEAF_MAX_EDGES candidates splits into quarters (SW, SE, NW, NE) where that pays,
    down to GRID_MAX_DEPTH. A leaf lists, in edge order, every edge that can be geodesically
    nearest to some point of its box (and a few more: the test is a bound), unless there are more
    than LEAF_MAX_LISTED; then its list is empty and snapping asks the STRtree. ``rank_ratio`` is
    geodesy.rank_ratio for the leaf's points: how far planar ranking may be trusted there.
    """

    lon0: float
    lat0: float
    nx: int
    ny: int
    root: IntArray  # node of each root cell (row-major from lon0, lat0), -1 outside the band
    child: IntArray  # first of a node's four children, -1 for a leaf
    west: FloatArray
    south: FloatArray
    size_deg: FloatArray
    start: IntArray  # a leaf's candidates are edges[start:stop]
    stop: IntArray
    edges: IntArray
    rank_ratio: FloatArray

    def locate(self, lon: FloatArray, lat: FloatArray) -> IntArray:
        """The leaf holding each point, or -1 where the point is beyond GRID_REACH_M of every edge."""
        fx = (lon - self.lon0) / GRID_CELL_DEG
        fy = (lat - self.lat0) / GRID_CELL_DEG
        inside = (fx >= 0) & (fx < self.nx) & (fy >= 0) & (fy < self.ny)  # False for NaN
        node = np.full(len(lon), -1, dtype=np.int64)
        node[inside] = self.root[
            fy[inside].astype(np.int64) * self.nx + fx[inside].astype(np.int64)
        ]
        todo = np.flatnonzero(node >= 0)
        todo = todo[self.child[node[todo]] >= 0]
        while len(todo):
            at = node[todo]
            half = 0.5 * self.size_deg[at]
            east = lon[todo] >= self.west[at] + half
            north = lat[todo] >= self.south[at] + half
            node[todo] = self.child[at] + east + 2 * north
            todo = todo[self.child[node[todo]] >= 0]
        return node

    @classmethod
    def build(cls, index: SegmentIndex) -> CandidateGrid:
        lon0, lat0, nx, ny, cells = _band_cells(index)
        west = np.asarray(lon0 + (cells % nx) * GRID_CELL_DEG, dtype=np.float64)
        south = np.asarray(lat0 + (cells // nx) * GRID_CELL_DEG, dtype=np.float64)
        size = np.full(len(cells), GRID_CELL_DEG)
        level = _Level.of(index, west, south, size, *_root_pairs(index, west, south, size), depth=0)
        levels: list[_Level] = []
        while level.split.any():
            quarters = _Level.of(index, *level.children(), depth=len(levels) + 1)
            # Where the line crosses a cell, the quarter it crosses has about half the candidates;
            # away from the line, where many edges are about equally far, quarters keep most of
            # them and splitting would only multiply the lists.
            fewest = quarters.count.reshape(-1, 4).min(axis=1)
            worth = fewest <= SPLIT_MIN_GAIN * level.count[level.split]
            levels.append(level.with_split(worth))
            level = quarters.of_parents(worth)
        levels.append(level)
        root = np.full(nx * ny, -1, dtype=np.int64)
        root[cells] = np.arange(len(cells))
        return cls._assemble(lon0, lat0, nx, ny, root, levels)

    @classmethod
    def _assemble(
        cls, lon0: float, lat0: float, nx: int, ny: int, root: IntArray, levels: list[_Level]
    ) -> CandidateGrid:
        first_id = np.cumsum([0] + [len(level.west) for level in levels])
        child, start, stop, edges, ratio = [], [], [], [], []
        offset = 0
        for depth, level in enumerate(levels):
            kids = np.full(len(level.west), -1, dtype=np.int64)
            kids[level.split] = first_id[depth + 1] + 4 * np.arange(int(level.split.sum()))
            child.append(kids)
            # Split nodes, and leaves too crowded to be worth listing, get an empty slice.
            listed = ~level.split & (level.count <= LEAF_MAX_LISTED)
            count = np.where(listed, level.count, 0)
            start.append(offset + np.cumsum(count) - count)
            stop.append(offset + np.cumsum(count))
            edges.append(level.pair_edge[listed[level.pair_node]])
            offset += int(count.sum())
            ratio.append(level.rank_ratio)
        return cls(
            lon0=lon0,
            lat0=lat0,
            nx=nx,
            ny=ny,
            root=root,
            child=np.concatenate(child),
            west=np.concatenate([level.west for level in levels]),
            south=np.concatenate([level.south for level in levels]),
            size_deg=np.concatenate([level.size for level in levels]),
            start=np.concatenate(start),
            stop=np.concatenate(stop),
            edges=np.concatenate(edges),
            rank_ratio=np.concatenate(ratio),
        )


def _band_cells(index: SegmentIndex) -> tuple[float, float, int, int, IntArray]:
    """The grid's origin and shape, and its cells (row-major) within GRID_REACH_M of an edge.

    A cell is in the band if it meets some edge's box grown by a lon/lat reach that holds the
    geodesic disc of GRID_REACH_M around every point of the edge; a point in no such cell is
    farther than GRID_REACH_M from every edge.
    """
    high = np.maximum(np.abs(index.ay), np.abs(index.by))
    dlon, dlat = reach_degrees(high, GRID_REACH_M + CELL_SLACK_M)
    west = np.minimum(index.ax, index.bx) - dlon
    east = np.maximum(index.ax, index.bx) + dlon
    south = np.minimum(index.ay, index.by) - dlat
    north = np.maximum(index.ay, index.by) + dlat
    lon0 = float(np.floor(west.min(initial=0.0)))
    lat0 = float(np.floor(south.min(initial=0.0)))
    nx = int((east.max(initial=0.0) - lon0) // GRID_CELL_DEG) + 1
    ny = int((north.max(initial=0.0) - lat0) // GRID_CELL_DEG) + 1
    band = np.zeros((ny, nx), dtype=bool)
    x0 = ((west - lon0) // GRID_CELL_DEG).astype(np.int64)
    x1 = ((east - lon0) // GRID_CELL_DEG).astype(np.int64) + 1
    y0 = ((south - lat0) // GRID_CELL_DEG).astype(np.int64)
    y1 = ((north - lat0) // GRID_CELL_DEG).astype(np.int64) + 1
    for a, b, c, d in zip(y0.tolist(), y1.tolist(), x0.tolist(), x1.tolist(), strict=True):
        band[a:b, c:d] = True
    return lon0, lat0, nx, ny, np.flatnonzero(band)


def _root_pairs(
    index: SegmentIndex, west: FloatArray, south: FloatArray, size: FloatArray
) -> tuple[IntArray, IntArray]:
    """(cell, edge) for every edge within reach of a cell, sorted by cell then edge.

    The reach is the distance from the cell's centre to some vertex (the degree-nearest, measured
    exactly) plus the cell's diameter: no edge beyond it can be nearest to any point of the cell.
    """
    clon, clat = west + 0.5 * size, south + 0.5 * size
    near = index.vertex_tree.query_nearest(shapely.points(clon, clat), all_matches=False)
    vertex = np.empty(len(clon), dtype=np.int64)
    vertex[near[0]] = near[1]
    _, _, to_vertex = GEOD.inv(clon, clat, index.vx[vertex], index.vy[vertex])
    reach = np.asarray(to_vertex) + 2 * _cell_radius(west, south, size)
    dlon, dlat = reach_degrees(clat, reach)
    pairs = index.tree.query(shapely.box(clon - dlon, clat - dlat, clon + dlon, clat + dlat))
    order = np.lexsort((pairs[1], pairs[0]))
    return pairs[0][order].astype(np.int64), pairs[1][order].astype(np.int64)


def _cell_radius(west: FloatArray, south: FloatArray, size: FloatArray) -> FloatArray:
    # The slack covers points placed a rounding error outside their cell's box.
    return box_radius_m(south, south + size, lon_span_deg=size) + CELL_SLACK_M


def _planar_distance(
    index: SegmentIndex, clon: FloatArray, clat: FloatArray, pair_node: IntArray, edge: IntArray
) -> FloatArray:
    """Planar distance from each pair's node centre to its edge, in the centre's local plane.

    In blocks of PAIR_BLOCK pairs: a dense border makes tens of millions of pairs, and the
    temporaries of one block stay in the cache where whole-level arrays would be fetched from
    memory (and first touched) by every step of the arithmetic.
    """
    kx, ky = metres_per_degree(clat)
    out = np.empty(len(pair_node))
    for lo in range(0, len(pair_node), PAIR_BLOCK):
        node = pair_node[lo : lo + PAIR_BLOCK]
        d2, _ = index.plane_foot(
            clon[node], clat[node], kx=kx[node], ky=ky[node], edge=edge[lo : lo + PAIR_BLOCK]
        )
        np.sqrt(d2, out=out[lo : lo + PAIR_BLOCK])
    return out


def _least_per_node(value: FloatArray, pair_node: IntArray, nodes: int) -> FloatArray:
    """The least value of each node's pairs (pairs sorted by node); inf for a node without any."""
    least = np.full(nodes, np.inf)
    if len(pair_node):
        first = np.flatnonzero(np.r_[True, pair_node[1:] != pair_node[:-1]])
        least[pair_node[first]] = np.minimum.reduceat(value, first)
    return least


@dataclass(frozen=True, slots=True)
class _Level:
    """One depth of the grid: its nodes' boxes and surviving (node, edge) pairs, sorted."""

    west: FloatArray
    south: FloatArray
    size: FloatArray
    pair_node: IntArray
    pair_edge: IntArray
    count: IntArray
    split: npt.NDArray[np.bool_]
    rank_ratio: FloatArray

    @classmethod
    def of(
        cls,
        index: SegmentIndex,
        west: FloatArray,
        south: FloatArray,
        size: FloatArray,
        pair_node: IntArray,
        pair_edge: IntArray,
        *,
        depth: int,
    ) -> _Level:
        """Keep the pairs whose edge may be nearest to some point of the node.

        With c the node's centre, h its radius and D the distance from c to the border, a point p
        of the node is within D + h of the border and at least d(c, e) - h from edge e, so e can
        win only if d(c, e) <= D + 2h. Both sides come from planar distances in c's local plane,
        inside a latitude band that every path in question stays in (it spans ``band_m`` around
        c), where scale_spread bounds the plane's stretch by rho: D <= rho * m for the least planar
        distance m; and d(c, e) >= min(planar, rho * band_m) / rho (if d(c, e) is within band_m,
        the plane stretches its geodesic by at most rho; otherwise it already exceeds band_m).
        """
        clon, clat = west + 0.5 * size, south + 0.5 * size
        radius = _cell_radius(west, south, size)
        planar = _planar_distance(index, clon, clat, pair_node, pair_edge)
        least = _least_per_node(planar, pair_node, len(west))
        band_m = MAX_SPREAD * least + 2 * radius + 1.0
        rho = scale_spread(clat - band_m / MIN_M_PER_DEG_LAT, clat + band_m / MIN_M_PER_DEG_LAT)
        usable = rho <= MAX_SPREAD  # then band_m covers D + 2h, as the bound needs
        rho = np.where(usable, rho, 1.0)
        lower = np.minimum(planar, (rho * band_m)[pair_node]) / rho[pair_node]
        keep = ~usable[pair_node] | (lower <= (rho * least + 2 * radius)[pair_node])
        pair_node, pair_edge = pair_node[keep], pair_edge[keep]
        count = np.bincount(pair_node, minlength=len(west))
        split = (count > LEAF_MAX_EDGES) & (depth < GRID_MAX_DEPTH)
        farthest = np.where(usable, rho * least + radius, np.inf)
        return cls(
            west,
            south,
            size,
            pair_node,
            pair_edge,
            count,
            split,
            rank_ratio(south, south + size, reach_m=farthest),
        )

    def with_split(self, worth: npt.NDArray[np.bool_]) -> _Level:
        """This level with only the splits marked worth it (one flag per current split)."""
        split = self.split.copy()
        split[split] = worth
        return replace(self, split=split)

    def of_parents(self, worth: npt.NDArray[np.bool_]) -> _Level:
        """The quarters of the parents marked worth splitting (one flag per parent, four each)."""
        kept = np.repeat(worth, 4)
        renumber = np.cumsum(kept) - 1
        pairs = kept[self.pair_node]
        return replace(
            self,
            west=self.west[kept],
            south=self.south[kept],
            size=self.size[kept],
            pair_node=renumber[self.pair_node[pairs]],
            pair_edge=self.pair_edge[pairs],
            count=self.count[kept],
            split=self.split[kept],
            rank_ratio=self.rank_ratio[kept],
        )

    def children(self) -> tuple[FloatArray, FloatArray, FloatArray, IntArray, IntArray]:
        """Boxes of the split nodes' quarters, and their pairs: each the parent's, in order."""
        parents = np.flatnonzero(self.split)
        half = 0.5 * self.size[parents]
        quarter = np.arange(4)
        west = (self.west[parents][:, None] + half[:, None] * (quarter % 2)).ravel()
        south = (self.south[parents][:, None] + half[:, None] * (quarter // 2)).ravel()
        size = np.repeat(half, 4)
        first = np.cumsum(self.count) - self.count
        node, position = _expand(np.repeat(first[parents], 4), np.repeat(self.count[parents], 4))
        return west, south, size, node, self.pair_edge[position]
