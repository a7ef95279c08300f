"""Reading a segment file: what is accepted, and how a bad feature is named when refused."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import pytest

from service.domain.errors import InvalidSegmentFile
from service.domain.segments import parse_segment_collection


def feature(segment_id: str, coords: list[list[float]]) -> dict[str, Any]:
    return {
        "type": "Feature",
        "properties": {
            "segment_id": segment_id,
            "border": "CA-US",
            "start_km": 0.0,
            "end_km": 1.0,
            "left_country": "CAN",
            "right_country": "USA",
        },
        "geometry": {"type": "LineString", "coordinates": coords},
    }


def collection() -> dict[str, Any]:
    return {
        "type": "FeatureCollection",
        "features": [
            feature("CA-US-0001", [[-123.0, 49.0], [-122.99, 49.0]]),
            feature("CA-US-0002", [[-122.99, 49.0], [-122.98, 49.0]]),
        ],
    }


def test_a_valid_collection_gives_its_segments_in_order() -> None:
    segments = parse_segment_collection(collection())

    assert [s.segment_id for s in segments] == ["CA-US-0001", "CA-US-0002"]
    assert segments[1].coords == ((-122.99, 49.0), (-122.98, 49.0))
    assert segments[0].left_country == "CAN"


@pytest.mark.parametrize("doc", [[], "x", {"type": "Feature"}, {"features": []}])
def test_a_document_that_is_not_a_feature_collection_is_refused(doc: object) -> None:
    with pytest.raises(InvalidSegmentFile, match="not a GeoJSON FeatureCollection"):
        parse_segment_collection(doc)


def set_geometry_type(doc: dict[str, Any]) -> None:
    doc["features"][1]["geometry"] = {"type": "Point", "coordinates": [-122.99, 49.0]}


def drop_segment_id(doc: dict[str, Any]) -> None:
    del doc["features"][1]["properties"]["segment_id"]


def repeat_segment_id(doc: dict[str, Any]) -> None:
    doc["features"][1]["properties"]["segment_id"] = "CA-US-0001"


def coordinate(value: object, *, at: int = 1) -> Callable[[dict[str, Any]], None]:
    def mutate(doc: dict[str, Any]) -> None:
        doc["features"][1]["geometry"]["coordinates"][1][at] = value

    return mutate


def single_position(doc: dict[str, Any]) -> None:
    doc["features"][1]["geometry"]["coordinates"] = [[-122.99, 49.0]]


@pytest.mark.parametrize(
    ("mutate", "names", "reason"),
    [
        (set_geometry_type, "feature 1 (CA-US-0002)", "must be a LineString, not Point"),
        (drop_segment_id, "feature 1", "missing segment_id"),
        (repeat_segment_id, "feature 1", "duplicate segment_id 'CA-US-0001'"),
        (coordinate(95.0), "feature 1 (CA-US-0002)", "bad position"),
        (coordinate(-181.0, at=0), "feature 1 (CA-US-0002)", "bad position"),
        (coordinate(math.nan), "feature 1 (CA-US-0002)", "bad position"),
        (coordinate("49"), "feature 1 (CA-US-0002)", "bad position"),
        (single_position, "feature 1 (CA-US-0002)", "at least two positions"),
    ],
    ids=[
        "geometry-type",
        "missing-id",
        "duplicate-id",
        "latitude-out-of-range",
        "longitude-out-of-range",
        "not-finite",
        "not-a-number",
        "one-position",
    ],
)
def test_a_bad_feature_is_refused_by_name(
    mutate: Callable[[dict[str, Any]], None], names: str, reason: str
) -> None:
    doc = copy.deepcopy(collection())
    mutate(doc)

    with pytest.raises(InvalidSegmentFile) as refused:
        parse_segment_collection(doc)

    assert refused.value.detail.startswith(names + ":")
    assert reason in refused.value.detail
