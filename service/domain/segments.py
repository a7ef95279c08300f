"""Border segments: parsing a segment file, and the in-memory edge index snapping runs on."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt
import shapely

from service.domain.countries import ALPHA3_TO_ALPHA2
from service.domain.errors import InvalidSegmentFile
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

REQUIRED_PROPERTIES = (
    "segment_id",
    "border",
    "start_km",
    "end_km",
    "left_country",
    "right_country",
)

IntArray = npt.NDArray[np.int64]

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


@dataclass(frozen=True, slots=True)
class BorderSegment:
    """One piece of border line; ``coords`` are (lon, lat) in WGS84, walking from start_km to end_km."""

    segment_id: str
    border: str
    start_km: float
    end_km: float
    left_country: str
    right_country: str
    coords: tuple[tuple[float, float], ...]
    properties: Mapping[str, Any] = field(default_factory=dict)

    @property
    def section(self) -> str:
        return str(self.properties.get("section") or self.border)


def parse_segment_collection(doc: object) -> list[BorderSegment]:
    """Return the segments of a GeoJSON FeatureCollection, or raise naming the first bad feature."""
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection":
        raise InvalidSegmentFile("not a GeoJSON FeatureCollection")
    features = doc.get("features")
    if not isinstance(features, list) or not features:
        raise InvalidSegmentFile("the FeatureCollection has no features")
    segments: list[BorderSegment] = []
    seen: set[str] = set()
    for index, feature in enumerate(features):
        segment = _parse_feature(feature, index)
        if segment.segment_id in seen:
            raise InvalidSegmentFile(
                f"feature {index}: duplicate segment_id {segment.segment_id!r}"
            )
        seen.add(segment.segment_id)
        segments.append(segment)
    return segments


def _parse_feature(feature: object, index: int) -> BorderSegment:
    where = f"feature {index}"
    if not isinstance(feature, dict) or feature.get("type") != "Feature":
        raise InvalidSegmentFile(f"{where}: not a GeoJSON Feature")
    props = feature.get("properties")
    if not isinstance(props, dict):
        raise InvalidSegmentFile(f"{where}: no properties")
    sid = props.get("segment_id")
    if isinstance(sid, str) and sid:
        where = f"feature {index} ({sid})"
    missing = [name for name in REQUIRED_PROPERTIES if props.get(name) in (None, "")]
    if missing:
        raise InvalidSegmentFile(f"{where}: missing {', '.join(missing)}")
    if not isinstance(sid, str):
        raise InvalidSegmentFile(f"{where}: segment_id must be a string")
    geometry = feature.get("geometry")
    if not isinstance(geometry, dict) or geometry.get("type") != "LineString":
        kind = geometry.get("type") if isinstance(geometry, dict) else type(geometry).__name__
        raise InvalidSegmentFile(f"{where}: geometry must be a LineString, not {kind}")
    coords = _parse_coords(geometry.get("coordinates"), where)
    start_km, end_km = props["start_km"], props["end_km"]
    if not all(isinstance(v, int | float) and math.isfinite(v) for v in (start_km, end_km)):
        raise InvalidSegmentFile(f"{where}: start_km and end_km must be numbers")
    for side in ("left_country", "right_country"):
        if props[side] not in ALPHA3_TO_ALPHA2:
            raise InvalidSegmentFile(
                f"{where}: {side} {props[side]!r} is not an ISO 3166 alpha-3 code"
            )
    return BorderSegment(
        segment_id=sid,
        border=str(props["border"]),
        start_km=float(start_km),
        end_km=float(end_km),
        left_country=props["left_country"],
        right_country=props["right_country"],
        coords=coords,
        properties=props,
    )


def _parse_coords(raw: object, where: str) -> tuple[tuple[float, float], ...]:
    if not isinstance(raw, list) or len(raw) < 2:
        raise InvalidSegmentFile(f"{where}: a LineString needs at least two positions")
    out: list[tuple[float, float]] = []
    for pos in raw:
        ok = isinstance(pos, list) and len(pos) >= 2
        ok = ok and all(isinstance(v, int | float) and math.isfinite(v) for v in pos[:2])
        if not ok or not (-180 <= pos[0] <= 180 and -90 <= pos[1] <= 90):
            raise InvalidSegmentFile(f"{where}: bad position {pos!r}")
        out.append((float(pos[0]), float(pos[1])))
    return tuple(out)


class SegmentIndex:
    """Every edge of every segment as flat arrays, with the lookups snapping runs on.

    Snapping works per edge, not per segment: edges are short (<= 5 km in the bundled data), so the
    line between two vertices, drawn straight in lon/lat as GeoJSON draws it, is what we measure to.
    """

    def __init__(self, segments: Sequence[BorderSegment]) -> None:
        self.segments: tuple[BorderSegment, ...] = tuple(segments)
        self.by_id: dict[str, BorderSegment] = {s.segment_id: s for s in self.segments}
        ax: list[float] = []
        ay: list[float] = []
        bx: list[float] = []
        by: list[float] = []
        seg_of_edge: list[int] = []
        offset_m: list[float] = []
        for seg_no, seg in enumerate(self.segments):
            lons = np.array([c[0] for c in seg.coords])
            lats = np.array([c[1] for c in seg.coords])
            _, _, lengths = GEOD.inv(lons[:-1], lats[:-1], lons[1:], lats[1:])
            cumulative = np.concatenate([[0.0], np.cumsum(lengths)[:-1]])
            ax.extend(lons[:-1])
            ay.extend(lats[:-1])
            bx.extend(lons[1:])
            by.extend(lats[1:])
            seg_of_edge.extend([seg_no] * (len(lons) - 1))
            offset_m.extend(cumulative)
        self.ax, self.ay = np.array(ax, dtype=np.float64), np.array(ay, dtype=np.float64)
        self.bx, self.by = np.array(bx, dtype=np.float64), np.array(by, dtype=np.float64)
        self.dlon, self.dlat = self.bx - self.ax, self.by - self.ay
        self.segment_of_edge: IntArray = np.array(seg_of_edge, dtype=np.int64)
        self.offset_m: FloatArray = np.array(offset_m, dtype=np.float64)
        _, _, length_m = GEOD.inv(self.ax, self.ay, self.bx, self.by)
        self.length_m: FloatArray = np.asarray(length_m, dtype=np.float64)
        self.prev_edge, self.next_edge = self._neighbours()
        line_end = self.next_edge < 0
        self.vx = np.concatenate([self.ax, self.bx[line_end]])
        self.vy = np.concatenate([self.ay, self.by[line_end]])
        self.vertex_tree = shapely.STRtree(shapely.points(self.vx, self.vy))
        self.start_km: FloatArray = np.array([s.start_km for s in self.segments])
        self.left_a2 = np.array(
            [ALPHA3_TO_ALPHA2[s.left_country] for s in self.segments], dtype=object
        )
        self.right_a2 = np.array(
            [ALPHA3_TO_ALPHA2[s.right_country] for s in self.segments], dtype=object
        )
        self.ids = np.array([s.segment_id for s in self.segments], dtype=object)
        edges = shapely.linestrings(
            np.stack([self.ax, self.ay, self.bx, self.by], axis=1).reshape(-1, 2, 2)
        )
        self.tree = shapely.STRtree(edges)
        self.grid = CandidateGrid.build(self)

    def __len__(self) -> int:
        return len(self.segments)

    @property
    def countries(self) -> frozenset[str]:
        """The alpha-2 codes of every country on either side of any segment."""
        return frozenset(self.left_a2) | frozenset(self.right_a2)

    def plane_foot(
        self, lon: FloatArray, lat: FloatArray, *, kx: FloatArray, ky: FloatArray, edge: IntArray
    ) -> tuple[FloatArray, FloatArray]:
        """Squared planar distance from each point to its edge, and the foot's parameter t in [0, 1].

        The plane is centred on the point with ``kx``, ``ky`` metres per degree (geodesy's local
        plane): affine in lon/lat, so the edge is exactly straight in it.
        """
        # In place throughout: on millions of pairs, fresh temporaries cost more than the maths.
        x = self.ax[edge]
        x -= lon
        x *= kx
        y = self.ay[edge]
        y -= lat
        y *= ky
        dx = self.dlon[edge]
        dx *= kx
        dy = self.dlat[edge]
        dy *= ky
        t = x * dx
        scratch = y * dy
        t += scratch
        length2 = dx * dx
        np.multiply(dy, dy, out=scratch)
        length2 += scratch
        np.maximum(length2, np.finfo(np.float64).tiny, out=length2)  # a zero-length edge: t = 0
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

    def _neighbours(self) -> tuple[IntArray, IntArray]:
        """The edge before and after each edge along its line, or -1 at a line's end.

        Within a segment that is the next index; across segments, the edge whose start coordinate
        equals this edge's end (consecutive segments share their end/start coordinate exactly).
        """
        n = len(self.ax)
        prev_edge = np.arange(-1, n - 1, dtype=np.int64)
        next_edge = np.arange(1, n + 1, dtype=np.int64)
        first = np.ones(n, dtype=bool)
        first[1:] = self.segment_of_edge[1:] != self.segment_of_edge[:-1]
        last = np.ones(n, dtype=bool)
        last[:-1] = first[1:]
        starts = {
            (self.ax[i], self.ay[i], self.segments[self.segment_of_edge[i]].border): int(i)
            for i in np.flatnonzero(first)
        }
        ends = {
            (self.bx[i], self.by[i], self.segments[self.segment_of_edge[i]].border): int(i)
            for i in np.flatnonzero(last)
        }
        for i in np.flatnonzero(last):
            next_edge[i] = starts.get(
                (self.bx[i], self.by[i], self.segments[self.segment_of_edge[i]].border), -1
            )
        for i in np.flatnonzero(first):
            prev_edge[i] = ends.get(
                (self.ax[i], self.ay[i], self.segments[self.segment_of_edge[i]].border), -1
            )
        return prev_edge, next_edge


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
        kx, ky = metres_per_degree(clat)
        d2, _ = index.plane_foot(
            clon[pair_node], clat[pair_node], kx=kx[pair_node], ky=ky[pair_node], edge=pair_edge
        )
        planar = np.sqrt(d2)
        least = np.full(len(west), np.inf)
        np.minimum.at(least, pair_node, planar)
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
