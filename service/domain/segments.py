"""Border segments: parsing a segment file, and the in-memory edge index snapping runs on."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import shapely

from service.domain.candidate_grid import CandidateGrid
from service.domain.chains import Chains
from service.domain.countries import ALPHA3_TO_ALPHA2
from service.domain.errors import InvalidSegmentFile
from service.domain.geodesy import (
    GEOD,
    FloatArray,
    IntArray,
    plane_foot,
)

REQUIRED_PROPERTIES = (
    "segment_id",
    "border",
    "start_km",
    "end_km",
    "left_country",
    "right_country",
)


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

    @property
    def region(self) -> str:
        """The file's ``region_pair``, else the section: never empty."""
        return str(self.properties.get("region_pair") or self.section)

    def value_of(self, key: str) -> str:
        """The segment's value of a grouping key: ``segment``, ``section``, ``border`` or
        ``region`` (domain/aggregation.py's SEGMENT_KEYS)."""
        if key == "segment":
            return self.segment_id
        if key == "section":
            return self.section
        if key == "border":
            return self.border
        return self.region


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


def border_fingerprint(segments: Iterable[BorderSegment]) -> str:
    """A digest of a segment set's ids, order, countries, chainage and geometry (to 1e-7 degree),
    the same whether the set was read from a file or back from either store.

    Tells which border a store holds (e.g. the one an earlier release bundled) without keeping
    where it came from. The free-form properties are left out: stores may reorder their keys.
    """
    digest = hashlib.sha256()
    for s in segments:
        head = f"{s.segment_id}|{s.border}|{s.left_country}|{s.right_country}"
        digest.update(f"{head}|{s.start_km:.6f}|{s.end_km:.6f}|{len(s.coords)}\n".encode())
        digest.update(
            np.round(np.asarray(s.coords, dtype=np.float64) * 1e7).astype("<i8").tobytes()
        )
    return digest.hexdigest()


class SegmentIndex:
    """Every edge of every segment as flat arrays, with the lookups snapping runs on.

    Snapping works per edge, not per segment: edges are short (<= 5 km in the bundled data), so the
    line between two vertices, drawn straight in lon/lat as GeoJSON draws it, is what we measure to.
    """

    def __init__(self, segments: Sequence[BorderSegment], *, version: int | None = None) -> None:
        self.segments: tuple[BorderSegment, ...] = tuple(segments)
        # The stored border's version these segments are (None: not read from a store).
        self.version = version
        self.by_id: dict[str, BorderSegment] = {s.segment_id: s for s in self.segments}
        # Whole arrays, one Geod.inv for every edge: Python lists of numpy scalars cost a tenth
        # of a second of start-up on a border of 50,000 vertices.
        coords = [np.asarray(seg.coords, dtype=np.float64).reshape(-1, 2) for seg in self.segments]
        starts: FloatArray = (
            np.concatenate([c[:-1] for c in coords]) if coords else np.zeros((0, 2))
        )
        ends: FloatArray = np.concatenate([c[1:] for c in coords]) if coords else np.zeros((0, 2))
        self.ax: FloatArray = starts[:, 0].copy()
        self.ay: FloatArray = starts[:, 1].copy()
        self.bx: FloatArray = ends[:, 0].copy()
        self.by: FloatArray = ends[:, 1].copy()
        self.dlon: FloatArray = self.bx - self.ax
        self.dlat: FloatArray = self.by - self.ay
        edges_per_segment = [len(c) - 1 for c in coords]
        self.segment_of_edge: IntArray = np.repeat(
            np.arange(len(coords), dtype=np.int64), edges_per_segment
        )
        _, _, length_m = GEOD.inv(self.ax, self.ay, self.bx, self.by)
        self.length_m: FloatArray = np.asarray(length_m, dtype=np.float64)
        # Each segment's edges start this far along it: its lengths summed in order.
        self.offset_m: FloatArray = np.zeros(len(self.ax))
        first = 0
        for count in edges_per_segment:
            self.offset_m[first + 1 : first + count] = np.cumsum(
                self.length_m[first : first + count - 1]
            )
            first += count
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
        self._countries = frozenset(self.left_a2) | frozenset(self.right_a2)
        by_border: dict[str, set[str]] = {}
        for seg in self.segments:
            by_border.setdefault(seg.border, set()).add(seg.segment_id)
        self.segment_ids_by_border = {k: frozenset(v) for k, v in by_border.items()}
        xs, ys = np.concatenate([self.ax, self.bx]), np.concatenate([self.ay, self.by])
        self.bounds = (
            (float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max()))
            if len(xs)
            else None
        )
        self.chains = Chains.of(self)
        self.grid = CandidateGrid.build(self)

    def __len__(self) -> int:
        return len(self.segments)

    @cached_property
    def tree(self) -> shapely.STRtree:
        """An STRtree over the edges, for the few points the candidate grid leaves to it: built on
        first use, not at start-up."""
        edges = shapely.linestrings(
            np.stack([self.ax, self.ay, self.bx, self.by], axis=1).reshape(-1, 2, 2)
        )
        return shapely.STRtree(edges)

    @property
    def countries(self) -> frozenset[str]:
        """The alpha-2 codes of every country on either side of any segment."""
        return self._countries

    def plane_foot(
        self, lon: FloatArray, lat: FloatArray, *, kx: FloatArray, ky: FloatArray, edge: IntArray
    ) -> tuple[FloatArray, FloatArray]:
        """Squared planar distance from each point to its edge, and the foot's parameter t in [0, 1]
        (see ``plane_foot``)."""
        return plane_foot(
            (self.ax, self.ay, self.dlon, self.dlat), lon, lat, kx=kx, ky=ky, line=edge
        )

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
