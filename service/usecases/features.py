"""Features for GIS clients (OGC API - Features): pages of reports or segments, and extents."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

import shapely

from service.domain.access import AuditEntry
from service.domain.errors import FeatureNotFound
from service.domain.queries import Extent, ReportPage, ReportQuery
from service.domain.reports import Report
from service.domain.segments import BorderSegment, SegmentIndex
from service.storage.base import ReportStore


@dataclass(frozen=True, slots=True)
class ReportItems:
    page: ReportPage
    number_matched: int | None


def report_items(
    store: ReportStore, query: ReportQuery, *, audit: AuditEntry | None = None
) -> ReportItems:
    """A page, and on a first page numberMatched when it is exact and cheap: the page itself when
    it is also the last; else the store's count when its rollups give it (no filter, or a box
    alone: store.count_matched), so QGIS knows the size at once.

    Counting the reports themselves is not cheap even when capped (PostgreSQL builds a box's
    whole index bitmap before a LIMIT can stop it: 13 of 18 ms on a hot-spot page in
    bench/features.py), so where the rollups do not say, it is omitted, as OGC allows. Later
    pages omit it too: clients read it from the first.
    """
    page = store.query_reports(query, audit=audit)
    if query.after is not None:
        return ReportItems(page=page, number_matched=None)
    if page.next_key is None:
        return ReportItems(page=page, number_matched=len(page.reports))
    return ReportItems(page=page, number_matched=store.count_matched(query))


def report_item(store: ReportStore, report_id: str, *, posted_by: str | None = None) -> Report:
    try:
        key = UUID(report_id)
    except ValueError as error:
        raise FeatureNotFound(f"no report with id {report_id!r}") from error
    report = store.get_report(key, posted_by=posted_by)
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
    # One LineString each: segments have different numbers of vertices (shapely.linestrings
    # over the ragged list raised, and any box on the segments answered 500).
    lines = [shapely.LineString(s.coords) for s in chosen]
    hits = shapely.intersects(lines, box) if chosen else []
    return [s for s, hit in zip(chosen, hits, strict=True) if hit]


def segment_item(index: SegmentIndex, segment_id: str) -> BorderSegment:
    segment = index.by_id.get(segment_id)
    if segment is None:
        raise FeatureNotFound(f"no segment with id {segment_id!r}")
    return segment
