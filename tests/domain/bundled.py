"""The bundled border, loaded once per test run (hypothesis strategies need it outside fixtures),
and a strategy for points near its Rio Grande."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import strategies as st

from service.domain.segments import BorderSegment, SegmentIndex, parse_segment_collection

from .brute_force import GEOD, Edges

REPO = Path(__file__).resolve().parents[2]


@cache
def segments() -> tuple[BorderSegment, ...]:
    doc = json.loads((REPO / "data" / "border_segments.geojson").read_text())
    return tuple(parse_segment_collection(doc))


@cache
def index() -> SegmentIndex:
    return SegmentIndex(segments())


@cache
def edges() -> Edges:
    return Edges.of(segments())


@cache
def known_places() -> tuple[dict[str, Any], ...]:
    """The published crossing places with their brute-force-derived snap figures."""
    doc = json.loads((REPO / "data" / "known_places.geojson").read_text())
    return tuple(doc["features"])


@cache
def rio_grande() -> list[int]:
    """The numbers of the Rio Grande's segments."""
    return [
        number
        for number, segment in enumerate(segments())
        if segment.segment_id >= "MX-US-0046" and segment.border == "MX-US"
    ]


@st.composite
def near_the_river(draw: st.DrawFn) -> tuple[float, float]:
    """A point up to 10 km from a random point of the Rio Grande, where leaves list chains."""
    border = index()
    segment = draw(st.sampled_from(rio_grande()))
    on_segment = np.flatnonzero(border.segment_of_edge == segment)
    edge = draw(st.integers(int(on_segment[0]), int(on_segment[-1])))
    t = draw(st.floats(0.0, 1.0))
    offset = draw(st.one_of(st.floats(0.0, 50.0), st.floats(0.0, 2_000.0), st.floats(0.0, 1e4)))
    azimuth = draw(st.floats(0.0, 360.0, exclude_max=True))
    x = border.ax[edge] + t * border.dlon[edge]
    y = border.ay[edge] + t * border.dlat[edge]
    lon, lat, _ = GEOD.fwd(float(x), float(y), azimuth, offset)
    return float(lon), float(lat)
