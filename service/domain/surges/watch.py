"""Which series are watched, and what one day's counts do to them (issue #19).

A series is a place (a segment, its region, its border), by kind (or every kind together), by
measure (reports or people), counted per UTC day. The stores call ``day_counts`` with the counts
of a day the reports just counted touched, ``watch`` with the states of the series of that day,
and keep what it returns: the new states and the episode changes (which become alerts).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date

from service.domain.segments import BorderSegment
from service.domain.surges.cusum import SurgeParams, params_for
from service.domain.surges.series import EpisodeEvent, SeriesState, observe

ALL_KINDS = "*"
LEVELS = ("segment", "region", "border")
MEASURES = ("reports", "people")


@dataclass(frozen=True, slots=True, order=True)
class SeriesKey:
    level: str  # one of LEVELS
    place: str  # the segment id, region or border
    kind: str  # a report kind, or ALL_KINDS
    measure: str  # one of MEASURES

    @property
    def text(self) -> str:
        """The key as stored: ``level|place|kind|measure``."""
        return f"{self.level}|{self.place}|{self.kind}|{self.measure}"

    @classmethod
    def parse(cls, text: str) -> SeriesKey:
        level, place, kind, measure = text.split("|")
        return cls(level, place, kind, measure)


def region_of(segment: BorderSegment) -> str:
    """A segment's region: its file's ``region_pair``, else its section (as aggregates group)."""
    return str(segment.properties.get("region_pair") or segment.section)


def places_of(segment: BorderSegment) -> tuple[tuple[str, str], ...]:
    return (
        ("segment", segment.segment_id),
        ("region", region_of(segment)),
        ("border", segment.border),
    )


def watched_series(segments: Sequence[BorderSegment], kinds: Sequence[str]) -> int:
    """How many series the border and kinds make: the number the false-alert budget is spent over."""
    places = {place for segment in segments for place in places_of(segment)}
    return len(places) * (len(kinds) + 1) * len(MEASURES)


def surge_params(
    segments: Sequence[BorderSegment], kinds: Sequence[str], *, false_alerts_per_week: float
) -> SurgeParams:
    return params_for(
        false_alerts_per_week=false_alerts_per_week, series=max(1, watched_series(segments, kinds))
    )


def day_counts(
    rows: Iterable[tuple[str, str, int, int]], segments: Mapping[str, BorderSegment]
) -> dict[SeriesKey, int]:
    """Every series' count of one day, from that day's (segment_id, kind, reports, people) rows.

    Reports beyond the border (no segment) belong to no series."""
    counts: dict[SeriesKey, int] = defaultdict(int)
    for segment_id, kind, reports, people in rows:
        segment = segments.get(segment_id)
        if segment is None:
            continue
        for level, place in places_of(segment):
            for k in (kind, ALL_KINDS):
                counts[SeriesKey(level, place, k, "reports")] += reports
                counts[SeriesKey(level, place, k, "people")] += people
    return dict(counts)


def series_of(
    segment_kinds: Iterable[tuple[str, str]], segments: Mapping[str, BorderSegment]
) -> set[SeriesKey]:
    """The series that reports of these (segment_id, kind) pairs count in."""
    out: set[SeriesKey] = set()
    for segment_id, kind in segment_kinds:
        segment = segments.get(segment_id)
        if segment is None:
            continue
        for level, place in places_of(segment):
            for k in (kind, ALL_KINDS):
                for measure in MEASURES:
                    out.add(SeriesKey(level, place, k, measure))
    return out


@dataclass(frozen=True, slots=True)
class SeriesChange:
    key: SeriesKey
    state: SeriesState
    events: tuple[EpisodeEvent, ...]


def watch(
    day: date,
    touched: Iterable[SeriesKey],
    counts: Mapping[SeriesKey, int],
    states: Mapping[SeriesKey, SeriesState],
    params: SurgeParams,
) -> list[SeriesChange]:
    """Set ``day``'s whole count of each touched series (zero if it has none: a deletion can empty
    a day); the series whose state changed, with the episode changes it made, in key order."""
    changes: list[SeriesChange] = []
    for key in sorted(set(touched)):
        before = states.get(key)
        after, events = observe(before, day=day, count=counts.get(key, 0), params=params)
        if after != before:
            changes.append(SeriesChange(key, after, tuple(events)))
    return changes
