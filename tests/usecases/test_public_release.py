"""The public release: a cut holds exactly the stored reports' counts per cell, only for days that
ended ``delay_h`` before the cut; and every public answer is a function of the release alone,
computed here cell by cell from the release table with the scalar rule, on both stores."""

from __future__ import annotations

import dataclasses
import uuid
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from typing import Any

import shapely
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from service.domain.aggregation import GROUP_KEYS, UNITS, period_floor
from service.domain.figures import Figure
from service.domain.release import PublicRule, ReleaseRow, day_start, publish, release_through
from service.domain.reports import ReportDraft
from service.domain.segments import SegmentIndex
from service.settings import Settings
from service.usecases.aggregates import AggregateRequest
from service.usecases.public_release import ReleaseView, public_aggregate
from service.usecases.release import cut_release
from service.usecases.submit_reports import submit_batch
from service.usecases.transfer import export_reports
from tests.conftest import wipe_reports
from tests.factories import drafts_of_rows

T0 = datetime(2026, 1, 1, tzinfo=UTC)
NOW = datetime(2026, 12, 1, tzinfo=UTC)
KINDS = ("crossing", "attempt", "evidence", "assistance")
# Near the border (two CA-US segments close together, a MX-US one) and one far from it.
PLACES = [(-73.45, 45.01), (-73.60, 45.01), (-122.75, 49.0), (-106.5, 31.77), (-95.0, 30.0)]
RULE = PublicRule(min_count=3, round_to=5)  # a low threshold: more figures shown, more to check


def _drafts(rows: list[tuple[Any, ...]]) -> list[ReportDraft]:
    """Rows of (number, hours after T0, place, kind, people, direction)."""
    return drafts_of_rows(rows, start=T0, step=timedelta(hours=1), shift_every=5)


_reports = st.lists(
    st.tuples(
        st.integers(0, 400),
        st.integers(0, 120 * 24),  # hours after T0: some after the cut's edge
        st.sampled_from(PLACES),
        st.sampled_from(KINDS[:2]),
        st.integers(1, 9),
        st.sampled_from(["CA", "US", None]),
    ),
    max_size=120,
    unique_by=lambda row: row[0],
)
_requests = st.fixed_dictionaries(
    {
        "group_by": st.lists(st.sampled_from(GROUP_KEYS), unique=True, max_size=3).map(tuple),
        "bucket": st.sampled_from([None, *UNITS]),
        "window": st.one_of(
            st.none(), st.tuples(st.integers(0, 130 * 24 * 60), st.integers(1, 130 * 24 * 60))
        ),
        "kind": st.sampled_from([None, "crossing"]),
        "bbox": st.sampled_from([None, (-74.0, 44.5, -73.5, 45.5), (-130.0, 25.0, -100.0, 50.0)]),
        "fill": st.booleans(),
    }
)


def _request(spec: dict[str, Any]) -> AggregateRequest:
    start = end = None
    if spec["window"] is not None:
        a, b = sorted(spec["window"])
        start, end = T0 + timedelta(minutes=a), T0 + timedelta(minutes=b + 1)
    return AggregateRequest(
        group_by=spec["group_by"],
        bucket=spec["bucket"],
        start=start,
        end=end,
        kind=spec["kind"],
        bbox=spec["bbox"],
        fill=spec["fill"],
    )


def _value(key: str, row: ReleaseRow, index: SegmentIndex) -> str | None:
    segment = index.by_id.get(row.segment_id or "")
    if key == "segment":
        return row.segment_id
    if key in ("section", "border", "region"):
        return None if segment is None else segment.value_of(key)
    return getattr(row, key)  # type: ignore[no-any-return]


def _by_hand(
    rows: list[ReleaseRow], request: AggregateRequest, window: tuple[date, date], index: Any
) -> tuple[dict[Any, Any], dict[Any, Any], Any]:
    """Cells, group totals and the total, summed from the release's rows one by one, each sum
    then put through the scalar rule."""
    selected = None
    if request.bbox is not None:
        box = shapely.box(*request.bbox)
        selected = {
            s.segment_id for s in index.segments if shapely.LineString(s.coords).intersects(box)
        }
    cells: Counter[Any] = Counter()
    people: Counter[Any] = Counter()
    linked: Counter[Any] = Counter()
    people_est: Counter[Any] = Counter()
    for row in rows:
        if not window[0] <= row.day < window[1]:
            continue
        if request.kind and row.kind != request.kind:
            continue
        if selected is not None and row.segment_id not in selected:
            continue
        group = tuple(_value(k, row, index) for k in request.group_by)
        bucket = period_floor(request.bucket, row.day) if request.bucket else window[0]
        cells[group, bucket] += row.reports
        people[group, bucket] += row.people
        linked[group, bucket] += row.groups
        people_est[group, bucket] += row.people_est
    columns = (cells, people, linked, people_est)
    margins: list[Counter[Any]] = [Counter(), Counter(), Counter(), Counter()]
    for column, margin in zip(columns, margins, strict=True):
        for (group, _), n in column.items():
            margin[group] += n
    shown = {k: _published(*(c[k] for c in columns)) for k in cells}
    by_group = {g: _published(*(m[g] for m in margins)) for g in margins[0]}
    total = _published(*(sum(c.values()) for c in columns))
    return shown, by_group, total


