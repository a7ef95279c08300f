"""Load and read border segments."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

import orjson

from service.domain.errors import BorderChanged, InvalidSegmentFile, SegmentNotFound
from service.domain.reports import SnapResult
from service.domain.segments import (
    BorderSegment,
    SegmentIndex,
    border_fingerprint,
    parse_segment_collection,
)
from service.domain.snapping import snap
from service.resources import bundled_segments_path
from service.storage.base import BorderStore, OnProgress, SegmentStore

DEFAULT_REACH_M = 25_000.0  # CROSSINGS_MAX_SNAP_DISTANCE_M's default


def read_segment_file(path: Path) -> SegmentIndex:
    """Parse and check a segment file, indexed (a set the service could not snap to is refused
    before it is stored); raise InvalidSegmentFile naming what is wrong."""
    return SegmentIndex(_parse_segment_file(path))


def _parse_segment_file(path: Path) -> list[BorderSegment]:
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise InvalidSegmentFile(f"cannot read {path}: {error.strerror}") from error
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise InvalidSegmentFile(f"{path} is not JSON: {error}") from error
    return parse_segment_collection(doc)


def load_segments(
    store: BorderStore,
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
    store: BorderStore,
    index: SegmentIndex,
    *,
    max_distance_m: float,
    on_progress: OnProgress | None = None,
    expected_version: int | None = None,
) -> int:
    """Make ``index`` the stored border, re-snapping every report to it and recounting what
    counts them; return how many were re-snapped. With ``expected_version``, raise
    BorderChanged (nothing changed) if another process replaced the border meanwhile."""

    def resnap(lons: list[float], lats: list[float]) -> list[SnapResult]:
        return snap(lons, lats, index, max_distance_m=max_distance_m)

    resnapped = store.replace_border(
        index.segments, resnap, on_progress=on_progress, expected_version=expected_version
    )
    recount_after_border_change(store)
    return resnapped


def recount_after_border_change(store: BorderStore) -> None:
    """Recount what is derived from the reports' snaps and is not kept by the store's own border
    transaction. Every border change (``segments load``, the bundled border's upgrade, the first
    load into an empty store) comes through here, after that transaction has committed.

    The report rollups (tile cells, segment totals, day and month counts) are already recounted
    inside ``store.replace_border``. The public release counts by segment: it is cut again at
    once over the same days, so that no public figure stays on segments that are gone.
    Surge series are replayed from the new counts, and alerts on series now gone are closed.
    """
    info = store.release_info()
    if info is not None:
        store.cut_release(info.through, datetime.now(UTC))
    # Surges count by segment and region too: every series is replayed on the new border.
    store.rebuild_surges(datetime.now(UTC).date())


def ensure_segments(store: BorderStore, path: Path | None) -> SegmentIndex:
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


# Fingerprints (domain.segments.border_fingerprint) of the borders that earlier releases bundled
# and loaded into a new store, with their number of segments. A store holding one of them holds
# the bundled border of its day, not a border its operator chose: upgrade_bundled_border may
# replace it.
PREVIOUS_BUNDLED_BORDERS: Mapping[str, tuple[int, str]] = {
    "ae3fa734cccfabce6e65f9ad5df3e54df4c8cda9c2f6c98f9ecc44d4e9327969": (
        457,
        "Canada-US from the IBC list, Mexico-US from Natural Earth 1:10m (before issue #15)",
    ),
}


class BorderUpgrade(StrEnum):
    EMPTY = "empty"  # no border stored: the first start loads the bundled one
    UPGRADED = "upgraded"  # an earlier bundled border was replaced by this release's
    KEPT = "kept"  # not an earlier release's bundled border (this release's, or the operator's)


@dataclass(frozen=True, slots=True)
class BorderUpgradeResult:
    outcome: BorderUpgrade
    resnapped: int = 0
    previous: str | None = None  # what the replaced border was (PREVIOUS_BUNDLED_BORDERS)
    segments: int = 0  # segments of the border now stored


def upgrade_bundled_border(
    store: BorderStore,
    *,
    max_distance_m: float,
    on_progress: OnProgress | None = None,
    bundled: Path | None = None,
) -> BorderUpgradeResult:
    """Bring a store from an earlier release's bundled border to this release's.

    Only a border that is exactly one an earlier release bundled is replaced (by its
    fingerprint); a border the operator loaded is never touched. The replacement is
    ``replace_border``'s: every stored report re-snapped, every rollup recounted, in one
    transaction; then ``recount_after_border_change``. Safe to run from several processes at
    once: the border's version is compared in that transaction, and a process that finds the
    border already replaced looks again instead of replacing it twice. Cheap when there is
    nothing to do and the number of segments tells so (every start of ``crossings serve``).
    """
    sizes = {size for size, _ in PREVIOUS_BUNDLED_BORDERS.values()}
    while True:
        count = store.count_segments()
        if count == 0:
            return BorderUpgradeResult(BorderUpgrade.EMPTY)
        if count not in sizes:
            return BorderUpgradeResult(BorderUpgrade.KEPT, segments=count)
        version = store.border_version()
        previous = PREVIOUS_BUNDLED_BORDERS.get(border_fingerprint(store.list_segments()))
        if previous is None:
            return BorderUpgradeResult(BorderUpgrade.KEPT, segments=count)
        index = read_segment_file(bundled or bundled_segments_path())
        try:
            resnapped = replace_border(
                store,
                index,
                max_distance_m=max_distance_m,
                on_progress=on_progress,
                expected_version=version,
            )
        except BorderChanged:
            continue  # another process changed the border meanwhile: judge what it left
        return BorderUpgradeResult(BorderUpgrade.UPGRADED, resnapped, previous[1], len(index))
