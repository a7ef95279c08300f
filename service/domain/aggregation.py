"""Aggregates: time buckets in any IANA zone, and how to count each bucket exactly from rollups
kept per UTC day and UTC month plus the reports themselves for what is left.

A bucket is a half-open UTC interval [a, b) (a local day, week, month, quarter or year, clipped to
the requested window). It is counted as signed parts: whole UTC months from the month rollup,
whole UTC days from the day rollup, and ranges of the reports table, added or taken away. For
each grain, the interval's ends move to the nearest boundary of that grain; the rollup covers the
whole units between, and each end's difference is counted at the next grain down, added when the
bucket reaches past the boundary and taken away when it stops short. Local boundaries in a zone
that is off UTC by whole hours or by :30 or :45 (America/St_Johns, Asia/Kathmandu) just leave a
few hours of reports to count at each end; a bucket in UTC reads rollups only. Every part is
exact, so the sum is exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Literal, NamedTuple
from zoneinfo import ZoneInfo

from service.domain.errors import FieldError, InvalidParameter

Unit = Literal["day", "week", "month", "quarter", "year"]
Grain = Literal["day", "month"]
UNITS: tuple[Unit, ...] = ("day", "week", "month", "quarter", "year")
GROUP_KEYS = ("segment", "section", "border", "region", "side", "kind", "direction")
# Group keys that come from the segment a report snapped to; reports beyond reach have none.
SEGMENT_KEYS = frozenset({"segment", "section", "border", "region"})


# Named tuples, not dataclasses: a year of days makes hundreds of each per request, and a frozen
# dataclass costs four times as much to build.
class Bucket(NamedTuple):
    """One time bucket: where it starts in the requested zone, and the UTC interval it counts
    (clipped to the window)."""

    local_start: datetime | None  # None for the single bucket of an aggregate without buckets
    start: datetime
    end: datetime


class PeriodPart(NamedTuple):
    """A rollup period (a UTC day or month, by its start) counted into ``bucket`` times ``sign``."""

    grain: Grain
    period: datetime
    bucket: int
    sign: int


class RangePart(NamedTuple):
    """The reports observed in [start, end), counted into ``bucket`` times ``sign``."""

    start: datetime
    end: datetime
    bucket: int
    sign: int


def _local_floor(unit: Unit, moment: datetime) -> date:
    return period_floor(unit, moment.date())


def period_floor(unit: Unit, d: date) -> date:
    """The first day of the calendar period ``unit`` that holds ``d`` (weeks are ISO: Monday)."""
    if unit == "day":
        return d
    if unit == "week":
        return d - timedelta(days=d.weekday())
    if unit == "month":
        return d.replace(day=1)
    if unit == "quarter":
        return date(d.year, 3 * ((d.month - 1) // 3) + 1, 1)
    return date(d.year, 1, 1)


def period_after(unit: Unit, d: date) -> date:
    """The first day of the period after the one that starts at ``d``."""
    if unit == "day":
        return d + timedelta(days=1)
    if unit == "week":
        return d + timedelta(days=7)
    months = {"month": 1, "quarter": 3, "year": 12}[unit]
    index = d.year * 12 + d.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def _midnight(d: date, zone: ZoneInfo) -> datetime:
    """The instant a local date begins. Where DST skips midnight, the first instant after the gap
    (zoneinfo reads a skipped time with the offset before the gap, which lands past it)."""
    return datetime(d.year, d.month, d.day, tzinfo=zone)


MAX_BUCKETS = 10_000
_DAYS_AT_LEAST = {"day": 1, "week": 7, "month": 28, "quarter": 89, "year": 365}


def bucket_count_at_most(unit: Unit | None, start: datetime, end: datetime) -> int:
    """An upper bound of how many buckets cover [start, end)."""
    return 1 if unit is None else (end - start).days // _DAYS_AT_LEAST[unit] + 2


def buckets(unit: Unit | None, zone: ZoneInfo, start: datetime, end: datetime) -> list[Bucket]:
    """The buckets covering [start, end), in order; each local period clipped to the window.
    Refuses (InvalidParameter) a range of more than MAX_BUCKETS buckets."""
    if end <= start:
        return []
    if bucket_count_at_most(unit, start, end) > MAX_BUCKETS:
        reason = f"would make more than {MAX_BUCKETS:,} buckets: narrow start/end or take a longer bucket"
        raise InvalidParameter(f"bucket {reason}", errors=[FieldError("bucket", reason)])
    if unit is None:
        return [Bucket(None, start, end)]
    out: list[Bucket] = []
    day = _local_floor(unit, start.astimezone(zone))
    local_start = _midnight(day, zone)
    b_start = local_start.astimezone(UTC)
    while b_start < end:
        following = period_after(unit, day)
        local_end = _midnight(following, zone)
        b_end = local_end.astimezone(UTC)
        if b_end > start:
            out.append(Bucket(local_start, max(b_start, start), min(b_end, end)))
        day, local_start, b_start = following, local_end, b_end
    return out


def _boundaries(grain: Grain, moment: datetime) -> tuple[datetime, datetime]:
    """The UTC boundaries of ``grain`` at or before, and after, ``moment``."""
    floor = _floor(grain, moment)
    if grain == "day":
        return floor, floor + _DAY
    following = datetime(floor.year + floor.month // 12, floor.month % 12 + 1, 1, tzinfo=UTC)
    return floor, following


_DAY = timedelta(days=1)


def _floor(grain: Grain, moment: datetime) -> datetime:
    t = moment.astimezone(UTC)
    if grain == "day":
        return t.replace(hour=0, minute=0, second=0, microsecond=0)
    return t.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def period_end(grain: Grain, period: datetime) -> datetime:
    """The end of the UTC day or month that starts at ``period``."""
    return _boundaries(grain, period)[1]


def _nearest(grain: Grain, moment: datetime) -> datetime:
    floor = _floor(grain, moment)
    if moment == floor:  # the common case: a bucket of whole UTC days or months
        return floor
    ceiling = _boundaries(grain, floor)[1]
    return floor if moment - floor <= ceiling - moment else ceiling


def _units(grain: Grain, start: datetime, end: datetime) -> list[datetime]:
    """The starts of the whole UTC days or months in [start, end) (both boundaries)."""
    out = []
    t = start
    while t < end:
        out.append(t)
        t = t + _DAY if grain == "day" else _boundaries(grain, t)[1]
    return out


def parts(
    interval_start: datetime,
    interval_end: datetime,
    bucket: int,
    *,
    grains: Sequence[Grain] = ("month", "day"),
) -> tuple[list[PeriodPart], list[RangePart]]:
    """Signed parts whose counts add up to exactly the reports observed in [start, end)."""
    periods: list[PeriodPart] = []
    ranges: list[RangePart] = []

    def split(a: datetime, b: datetime, sign: int, levels: Sequence[Grain]) -> None:
        if a >= b:
            return
        if not levels:
            ranges.append(RangePart(a, b, bucket, sign))
            return
        grain, finer = levels[0], levels[1:]
        lo, hi = _nearest(grain, a), _nearest(grain, b)
        if lo >= hi:
            split(a, b, sign, finer)
            return
        periods.extend(PeriodPart(grain, p, bucket, sign) for p in _units(grain, lo, hi))
        if a < lo:
            split(a, lo, sign, finer)
        else:
            split(lo, a, -sign, finer)
        if b > hi:
            split(hi, b, sign, finer)
        else:
            split(b, hi, -sign, finer)

    # In UTC throughout: arithmetic between datetimes of one fixed zone skips the zone's rules
    # (two thirds of this function's time when the bucket boundaries carry an IANA zone).
    start, end = interval_start.astimezone(UTC), interval_end.astimezone(UTC)
    whole = grains and start < end and start == _floor(grains[0], start)
    if whole and end == _floor(grains[0], end):  # whole periods (a UTC day bucket): no search
        units = _units(grains[0], start, end)
        return [PeriodPart(grains[0], p, bucket, 1) for p in units], []
    split(start, end, 1, grains)
    return periods, ranges


def local_start_text(bucket: Bucket) -> str | None:
    """ISO 8601 with the zone's offset at that instant, e.g. 2026-03-01T00:00:00-03:30."""
    return None if bucket.local_start is None else bucket.local_start.isoformat()


