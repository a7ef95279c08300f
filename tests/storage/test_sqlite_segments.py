"""SqliteStore segments: exact round trips in load order, and all-or-nothing replacement."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from service.domain.errors import InvalidSegmentFile
from service.domain.segments import BorderSegment, parse_segment_collection
from service.storage.sqlite import SqliteStore
from tests import factories

BUNDLED_SEGMENTS = Path(__file__).parents[2] / "data" / "border_segments.geojson"


def make_segment(segment_id: str, **properties: Any) -> BorderSegment:
    return factories.make_segment(
        segment_id,
        coords=((26.0, 41.0), (26.1 + 1e-9, 41.2)),
        properties={"segment_id": segment_id, "section": "Evros", **properties},
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    opened = SqliteStore.open(f"sqlite:///{tmp_path / 'crossings.db'}")
    yield opened
    opened.close()


def test_new_store_has_no_segments(store: SqliteStore) -> None:
    assert store.count_segments() == 0
    assert store.list_segments() == []


def test_bundled_segments_read_back_equal_in_load_order(store: SqliteStore) -> None:
    segments = parse_segment_collection(json.loads(BUNDLED_SEGMENTS.read_text()))
    store.replace_segments(segments)
    assert store.count_segments() == len(segments)
    assert store.list_segments() == segments


def test_nested_properties_and_coordinates_read_back_exactly(store: SqliteStore) -> None:
    segment = make_segment("a", nested={"x": [1, 2.5, None]}, big=2**53 + 1, text="Ἕβρος")
    store.replace_segments([segment])
    [stored] = store.list_segments()
    assert stored == segment
    assert stored.coords[1][0].hex() == (26.1 + 1e-9).hex()
    assert stored.section == "Evros"


def test_replacing_segments_drops_the_old_set(store: SqliteStore) -> None:
    store.replace_segments([make_segment("a"), make_segment("b")])
    store.replace_segments([make_segment("c")])
    assert [s.segment_id for s in store.list_segments()] == ["c"]


def test_segment_set_with_a_repeated_id_leaves_the_old_set(store: SqliteStore) -> None:
    old = [make_segment("a"), make_segment("b")]
    store.replace_segments(old)
    with pytest.raises(InvalidSegmentFile):
        store.replace_segments([make_segment("c"), make_segment("d"), make_segment("c")])
    assert store.list_segments() == old


def test_failure_midway_through_a_replacement_leaves_the_old_set(store: SqliteStore) -> None:
    old = [make_segment("a")]
    store.replace_segments(old)
    unstorable = make_segment("y", when=object())  # fails after "x" has been inserted
    with pytest.raises(InvalidSegmentFile, match="'y'"):
        store.replace_segments([make_segment("x"), unstorable, make_segment("z")])
    assert store.list_segments() == old
