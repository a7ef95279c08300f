"""Aggregates are exact: through the rollups, any sequence of ingests (with replays and conflicts)
gives the same numbers as counting the stored reports one by one, for every group_by and bucket,
in any zone, on both stores; local bucket boundaries fall where the zone puts them.

The expected numbers here are computed report by report (each report's local time, its own
bucket: the calendar period of its local date), not with the service's boundary arithmetic.
"""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from service.domain.aggregation import GROUP_KEYS, UNITS, Unit, period_floor
from service.domain.grid import cells_inside, lat_of_row
from service.domain.reports import Report, ReportDraft
from service.domain.segments import SegmentIndex
from service.settings import Settings
from service.storage.base import Store
from service.usecases.aggregates import AggregateRequest, aggregate
from service.usecases.submit_reports import submit_batch
from service.usecases.transfer import export_reports
from tests.by_hand import group_of
from tests.conftest import wipe_reports
from tests.factories import drafts_of_rows

T0 = datetime(2025, 12, 20, tzinfo=UTC)
NOW = datetime(2027, 1, 1, tzinfo=UTC)
ZONES = ["UTC", "America/St_Johns", "Asia/Kathmandu", "America/Los_Angeles", "Pacific/Chatham"]
KINDS = ("crossing", "attempt", "evidence", "assistance")
# Near the border (snapped) and one place far from it (beyond reach).
PLACES = [(-73.45, 45.01), (-122.75, 49.0), (-97.2, 49.0), (-106.5, 31.77), (-95.0, 30.0)]


def _local_bucket(unit: Unit | None, moment: datetime, zone: ZoneInfo) -> date | None:
    """The first day of the report's own local period (period_floor: tests/domain/test_periods.py
    checks it against a walk over the days)."""
    return None if unit is None else period_floor(unit, moment.astimezone(zone).date())


def _by_hand(
    stored: list[Report], request: AggregateRequest, index: SegmentIndex
) -> dict[tuple[Any, ...], tuple[int, int]]:
    counts: Counter[tuple[Any, ...]] = Counter()
    people: Counter[tuple[Any, ...]] = Counter()
    for report in stored:
        t = report.draft.observed_at
        if (request.start and t < request.start) or (request.end and t >= request.end):
            continue
        if request.kind and report.draft.kind != request.kind:
            continue
        if request.segment_ids is not None and report.snap.segment_id not in request.segment_ids:
            continue
        if request.bbox:
            w, s, e, n = request.bbox
            if not (w <= report.draft.lon <= e and s <= report.draft.lat <= n):
                continue
        key = (group_of(report, request.group_by, index),
               _local_bucket(request.bucket, t, request.zone))  # fmt: skip
        counts[key] += 1
        people[key] += report.draft.people_count
    return {k: (n, people[k]) for k, n in counts.items()}


def _from_service(store: Store, index: SegmentIndex, request: AggregateRequest) -> dict[Any, Any]:
    result = aggregate(store, index, request)
    out = {}
    for row in result.rows:
        bucket = result.buckets[row.bucket]
        local = None if bucket.local_start is None else bucket.local_start.date()
        if row.figure.reports:
            out[row.group, local] = (row.figure.reports, row.figure.people)
    return out


_reports = st.lists(
    st.tuples(
        st.integers(0, 60),  # id number: repeats make replays and conflicts
        st.integers(0, 370 * 24 * 4),  # quarter-hours after T0 (all before NOW)
        st.sampled_from(PLACES),
        st.sampled_from(KINDS),
        st.integers(1, 20),
        st.sampled_from(["CA", "US", "MX", None]),
    ),
    min_size=1,
    max_size=80,
)
_requests = st.fixed_dictionaries(
    {
        "group_by": st.lists(st.sampled_from(GROUP_KEYS), unique=True, max_size=3).map(tuple),
        "bucket": st.sampled_from([None, *UNITS]),
        "zone": st.sampled_from(ZONES).map(ZoneInfo),
        "window": st.one_of(
            st.none(),
            st.tuples(st.integers(0, 200 * 24 * 4), st.integers(1, 200 * 24 * 4)),
        ),
        "kind": st.sampled_from([None, "crossing"]),
        "boxed": st.booleans(),
    }
)