def _published(reports: int, people: int, groups: int, people_est: int) -> Figure:
    """The scalar rule, once for reports and people and once for groups and people_est."""
    counted = publish(reports, people, RULE)
    if counted.hidden:
        return Figure(None, None, True)
    grouped = publish(groups, people_est, RULE)
    return Figure(counted.reports, counted.people, False, grouped.reports, grouped.people)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=_reports, specs=st.lists(_requests, min_size=1, max_size=4))
def test_public_answers_are_the_release_put_through_the_rule(
    store_with_border: tuple[str, Any, SegmentIndex],
    rows: list[tuple[Any, ...]],
    specs: list[dict[str, Any]],
) -> None:
    url, store, index = store_with_border
    wipe_reports(url)
    # Two monitors: reports of one crossing by both are linked, and count once as groups.
    for monitor in (0, 1):
        mine = [row for row in rows if row[0] % 2 == monitor]
        submit_batch(store, index, _drafts(mine), settings=Settings(database_url=url), now=NOW,
                     posted_by=f"key-{monitor}")  # fmt: skip
    store.settle_links()
    cut_at = T0 + timedelta(days=90, hours=7)
    info = cut_release(store, now=cut_at, delay_h=24)
    cut = store.read_release()
    assert cut is not None
    release_rows = cut[1]

    # The cut holds exactly the stored reports of the days that ended a day before it.
    through = release_through(cut_at, 24)
    assert info.through == through == date(2026, 3, 31)
    expected: Counter[Any] = Counter()
    stored = list(export_reports(store))
    group_of = store.group_ids([r.draft.id for r in stored])
    members: dict[Any, list[Any]] = {}
    for report in stored:
        members.setdefault(group_of.get(report.draft.id, report.draft.id), []).append(report)
    est = {min(g, key=lambda r: (r.draft.observed_at, r.draft.id)).draft.id:
           max(r.draft.people_count for r in g) for g in members.values()}  # fmt: skip
    for report in stored:
        day = report.draft.observed_at.astimezone(UTC).date()
        if day < through:
            key = (day, report.snap.segment_id, report.draft.kind, report.draft.direction,
                   report.snap.side)  # fmt: skip
            expected[(*key, "reports")] += 1
            expected[(*key, "people")] += report.draft.people_count
            if report.draft.id in est:  # a group's anchor: the group counts here, once
                expected[(*key, "groups")] += 1
                expected[(*key, "people_est")] += est[report.draft.id]
    got: Counter[Any] = Counter()
    for r in release_rows:
        got[(*r[:5], "reports")] += r.reports
        got[(*r[:5], "people")] += r.people
        got[(*r[:5], "groups")] += r.groups
        got[(*r[:5], "people_est")] += r.people_est
    assert +got == +expected
    event(f"linked: {sum(r.reports - r.groups for r in release_rows) > 0}")

    view = ReleaseView.of(*cut)
    for spec in specs:
        request = _request(spec)
        answer = public_aggregate(view, index, request, rule=RULE, max_cells=10**7, kinds=KINDS)
        window = (answer.window.start, answer.window.end)
        unit = request.bucket or "day"
        # Whole periods of the calendar, only ones the release holds whole.
        assert period_floor(unit, window[0]) == window[0]
        assert window[1] <= period_floor(unit, through) or window[1] == window[0]
        shown, by_group, total = _by_hand(release_rows, request, window, index)
        result = answer.aggregate
        got_cells = {
            (row.group, result.buckets[row.bucket].start.date()): row.figure
            for row in result.rows
            if not row.figure.suppressed
        }
        assert got_cells == {
            k: f for k, f in shown.items() if not f.suppressed and k[1] < window[1]
        }
        assert result.total == total
        for group, figure in result.by_group.items():
            assert figure == by_group.get(group, Figure(None, None, True))
        if request.fill and result.buckets:  # every bucket of every shown group is listed
            assert len(result.rows) == len(result.buckets) * len({r.group for r in result.rows})


def test_a_cut_leaves_out_days_younger_than_the_delay(
    store_with_border: tuple[str, Any, SegmentIndex],
) -> None:
    url, store, index = store_with_border
    wipe_reports(url)
    cut_at = datetime(2026, 3, 10, 12, tzinfo=UTC)
    edge = day_start(date(2026, 3, 9))  # 2026-03-09 ends at 03-10 00:00, only 12 h before
    (draft,) = _drafts([(1, 0, PLACES[0], "crossing", 2, "CA")])
    drafts = [
        dataclasses.replace(draft, id=uuid.UUID(int=n), observed_at=at)
        for n, at in enumerate([edge - timedelta(microseconds=1), edge], start=1)
    ]
    submit_batch(store, index, drafts, settings=Settings(database_url=url), now=cut_at)
    info = cut_release(store, now=cut_at, delay_h=24)
    cut = store.read_release()
    assert cut is not None
    assert info.through == date(2026, 3, 9)
    assert [(r.day, r.reports) for r in cut[1]] == [(date(2026, 3, 8), 1)]
