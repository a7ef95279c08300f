"""The candidate grid: for each small lon/lat cell near the border, every edge that can be the
geodesically nearest to some point in it, so most points are snapped without a spatial query."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np
import numpy.typing as npt
import shapely

from service.domain.chains import Chains
from service.domain.geodesy import (
    GEOD,
    MAX_SPREAD,
    MIN_M_PER_DEG_LAT,
    FloatArray,
    IntArray,
    box_radius_m,
    metres_per_degree,
    rank_ratio,
    reach_degrees,
    scale_spread,
)

# The candidate grid (see CandidateGrid), tuned on the bundled border with bench/snapping.py
# (--side-by-side; docs/border-data.md): 0.5-0.7 s of CPU to build for its 52,826 vertices; 9-10
# edges per point in cells that list edges; in the fifth of the points whose cells list chains
# (near the Rio Grande) about 12 chains and then 34 edges. Cells whose chains hold many edges
# split on a smaller gain, counted in edges (CHAINED_SPLIT_GAIN): a cell a kilometre from a
# winding river keeps chains for kilometres of it (its candidates span D + 2h), and a quarter
# keeps markedly fewer. Deeper grids there (4 or 5) and shorter chains (400 m) snap the river's
# points faster again, but no more than 0.01-0.04 of the old border's rate, for 0.3-0.8 s more
# of start-up; other list limits did not help.
GRID_CELL_DEG = 0.1
GRID_REACH_M = 10_000.0
GRID_MAX_DEPTH = 3
LEAF_MAX_EDGES = 8  # more than this, and a cell splits if that pays (SPLIT_MIN_GAIN)
SPLIT_MIN_GAIN = 0.6
LEAF_MAX_LISTED = 256  # longer lists (of chains) are left to the STRtree path
# A leaf whose chains hold no more than LEAF_DIRECT_EDGES edges lists the edges themselves; so
# does one with up to LEAF_DIRECT_MAX_EDGES where its chains are mostly single edges.
LEAF_DIRECT_EDGES = 24
LEAF_DIRECT_MAX_EDGES = 64
# A cell whose chains hold more than LEAF_DIRECT_EDGES edges also splits where a quarter keeps at
# most this share of its edges.
CHAINED_SPLIT_GAIN = 0.8
CELL_SLACK_M = 1.0
PAIR_BLOCK = 1 << 16  # (node, chain) pairs measured at once while building


def expand_slices(start: IntArray, count: IntArray) -> tuple[IntArray, IntArray]:
    """(group, position) for every element of the slices ``[start, start + count)``, in order."""
    group = np.repeat(np.arange(len(count)), count)
    before = np.cumsum(count) - count
    return group, np.arange(int(count.sum())) + np.repeat(start - before, count)


class Indexed(Protocol):
    """What the grid is built from: the edges' ends, the vertices and their tree, the chains (a
    SegmentIndex; a protocol so that this module need not import segments.py)."""

    ax: FloatArray
    ay: FloatArray
    bx: FloatArray
    by: FloatArray
    vx: FloatArray
    vy: FloatArray
    vertex_tree: shapely.STRtree
    chains: Chains


@dataclass(frozen=True, slots=True)
class CandidateGrid:
    """The edges that may be nearest to a point, looked up by where the point is.

    Square lon/lat cells of GRID_CELL_DEG cover every place within GRID_REACH_M of an edge; a cell
    with more than LEAF_MAX_EDGES candidate chains (domain.chains) splits into quarters (SW, SE,
    NW, NE) where that pays (SPLIT_MIN_GAIN, or CHAINED_SPLIT_GAIN where its chains hold many
    edges), down to GRID_MAX_DEPTH. A leaf lists, in edge order, every chain
    with an edge that can be geodesically nearest to some point of its box (and a few more: the
    test is a bound), unless there are more than LEAF_MAX_LISTED; then its lists are empty and
    snapping asks the STRtree. A leaf whose chains hold few edges (LEAF_DIRECT_EDGES) lists
    those edges instead, and snapping measures them straight away; otherwise snapping first
    sorts out the chains by their bounds. ``rank_ratio`` is geodesy.rank_ratio for the leaf's
    points: how far planar ranking may be trusted there.
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
    start: IntArray  # a leaf's candidate edges are edges[start:stop] ...
    stop: IntArray
    edges: IntArray
    chain_start: IntArray  # ... or the edges of chains[chain_start:chain_stop] (index.chains)
    chain_stop: IntArray
    chains: IntArray
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
    def build(cls, index: Indexed) -> CandidateGrid:
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
            fewest_edges = quarters.width.reshape(-1, 4).min(axis=1)
            crowded = level.width[level.split] > LEAF_DIRECT_EDGES
            worth |= crowded & (fewest_edges <= CHAINED_SPLIT_GAIN * level.width[level.split])
            levels.append(level.with_split(worth))
            level = quarters.of_parents(worth)
        levels.append(level)
        root = np.full(nx * ny, -1, dtype=np.int64)
        root[cells] = np.arange(len(cells))
        return cls._assemble(index, (lon0, lat0, nx, ny), root, levels)

    @classmethod
    def _assemble(
        cls,
        index: Indexed,
        origin: tuple[float, float, int, int],
        root: IntArray,
        levels: list[_Level],
    ) -> CandidateGrid:
        first_id = np.cumsum([0] + [len(level.west) for level in levels])
        child, ratio = [], []
        direct: list[tuple[IntArray, IntArray]] = []  # per level: (count per node, edges)
        chained: list[tuple[IntArray, IntArray]] = []  # per level: (count per node, chains)
        chains = index.chains
        for depth, level in enumerate(levels):
            kids = np.full(len(level.west), -1, dtype=np.int64)
            kids[level.split] = first_id[depth + 1] + 4 * np.arange(int(level.split.sum()))
            child.append(kids)
            # Split nodes, and leaves too crowded to be worth listing, get empty slices. A leaf
            # lists its edges when they are few, else its chains.
            listed = ~level.split & (level.count <= LEAF_MAX_LISTED)
            width = level.width
            # Sorting out chains first pays where they hold several edges each.
            few = (width <= LEAF_DIRECT_EDGES) | (width <= LEAF_DIRECT_MAX_EDGES) & (
                width <= 2 * level.count
            )
            is_direct = listed & few
            is_chained = listed & ~is_direct
            through = level.pair_chain[is_direct[level.pair_node]]
            _, edges = expand_slices(chains.first[through], chains.count[through])
            direct.append((np.where(is_direct, width, 0), edges))
            kept = level.pair_chain[is_chained[level.pair_node]]
            chained.append((np.where(is_chained, level.count, 0), kept))
            ratio.append(level.rank_ratio)
        start, stop, edges = _slices(direct)
        chain_start, chain_stop, chain_ids = _slices(chained)
        lon0, lat0, nx, ny = origin
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
            start=start,
            stop=stop,
            edges=edges,
            chain_start=chain_start,
            chain_stop=chain_stop,
            chains=chain_ids,
            rank_ratio=np.concatenate(ratio),
        )