def _drafts(rows: list[tuple[Any, ...]]) -> list[ReportDraft]:
    """Rows of (number, quarter hours after T0, place, kind, people, direction)."""
    return drafts_of_rows(rows, start=T0, step=timedelta(minutes=15), shift_every=7)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batches=st.lists(_reports, min_size=1, max_size=3), spec=_requests)
def test_aggregates_equal_counting_the_reports(
    store_with_border: tuple[str, Store, SegmentIndex],
    batches: list[list[tuple[Any, ...]]],
    spec: dict[str, Any],
) -> None:
    url, opened, index = store_with_border
    wipe_reports(url)
    for batch in batches:
        submit_batch(opened, index, _drafts(batch), settings=Settings(database_url=url), now=NOW)
    stored = list(export_reports(opened))
    assert len(stored) == len({number for batch in batches for number, *_ in batch})
    start = end = None
    if spec["window"] is not None:
        a, length = spec["window"]
        start = T0 + timedelta(minutes=15 * a, seconds=7)
        end = start + timedelta(minutes=15 * length)
    request = AggregateRequest(
        group_by=spec["group_by"],
        bucket=spec["bucket"],
        zone=spec["zone"],
        start=start,
        end=end,
        kind=spec["kind"],
        bbox=(-125.0, 40.0, -90.0, 50.0) if spec["boxed"] else None,
    )
    expected = _by_hand(stored, request, index)
    assert _from_service(opened, index, request) == expected
    event(f"cells: {'none' if not expected else 'some'}")


@pytest.mark.parametrize(
    ("zone", "local", "expected_month"),
    [
        ("America/St_Johns", "2026-03-31T23:30:00", date(2026, 3, 1)),  # 02:00Z on April 1
        ("America/St_Johns", "2026-04-01T00:15:00", date(2026, 4, 1)),
        ("Asia/Kathmandu", "2026-01-31T23:50:00", date(2026, 1, 1)),  # 18:05Z on January 31
        ("Asia/Kathmandu", "2026-02-01T00:05:00", date(2026, 2, 1)),  # 18:20Z on January 31
        ("America/Los_Angeles", "2026-10-31T23:30:00", date(2026, 10, 1)),
    ],
)
def test_local_month_boundaries(
    store_with_border: tuple[str, Store, SegmentIndex], zone: str, local: str, expected_month: date
) -> None:
    url, opened, index = store_with_border
    wipe_reports(url)
    moment = datetime.fromisoformat(local).replace(tzinfo=ZoneInfo(zone))
    draft = ReportDraft(uuid.uuid4(), moment.astimezone(UTC), -73.45, 45.01, 4, "crossing",
                        "US", None)  # fmt: skip
    submit_batch(opened, index, [draft], settings=Settings(database_url=url), now=NOW)
    request = AggregateRequest(bucket="month", zone=ZoneInfo(zone))
    result = aggregate(opened, index, request)
    (row,) = result.rows
    bucket = result.buckets[row.bucket]
    assert bucket.local_start is not None and bucket.local_start.date() == expected_month
    assert (row.figure.reports, row.figure.people) == (1, 4)


