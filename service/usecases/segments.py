"""Load and read border segments."""

from __future__ import annotations

import threading
from pathlib import Path

import orjson

from service.domain.errors import InvalidSegmentFile, SegmentNotFound
from service.domain.reports import SnapResult
from service.domain.segments import BorderSegment, SegmentIndex, parse_segment_collection
from service.domain.snapping import snap
from service.resources import bundled_segments_path
from service.storage.base import OnProgress, SegmentStore

DEFAULT_REACH_M = 25_000.0  # CROSSINGS_MAX_SNAP_DISTANCE_M's default


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


def load_segments(
    store: SegmentStore,
    path: Path,
    *,
    max_distance_m: float = DEFAULT_REACH_M,
    on_progress: OnProgress | None = None,
) -> SegmentIndex:
    """Replace the stored border with the file's, all or nothing: every stored report is
    re-snapped to it and the rollups recounted in the same transaction, so aggregates never mix
    two versions of the border. Returns the new border's index."""
    index = read_segment_file(path)
    replace_border(store, index, max_distance_m=max_distance_m, on_progress=on_progress)
    return index


def replace_border(
    store: SegmentStore,
    index: SegmentIndex,
    *,
    max_distance_m: float,
    on_progress: OnProgress | None = None,
) -> int:
    """Make ``index`` the stored border, re-snapping every report to it; return how many."""

    def resnap(lons: list[float], lats: list[float]) -> list[SnapResult]:
        return snap(lons, lats, index, max_distance_m=max_distance_m)

    return store.replace_border(index.segments, resnap, on_progress=on_progress)


def ensure_segments(store: SegmentStore, path: Path | None) -> SegmentIndex:
    """The index of the stored border, loading the given (or bundled) file into an empty store."""
    if store.count_segments() == 0:
        load_segments(store, path or bundled_segments_path())
    return stored_border(store)


def stored_border(store: SegmentStore) -> SegmentIndex:
    """The stored border, indexed, with its version (read again until it stays the same across
    the read, so that segments and version belong together)."""
    version = store.border_version()
    while True:
        segments = store.list_segments()
        again = store.border_version()
        if again == version:
            return SegmentIndex(segments, version=version)
        version = again


class CurrentBorder:
    """The border a server snaps to and reads by. Another process may load a new one
    (``crossings segments load``): ``refresh`` takes it up, one reader at a time, and never goes
    back to an older version."""

    def __init__(self, store: SegmentStore, index: SegmentIndex) -> None:
        self._store = store
        self._lock = threading.Lock()
        self.index = index

    def refresh(self, *, stale: SegmentIndex | None = None) -> SegmentIndex:
        """The stored border, read again only when its version moved. With ``stale`` (the border
        an ingest found replaced), a newer one already taken up by another request is returned
        as it is: a batch of requests that all found the change read the border once."""
        with self._lock:
            current = self.index
            if stale is not None and current.version != stale.version:
                return current
            if self._store.border_version() == current.version:
                return current
            fresh = stored_border(self._store)
            if current.version is None or (fresh.version or 0) > current.version:
                self.index = fresh
            return self.index


def get_segment(index: SegmentIndex, segment_id: str) -> BorderSegment:
    segment = index.by_id.get(segment_id)
    if segment is None:
        raise SegmentNotFound(f"no segment with id {segment_id!r}")
    return segment
