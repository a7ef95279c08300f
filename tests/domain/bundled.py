"""The bundled border, loaded once per test run (hypothesis strategies need it outside fixtures)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from service.domain.segments import BorderSegment, SegmentIndex, parse_segment_collection

from .brute_force import Edges

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