def _slices(lists: list[tuple[IntArray, IntArray]]) -> tuple[IntArray, IntArray, IntArray]:
    """(start, stop, items) of every node's list, from each level's (count per node, items)."""
    count = np.concatenate([c for c, _ in lists])
    stop = np.cumsum(count)
    return stop - count, stop, np.concatenate([items for _, items in lists])


def _band_cells(index: Indexed) -> tuple[float, float, int, int, IntArray]:
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
    x0 = ((west - lon0) // GRID_CELL_DEG).astype(np.int64)
    x1 = ((east - lon0) // GRID_CELL_DEG).astype(np.int64) + 1
    y0 = ((south - lat0) // GRID_CELL_DEG).astype(np.int64)
    y1 = ((north - lat0) // GRID_CELL_DEG).astype(np.int64) + 1
    # Each box's cells [y0, y1) x [x0, x1) marked at once: +1 at two corners, -1 at the other
    # two, summed along both axes, counts the boxes over every cell.
    corners = np.zeros((ny + 1, nx + 1), dtype=np.int64)
    for y, x, sign in ((y0, x0, 1), (y0, x1, -1), (y1, x0, -1), (y1, x1, 1)):
        np.add.at(corners, (y, x), sign)
    band = corners.cumsum(axis=0).cumsum(axis=1)[:ny, :nx] > 0
    return lon0, lat0, nx, ny, np.flatnonzero(band)


def _root_pairs(
    index: Indexed, west: FloatArray, south: FloatArray, size: FloatArray
) -> tuple[IntArray, IntArray]:
    """(cell, chain) for every chain within reach of a cell, sorted by cell then chain.

    The reach is the distance from the cell's centre to some vertex (the degree-nearest, measured
    exactly) plus the cell's diameter: no edge beyond it can be nearest to any point of the cell,
    and a chain whose box misses the reach's box has no edge within it.
    """
    clon, clat = west + 0.5 * size, south + 0.5 * size
    near = index.vertex_tree.query_nearest(shapely.points(clon, clat), all_matches=False)
    vertex = np.empty(len(clon), dtype=np.int64)
    vertex[near[0]] = near[1]
    _, _, to_vertex = GEOD.inv(clon, clat, index.vx[vertex], index.vy[vertex])
    reach = np.asarray(to_vertex) + 2 * _cell_radius(west, south, size)
    dlon, dlat = reach_degrees(clat, reach)
    pairs = index.chains.tree.query(shapely.box(clon - dlon, clat - dlat, clon + dlon, clat + dlat))
    order = np.lexsort((pairs[1], pairs[0]))
    return pairs[0][order].astype(np.int64), pairs[1][order].astype(np.int64)


def _cell_radius(west: FloatArray, south: FloatArray, size: FloatArray) -> FloatArray:
    # The slack covers points placed a rounding error outside their cell's box.
    return box_radius_m(south, south + size, lon_span_deg=size) + CELL_SLACK_M


def _chain_bounds(
    index: Indexed, clon: FloatArray, clat: FloatArray, pair_node: IntArray, chain: IntArray
) -> tuple[FloatArray, FloatArray]:
    """(lower, upper) planar distances from each pair's node centre to its chain
    (Chains.bounds), in the centre's local plane.

    In blocks of PAIR_BLOCK pairs: a dense border makes millions of pairs, and the temporaries
    of one block stay in the cache where whole-level arrays would be fetched from memory (and
    first touched) by every step of the arithmetic.
    """
    kx, ky = metres_per_degree(clat)
    lower, upper = np.empty(len(pair_node)), np.empty(len(pair_node))
    for lo in range(0, len(pair_node), PAIR_BLOCK):
        node = pair_node[lo : lo + PAIR_BLOCK]
        lower[lo : lo + PAIR_BLOCK], upper[lo : lo + PAIR_BLOCK] = index.chains.bounds(
            clon[node], clat[node], kx=kx[node], ky=ky[node], chain=chain[lo : lo + PAIR_BLOCK]
        )
    return lower, upper


def _least_per_node(value: FloatArray, pair_node: IntArray, nodes: int) -> FloatArray:
    """The least value of each node's pairs (pairs sorted by node); inf for a node without any."""
    least = np.full(nodes, np.inf)
    if len(pair_node):
        first = np.flatnonzero(np.r_[True, pair_node[1:] != pair_node[:-1]])
        least[pair_node[first]] = np.minimum.reduceat(value, first)
    return least


@dataclass(frozen=True, slots=True)
class _Level:
    """One depth of the grid: its nodes' boxes and surviving (node, chain) pairs, sorted."""

    west: FloatArray
    south: FloatArray
    size: FloatArray
    pair_node: IntArray
    pair_chain: IntArray
    count: IntArray
    width: IntArray  # edges of the node's chains
    split: npt.NDArray[np.bool_]
    rank_ratio: FloatArray

    @classmethod
    def of(
        cls,
        index: Indexed,
        west: FloatArray,
        south: FloatArray,
        size: FloatArray,
        pair_node: IntArray,
        pair_chain: IntArray,
        *,
        depth: int,
    ) -> _Level:
        """Keep the pairs whose chain has an edge that may be nearest to some point of the node.

        With c the node's centre, h its radius and D the distance from c to the border, a point p
        of the node is within D + h of the border and at least d(c, e) - h from edge e, so e can
        win only if d(c, e) <= D + 2h. Both sides come from planar distances in c's local plane,
        inside a latitude band that every path in question stays in (it spans ``band_m`` around
        c), where scale_spread bounds the plane's stretch by rho: D <= rho * m for m the least
        planar distance to some point of a chain (Chains.bounds' upper: at least the least planar
        distance to the border); and for every edge e of a chain whose planar lower bound is l,
        d(c, e) >= min(l, rho * band_m) / rho (if d(c, e) is within band_m, the plane stretches
        its geodesic by at most rho; otherwise it already exceeds band_m).
        """
        clon, clat = west + 0.5 * size, south + 0.5 * size
        radius = _cell_radius(west, south, size)
        nearest, farthest_point = _chain_bounds(index, clon, clat, pair_node, pair_chain)
        least = _least_per_node(farthest_point, pair_node, len(west))
        band_m = MAX_SPREAD * least + 2 * radius + 1.0
        rho = scale_spread(clat - band_m / MIN_M_PER_DEG_LAT, clat + band_m / MIN_M_PER_DEG_LAT)
        usable = rho <= MAX_SPREAD  # then band_m covers D + 2h, as the bound needs
        rho = np.where(usable, rho, 1.0)
        # min(l, rho * band_m) / rho <= rho * least + 2h, i.e. l <= rho * (rho * least + 2h): the
        # other term, band_m, always exceeds rho * least + 2h.
        keep = nearest <= np.where(usable, rho * (rho * least + 2 * radius), np.inf)[pair_node]
        pair_node, pair_chain = pair_node[keep], pair_chain[keep]
        count = np.bincount(pair_node, minlength=len(west))
        width = np.bincount(
            pair_node, weights=index.chains.count[pair_chain], minlength=len(west)
        ).astype(np.int64)
        split = (count > LEAF_MAX_EDGES) & (depth < GRID_MAX_DEPTH)
        farthest = np.where(usable, rho * least + radius, np.inf)
        return cls(
            west,
            south,
            size,
            pair_node,
            pair_chain,
            count,
            width,
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
            pair_chain=self.pair_chain[pairs],
            count=self.count[kept],
            width=self.width[kept],
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
        node, position = expand_slices(
            np.repeat(first[parents], 4), np.repeat(self.count[parents], 4)
        )
        return west, south, size, node, self.pair_chain[position]