COUNT_KEYS = ("segment_id", "side", "kind", "direction")


@dataclass(frozen=True, slots=True)
class CountQuery:
    """Counts of reports, people, groups and people_est per bucket, by ``keys`` (a subset of COUNT_KEYS), from signed
    parts (above): rollup periods and ranges of observed_at. Filters:
    ``segment_ids`` (any of them), ``kind``; ``bbox`` (inclusive; only with day periods and
    ranges: only a day rollup may know positions)."""

    keys: tuple[str, ...]
    periods: tuple[PeriodPart, ...] = ()
    ranges: tuple[RangePart, ...] = ()
    segment_ids: frozenset[str] | None = None
    kind: str | None = None
    bbox: tuple[float, float, float, float] | None = None

    def __post_init__(self) -> None:
        if not set(self.keys) <= set(COUNT_KEYS):
            raise ValueError(f"count keys {self.keys} are not all of {COUNT_KEYS}")


class CountRow(NamedTuple):
    """One bucket's signed total for one combination of key values (None: the report has none,
    e.g. no segment when beyond reach). A tuple: a big aggregate makes thousands, and a frozen
    dataclass costs four times as much to build."""

    bucket: int
    key: tuple[str | None, ...]
    reports: int
    people: int
    groups: int  # linked reports counted once (docs/linking.md): distinct groups
    people_est: int  # per group, the largest count reported