# Positions on, and a hair either side of, the edges of level-12 grid cells around Roxham Road
# (the cells PostGIS's cell_days counts), so that reports sit on box edges and cell edges alike.
_CELL_COLUMNS = range(1208, 1214)
_CELL_ROWS = range(1470, 1476)
_NUDGES = (0.0, 1e-9, -1e-9, 0.021)
_LONS = sorted({round(k / 4096 * 360.0 - 180.0, 12) + d for k in _CELL_COLUMNS for d in _NUDGES})
_LATS = sorted({lat_of_row(k, 4096) + d for k in _CELL_ROWS for d in _NUDGES})
_boxes = st.tuples(
    st.lists(st.sampled_from(_LONS), min_size=2, max_size=2, unique=True).map(sorted),
    st.lists(st.sampled_from(_LATS), min_size=2, max_size=2, unique=True).map(sorted),
).map(lambda t: (t[0][0], t[1][0], t[0][1], t[1][1]))


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    rows=st.lists(
        st.tuples(
            st.integers(0, 50 * 24 * 4),  # quarter-hours after T0
            st.sampled_from(_LONS),
            st.sampled_from(_LATS),
            st.sampled_from(KINDS),
            st.integers(1, 20),
        ),
        min_size=1,
        max_size=80,
    ),
    box=_boxes,
    bucket=st.sampled_from([None, "day", "week", "month"]),
    zone=st.sampled_from(["UTC", "America/Toronto", "Asia/Kathmandu"]).map(ZoneInfo),
    group_by=st.sampled_from([(), ("region",), ("kind", "side")]),
)
def test_box_aggregates_equal_counting_the_reports(
    store_with_border: tuple[str, Store, SegmentIndex],
    rows: list[tuple[Any, ...]],
    box: tuple[float, float, float, float],
    bucket: Unit | None,
    zone: ZoneInfo,
    group_by: tuple[str, ...],
) -> None:
    """Whole cells from the rollup, edge cells from the reports (PostGIS), or every report
    (SQLite): the same numbers as testing each report against the box."""
    request = AggregateRequest(group_by=group_by, bucket=bucket, zone=zone, bbox=box)
    expected = _box_matches(store_with_border, rows, request)
    block = cells_inside(box, 12)
    event(f"whole cells: {'none' if block is None else 'some'}; in box: {bool(expected)}")


def _box_matches(
    store_with_border: tuple[str, Store, SegmentIndex],
    rows: list[tuple[Any, ...]],
    request: AggregateRequest,
) -> dict[Any, Any]:
    """Store ``rows``, and check the box's aggregate (``request``) against testing each
    report; return it."""
    url, opened, index = store_with_border
    wipe_reports(url)
    drafts = [
        ReportDraft(uuid.UUID(int=n + 1), T0 + timedelta(minutes=15 * q, seconds=n), lon, lat,
                    people, kind, "US", None)
        for n, (q, lon, lat, kind, people) in enumerate(rows)
    ]  # fmt: skip
    submit_batch(opened, index, drafts, settings=Settings(database_url=url), now=NOW)
    stored = list(export_reports(opened))
    expected = _by_hand(stored, request, index)
    assert _from_service(opened, index, request) == expected
    return expected


def _column(k: int) -> float:
    return round(k / 4096 * 360.0 - 180.0, 12)


def test_reports_on_box_and_cell_edges_are_counted_once(
    store_with_border: tuple[str, Store, SegmentIndex],
) -> None:
    """A box whose edges lie on cell edges, with reports in its whole cells, on its edges, a
    hair inside and a hair outside them: each report inside counted once, none outside."""
    box = (_column(1208), lat_of_row(1475, 4096), _column(1213), lat_of_row(1470, 4096))
    assert cells_inside(box, 12) is not None
    mid_lon, mid_lat = _column(1210) + 0.021, lat_of_row(1472, 4096) + 0.021
    inside = [
        (mid_lon, mid_lat),  # in a whole cell of the block
        (box[0], mid_lat),  # on the west edge (the box is inclusive)
        (box[0] + 1e-9, mid_lat),  # in a cell the west edge crosses
        (mid_lon, box[3]),  # on the north edge
        (box[2], box[1]),  # on the south-east corner
    ]
    outside = [(box[0] - 1e-9, mid_lat), (mid_lon, box[3] + 1e-9), (box[2] + 1e-9, box[1])]
    rows = [
        (n * 97, lon, lat, "crossing", 2)
        for n, (lon, lat) in enumerate(inside + outside)
    ]  # fmt: skip
    for bucket in (None, "week"):
        request = AggregateRequest(bucket=bucket, zone=ZoneInfo("America/Toronto"), bbox=box)
        expected = _box_matches(store_with_border, rows, request)
        assert sum(n for n, _ in expected.values()) == len(inside)
