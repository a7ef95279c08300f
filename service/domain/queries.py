"""What a caller asks of the stored reports, and the pages it gets back: the words the API,
the use cases and both stores share."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from service.domain.filters import Filter
from service.domain.reports import Report


@dataclass(frozen=True, slots=True)
class PageKey:
    """Where a page ends in the stable order (observed_at, id): the next page starts after it."""

    observed_at: datetime
    id: UUID


@dataclass(frozen=True, slots=True)
class ReportQuery:
    """Filters for listing reports. ``bbox`` is (min_lon, min_lat, max_lon, max_lat), inclusive,
    with min <= max (callers refuse boxes across the antimeridian); ``start`` is inclusive and
    ``end`` exclusive on observed_at."""

    bbox: tuple[float, float, float, float] | None = None
    start: datetime | None = None
    end: datetime | None = None
    segment_id: str | None = None
    segment_ids: frozenset[str] | None = None  # any of these (a border is its segments)
    kind: str | None = None
    direction: str | None = None
    limit: int = 100
    after: PageKey | None = None
    descending: bool = False  # newest first; ``after`` then means "older than"
    posted_by: str | None = None  # only reports that came in with this key
    filter: Filter | None = None  # only reports it selects (OGC API - Features Part 3)

    def filters_nothing(self, *, but_bbox: bool = False) -> bool:
        """Whether this query selects every report (every report in its box, with
        ``but_bbox``): paging and order aside, it is the empty query, so any filter added to this
        class later counts as one."""
        bbox = self.bbox if but_bbox else None
        return self == ReportQuery(
            bbox=bbox, limit=self.limit, after=self.after, descending=self.descending
        )


@dataclass(frozen=True, slots=True)
class Extent:
    """Where and when the stored reports lie; all None when there are none."""

    bbox: tuple[float, float, float, float] | None
    first_observed: datetime | None
    last_observed: datetime | None


@dataclass(frozen=True, slots=True)
class ReportPage:
    reports: list[Report]
    next_key: PageKey | None
