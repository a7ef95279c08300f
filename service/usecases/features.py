"""Features for GIS clients (OGC API - Features): pages of reports or segments, and extents."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

import shapely

from service.domain.errors import NotFound
from service.domain.reports import Report
from service.domain.segments import BorderSegment, SegmentIndex
from service.storage.base import Extent, ReportPage, ReportQuery, ReportStore

# numberMatched is counted only on a first page and only up to this many: exact and cheap for a
# filtered query, omitted (as OGC allows) rather than counting a million rows on every page.
COUNT_CAP = 10_000


class CollectionNotFound(NotFound):
    pass


class FeatureNotFound(NotFound):
    pass


@dataclass(frozen=True, slots=True)
class ReportItems:
    page: ReportPage
    number_matched: int | None


def report_items(store: ReportStore, query: ReportQuery) -> ReportItems:
    page = store.query_reports(query)
    matched: int | None = None
    if query.after is None:
        if page.next_key is None:
            matched = len(page.reports)
        else:
            counted = store.count_reports(query, cap=COUNT_CAP)
            matched = counted if counted < COUNT_CAP else None
    return ReportItems(page=page, number_matched=matched)


def report_item(store: ReportStore, report_id: str) -> Report:
    try:
        key = UUID(report_id)
    except ValueError as error:
        raise FeatureNotFound(f"no report with id {report_id!r}") from error
    report = store.get_report(key)
    if report is None:
        raise FeatureNotFound(f"no report with id {report_id!r}")
    return report


def report_extent(store: ReportStore) -> Extent:
    return store.report_extent()


def segment_items(
    index: SegmentIndex,
    *,
    bbox: tuple[float, float, float, float] | None,
    filters: dict[str, str],
) -> list[BorderSegment]:
    """Segments in load order, those whose line meets the box (edges inclusive) and filters."""
    chosen = [
        s
        for s in index.segments
        if all(
            str(s.properties.get(k) if k != "segment_id" else s.segment_id) == v
            for k, v in filters.items()
        )
    ]
    if bbox is None:
        return chosen
    box = shapely.box(*bbox)
    lines = shapely.linestrings([list(s.coords) for s in chosen]) if chosen else []
    hits = shapely.intersects(lines, box) if chosen else []
    return [s for s, hit in zip(chosen, hits, strict=True) if hit]


def segment_item(index: SegmentIndex, segment_id: str) -> BorderSegment:
    segment = index.by_id.get(segment_id)
    if segment is None:
        raise FeatureNotFound(f"no segment with id {segment_id!r}")
    return segment


def border_segments(index: SegmentIndex) -> dict[str, frozenset[str]]:
    """Segment ids by border: a report's border is its segment's."""
    out: dict[str, set[str]] = {}
    for s in index.segments:
        out.setdefault(s.border, set()).add(s.segment_id)
    return {k: frozenset(v) for k, v in out.items()}
