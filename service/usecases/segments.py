"""Load and read border segments."""

from __future__ import annotations

from pathlib import Path

import orjson

from service.domain.errors import InvalidSegmentFile, SegmentNotFound
from service.domain.segments import BorderSegment, SegmentIndex, parse_segment_collection
from service.resources import bundled_segments_path
from service.storage.base import SegmentStore


def read_segment_file(path: Path) -> SegmentIndex:
    """Parse and check a segment file, indexed (a set the service could not snap to is refused
    before it is stored); raise InvalidSegmentFile naming what is wrong."""
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise InvalidSegmentFile(f"cannot read {path}: {error.strerror}") from error
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise InvalidSegmentFile(f"{path} is not JSON: {error}") from error
    return SegmentIndex(parse_segment_collection(doc))


def load_segments(store: SegmentStore, path: Path) -> SegmentIndex:
    """Replace the stored segment set with the file's, all or nothing; return its index."""
    index = read_segment_file(path)
    store.replace_segments(index.segments)
    return index


def ensure_segments(store: SegmentStore, path: Path | None) -> SegmentIndex:
    """The index of the stored border, loading the given (or bundled) file into an empty store."""
    if store.count_segments() == 0:
        return load_segments(store, path or bundled_segments_path())
    return SegmentIndex(store.list_segments())


def get_segment(index: SegmentIndex, segment_id: str) -> BorderSegment:
    segment = index.by_id.get(segment_id)
    if segment is None:
        raise SegmentNotFound(f"no segment with id {segment_id!r}")
    return segment
