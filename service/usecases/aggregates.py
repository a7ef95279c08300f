"""Aggregates: reports and people by group and time bucket, exact, for callers who read
everything (the public reads the release: service/usecases/public_release.py).

Counting goes through the store's rollups wherever a bucket covers whole UTC days or months (see
service/domain/aggregation.py). A box filter asks for days only: the only rollup that knows
positions (PostGIS's cell_days) counts days; a store without one counts the reports.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from service.domain.aggregation import (
    SEGMENT_KEYS,
    Bucket,
    CountQuery,
    CountRow,
    PeriodPart,
    RangePart,
    Unit,
    bucket_count_at_most,
    buckets,
    parts,
)
from service.domain.errors import FieldError, TooCostly
from service.domain.figures import ExactTable, Figure
from service.domain.segments import SegmentIndex
from service.storage.base import CountStore

UTC_ZONE = ZoneInfo("UTC")
# What each group_by key is called in a row, and the count key it derives from.
ROW_NAMES = {
    "segment": "segment_id",
    "section": "section",
    "border": "border",
    "region": "region",
    "side": "side",
    "kind": "kind",
    "direction": "direction",
}


@dataclass(frozen=True, slots=True)
class AggregateRequest:
    group_by: tuple[str, ...] = ()
    bucket: Unit | None = None
    zone: ZoneInfo = UTC_ZONE
    start: datetime | None = None
    end: datetime | None = None
    bbox: tuple[float, float, float, float] | None = None
    segment_ids: frozenset[str] | None = None
    kind: str | None = None
    fill: bool = False
    all_segments: bool = False  # one group per segment of the border, even with no reports


@dataclass(frozen=True, slots=True)
class AggregateLimits:
    """The most work one request may ask for (CROSSINGS_AGGREGATE_MAX_*); checked before any is
    done. ``kinds``: the configured report kinds, which bound the groups of ``group_by=kind``."""

    max_cells: int
    max_range_days: int
    max_parts: int
    kinds: tuple[str, ...]


class AggregateRow(NamedTuple):  # a tuple: thousands per request, built 4x faster than a dataclass
    group: tuple[str | None, ...]  # values of request.group_by, in order
    bucket: int
    figure: Figure


@dataclass(frozen=True, slots=True)
class Aggregate:
    request: AggregateRequest
    buckets: list[Bucket]
    rows: list[AggregateRow]
    by_group: dict[tuple[str | None, ...], Figure]
    by_bucket: dict[int, Figure]
    total: Figure
    suppress_below: int

    def row_fields(self, group: tuple[str | None, ...]) -> dict[str, Any]:
        """A group's key values by their row names, with ``snap_status`` when a key comes from
        the segment: reports beyond reach have no segment, and form a group of their own."""
        out: dict[str, Any] = {
            ROW_NAMES[k]: v for k, v in zip(self.request.group_by, group, strict=True)
        }
        if SEGMENT_KEYS & set(self.request.group_by):
            snapped = any(
                v is not None
                for k, v in zip(self.request.group_by, group, strict=True)
                if k in SEGMENT_KEYS
            )
            out["snap_status"] = "snapped" if snapped else "beyond_max_distance"
        return out


def _count_keys(group_by: Sequence[str]) -> tuple[str, ...]:
    keys = []
    if SEGMENT_KEYS & set(group_by):
        keys.append("segment_id")
    keys.extend(k for k in ("side", "kind", "direction") if k in group_by)
    return tuple(keys)


def _group_of(
    group_by: Sequence[str], counted: dict[str, str | None], index: SegmentIndex
) -> tuple[str | None, ...]:
    segment_id = counted.get("segment_id")
    segment = index.by_id.get(segment_id) if segment_id else None
    values: list[str | None] = []
    for key in group_by:
        if key in SEGMENT_KEYS:
            values.append(None if segment is None else segment.value_of(key))
        else:
            values.append(counted.get(key))
    return tuple(values)


def group_bound(request: AggregateRequest, index: SegmentIndex, kinds: Sequence[str]) -> int:
    """At most how many groups ``request.group_by`` makes, known before counting: the distinct
    segment-derived keys of the segments asked for (plus the reports beyond reach), times the
    sides and directions (the border's countries, or none), times the kinds."""
    bound = 1
    by_segment = [k for k in request.group_by if k in SEGMENT_KEYS]
    if by_segment:
        chosen = (
            index.segments
            if request.segment_ids is None
            else [index.by_id[s] for s in request.segment_ids if s in index.by_id]
        )
        bound *= len({tuple(s.value_of(k) for k in by_segment) for s in chosen}) + 1
    for key in ("side", "direction"):
        if key in request.group_by:
            bound *= len(index.countries) + 1
    if "kind" in request.group_by and request.kind is None:
        bound *= max(1, len(kinds))
    return bound


def check_cost(
    request: AggregateRequest,
    index: SegmentIndex,
    start: datetime,
    end: datetime,
    limits: AggregateLimits,
) -> None:
    """Refuse (TooCostly, naming the cap) an answer of more cells (periods x groups) than the
    cap, or a window longer than the cap: before any work is done."""
    periods = bucket_count_at_most(request.bucket, start, end)
    groups = group_bound(request, index, limits.kinds)
    if periods * groups > limits.max_cells:
        reason = (
            f"would make up to {periods:,} periods x {groups:,} groups = {periods * groups:,}"
            f" cells; at most {limits.max_cells:,} (CROSSINGS_AGGREGATE_MAX_CELLS): narrow"
            " start/end, take a longer bucket or fewer group_by keys"
        )
        field = "group_by" if request.group_by else "bucket"
        raise TooCostly(f"{field}: {reason}", errors=[FieldError(field, reason)])
    days = (end - start).total_seconds() / 86_400
    if days > limits.max_range_days:
        reason = (
            f"start..end spans {days:,.0f} days; at most {limits.max_range_days:,}"
            " (CROSSINGS_AGGREGATE_MAX_RANGE_DAYS)"
        )
        field = "start" if request.start is not None else "end"
        raise TooCostly(f"{field}: {reason}", errors=[FieldError(field, reason)])


def check_parts(request: AggregateRequest, plan: Plan, limits: AggregateLimits) -> None:
    """Refuse a window whose buckets need more counting parts (rollup periods and report ranges)
    than the cap: a zone whose midnights are not UTC's (Asia/Kathmandu, +05:45) makes every
    bucket count two ranges of reports on top of its days."""
    _, periods, ranges = plan
    if len(periods) + len(ranges) > limits.max_parts:
        reason = (
            f"bucket={request.bucket} in tz={request.zone} over this window needs"
            f" {len(periods) + len(ranges):,} counting parts; at most {limits.max_parts:,}"
            " (CROSSINGS_AGGREGATE_MAX_PARTS): narrow start/end or take a longer bucket"
        )
        raise TooCostly(f"tz: {reason}", errors=[FieldError("tz", reason)])


def aggregate(
    store: CountStore,
    index: SegmentIndex,
    request: AggregateRequest,
    *,
    limits: AggregateLimits | None = None,
) -> Aggregate:
    """The exact aggregate of ``request`` (what a caller who reads everything gets; the public
    reads usecases/public_release.py); with ``limits``, refused (TooCostly) before counting when it
    asks for more work than they allow."""
    start, end = request.start, request.end
    if start is None or end is None:
        observed = store.observed_range()
        if observed is not None:
            start = start or observed[0]
            end = end or observed[1] + timedelta(microseconds=1)
    if limits is not None and start is not None and end is not None:
        check_cost(request, index, start, end, limits)
    # Day and week buckets hold no whole month: reading months and taking most days away again
    # would read twice the rows.
    grains: tuple[Any, ...] = (
        ("day",)
        if request.bbox is not None or request.bucket in ("day", "week")
        else ("month", "day")
    )
    plan: Plan = (
        ((), (), ())
        if start is None or end is None
        else time_plan(request.bucket, request.zone, start, end, grains)
    )
    if limits is not None:
        check_parts(request, plan, limits)
    chosen_buckets, periods, ranges = plan
    chosen = list(chosen_buckets)
    keys = _count_keys(request.group_by)
    counted = store.count_reports(
        CountQuery(
            keys=keys,
            periods=periods,
            ranges=ranges,
            segment_ids=request.segment_ids,
            kind=request.kind,
            bbox=request.bbox,
        )
    )
    groups, (reports, people, n_groups, people_est) = _table(
        counted, keys, request, index, len(chosen)
    )
    table = ExactTable(reports, people, n_groups, people_est)
    published = (
        np.ones(reports.shape, dtype=np.bool_)
        if request.fill or request.all_segments
        else (reports != 0) | (people != 0)
    )
    ii, jj = (a.tolist() for a in np.nonzero(published))  # row-major: by group, then by bucket
    rows = [
        AggregateRow(groups[i], j, f) for i, j, f in zip(ii, jj, table.figures(ii, jj), strict=True)
    ]
    row_totals, column_totals = table.row_totals(), table.column_totals()
    return Aggregate(
        request=request,
        buckets=chosen,
        rows=rows,
        by_group={} if row_totals is None else dict(zip(groups, row_totals, strict=True)),
        by_bucket={} if column_totals is None else dict(enumerate(column_totals)),
        total=table.total(),
        suppress_below=0,
    )


Group = tuple[str | None, ...]
IntArray = npt.NDArray[np.int64]


def _table(
    counted: Sequence[CountRow],
    keys: Sequence[str],
    request: AggregateRequest,
    index: SegmentIndex,
    n_buckets: int,
) -> tuple[list[Group], tuple[IntArray, IntArray, IntArray, IntArray]]:
    """The groups in order, and reports, people, groups (of linked reports) and people_est per
    group and bucket, as arrays: a month-by-
    segment table has thousands of cells, and a Python object per cell per step was most of the
    request's time. Groups with no report are left out, except the segments ``all_segments``
    lists."""
    group_of: dict[tuple[str | None, ...], Group] = {}  # each key's, once
    slot: dict[Group, int] = {}
    found: list[Group] = []
    at_group: list[int] = []
    for row in counted:
        group = group_of.get(row.key)
        if group is None:
            counted_keys = dict(zip(keys, row.key, strict=True))
            group = group_of[row.key] = _group_of(request.group_by, counted_keys, index)
        place = slot.get(group)
        if place is None:
            place = slot[group] = len(found)
            found.append(group)
        at_group.append(place)
    at = (at_group, [row.bucket for row in counted])
    found_all = []
    for values in (
        [row.reports for row in counted],
        [row.people for row in counted],
        [row.groups for row in counted],
        [row.people_est for row in counted],
    ):
        found_column = np.zeros((len(found), n_buckets), dtype=np.int64)
        np.add.at(found_column, at, values)
        found_all.append(found_column)
    found_reports, found_people = found_all[0], found_all[1]
    nonzero = ((found_reports != 0) | (found_people != 0)).any(axis=1).tolist()
    groups = sorted((g for g, keep in zip(found, nonzero, strict=True) if keep), key=_sort_key)
    if request.all_segments and request.group_by == ("segment",):
        wanted = request.segment_ids
        listed = [
            (s.segment_id,) for s in index.segments if wanted is None or s.segment_id in wanted
        ]
        groups = listed + [g for g in groups if g not in set(listed)]
    taken = np.asarray([slot.get(g, -1) for g in groups], dtype=np.intp)
    tables = []
    for found_column in found_all:
        table = np.zeros((len(groups), n_buckets), dtype=np.int64)
        table[taken >= 0] = found_column[taken[taken >= 0]]
        tables.append(table)
    return groups, (tables[0], tables[1], tables[2], tables[3])


Plan = tuple[tuple[Bucket, ...], tuple[PeriodPart, ...], tuple[RangePart, ...]]
# Windows of at most this many buckets are kept (a year of days is 366): a plan of 10,000 local
# days holds some 40,000 parts, and anyone can ask for new windows.
CACHED_BUCKETS = 1_000


def time_plan(
    unit: Unit | None, zone: ZoneInfo, start: datetime, end: datetime, grains: tuple[Any, ...]
) -> Plan:
    """The buckets of [start, end) and the signed parts that count them. Calendar arithmetic
    only, no data: small windows are kept for when they are asked again, as dashboards do (a
    year of days takes 2 ms to work out)."""
    if bucket_count_at_most(unit, start, end) <= CACHED_BUCKETS:
        return _cached_plan(unit, zone, start, end, grains)
    return _plan(unit, zone, start, end, grains)


@functools.lru_cache(maxsize=256)
def _cached_plan(
    unit: Unit | None, zone: ZoneInfo, start: datetime, end: datetime, grains: tuple[Any, ...]
) -> Plan:
    return _plan(unit, zone, start, end, grains)


def _plan(
    unit: Unit | None, zone: ZoneInfo, start: datetime, end: datetime, grains: tuple[Any, ...]
) -> Plan:
    chosen = buckets(unit, zone, start, end)
    periods: list[PeriodPart] = []
    ranges: list[RangePart] = []
    for number, bucket in enumerate(chosen):
        p, r = parts(bucket.start, bucket.end, number, grains=grains)
        periods.extend(p)
        ranges.extend(r)
    return tuple(chosen), tuple(periods), tuple(ranges)


def _sort_key(group: tuple[str | None, ...]) -> tuple[tuple[bool, str], ...]:
    return tuple((v is None, v or "") for v in group)
