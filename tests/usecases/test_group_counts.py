"""Groups and people_est (issue #20, docs/linking.md) are exact, on both stores: for reports from
several monitors, linked as they arrive, every aggregate (any group_by, bucket, zone, window,
kind, box) and the public release's cells equal a brute-force count of the stored groups, each
counted once at its anchor (its first-observed report, then the smallest id) with the largest
count any member reported; and so they stay through deletions and a border reload.

The brute force reads only the stored reports and their group ids (store.group_ids): which
reports are grouped is tested against the domain's rule in tests/storage/test_link_store.py.
"""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from service.domain.aggregation import GROUP_KEYS, UNITS, Unit, period_floor
from service.domain.link_groups import Edge, assign_groups
from service.domain.links import LinkQuery, LinkState
from service.domain.reports import Report, ReportDraft
from service.domain.segments import SegmentIndex
from service.settings import Settings
from service.storage.base import Store
from service.usecases.aggregates import AggregateRequest, aggregate
from service.usecases.release import cut_release
from service.usecases.segments import replace_border
from service.usecases.submit_reports import submit_batch
from service.usecases.transfer import export_reports
from tests.by_hand import group_of
from tests.conftest import wipe_reports

T0 = datetime(2025, 12, 20, tzinfo=UTC)
NOW = datetime(2027, 1, 1, tzinfo=UTC)
ZONES = ["UTC", "America/St_Johns", "Asia/Kathmandu"]
KINDS = ("crossing", "attempt")
KEYS = ("key-a", "key-b", "key-c")
# Two busy places on the border (Roxham Road, Blaine) and one beyond reach (never linked).
PLACES = [(-73.45, 45.01), (-122.75, 49.0), (-95.0, 30.0)]
BOX = (-74.0, 44.5, -73.0, 45.5)  # around Roxham Road: whole level-12 cells and edge cells


def _anchors(store: Store, stored: list[Report]) -> dict[UUID, tuple[Report, int]]:
    """Each group's anchor and people_est, from the stored group ids: a report without a group
    is a group of its own."""
    group_of = store.group_ids([r.draft.id for r in stored])
    members: defaultdict[UUID, list[Report]] = defaultdict(list)
    for report in stored:
        members[group_of.get(report.draft.id, report.draft.id)].append(report)
    out = {}
    for group_id, reports in members.items():
        anchor = min(reports, key=lambda r: (r.draft.observed_at, r.draft.id))
        out[group_id] = (anchor, max(r.draft.people_count for r in reports))
    return out


def _selected(report: Report, request: AggregateRequest) -> bool:
    t = report.draft.observed_at
    if (request.start and t < request.start) or (request.end and t >= request.end):
        return False
    if request.kind and report.draft.kind != request.kind:
        return False
    if request.bbox:
        w, s, e, n = request.bbox
        return w <= report.draft.lon <= e and s <= report.draft.lat <= n
    return True


def _by_hand(
    store: Store, stored: list[Report], request: AggregateRequest, index: SegmentIndex
) -> dict[tuple[Any, ...], tuple[int, int, int, int]]:
    """(reports, people, groups, people_est) per (group, local bucket), report by report."""
    counts: Counter[tuple[Any, ...]] = Counter()

    def cell(report: Report) -> tuple[Any, ...]:
        bucket: date | None = None
        if request.bucket is not None:
            local = report.draft.observed_at.astimezone(request.zone).date()
            bucket = period_floor(request.bucket, local)
        return group_of(report, request.group_by, index), bucket

    for report in stored:
        if _selected(report, request):
            counts[(*cell(report), "reports")] += 1
            counts[(*cell(report), "people")] += report.draft.people_count
    for anchor, people_est in _anchors(store, stored).values():
        if _selected(anchor, request):
            counts[(*cell(anchor), "groups")] += 1
            counts[(*cell(anchor), "people_est")] += people_est
    cells = {key[:2] for key in counts}
    return {
        c: tuple(counts[(*c, name)] for name in ("reports", "people", "groups", "people_est"))  # type: ignore[misc]
        for c in cells
        if counts[(*c, "reports")]
    }


def _from_service(store: Store, index: SegmentIndex, request: AggregateRequest) -> dict[Any, Any]:
    result = aggregate(store, index, request)
    out = {}
    for row in result.rows:
        bucket = result.buckets[row.bucket]
        local = None if bucket.local_start is None else bucket.local_start.date()
        f = row.figure
        if f.reports:
            out[row.group, local] = (f.reports, f.people, f.groups, f.people_est)
    total = result.total
    assert (total.groups or 0) <= (total.reports or 0)
    return out


def _groups_among(store: Store, reports: list[Report]) -> dict[UUID, tuple[Report, int]]:
    """The groups ``reports`` make among themselves by the stored links (the domain's rule,
    assign_groups): each group's anchor and people_est."""
    ids = {r.draft.id: r for r in reports}
    edges = []
    query = LinkQuery(limit=500)
    while True:
        page = store.list_links(query)
        edges += [
            Edge(k.a, k.b, k.weight, 1 if k.state is LinkState.CONFIRMED else 0)
            for k in page.links
            if k.state is not LinkState.REJECTED and k.a in ids and k.b in ids
        ]
        if page.next_key is None:
            break
        query = LinkQuery(limit=500, after=page.next_key)
    members: defaultdict[UUID, list[Report]] = defaultdict(list)
    for k, g in assign_groups(list(ids), edges).items():
        members[g].append(ids[k])
    out = {}
    for group_id, group in members.items():
        anchor = min(group, key=lambda r: (r.draft.observed_at, r.draft.id))
        out[group_id] = (anchor, max(r.draft.people_count for r in group))
    return out


def _release_by_hand(store: Store, stored: list[Report], through: date) -> Counter[Any]:
    """The release's cells, report by report: groups among the released reports only (a report
    younger than the cut changes nothing in it)."""
    counts: Counter[Any] = Counter()

    def cell(r: Report) -> tuple[Any, ...]:
        day = r.draft.observed_at.astimezone(UTC).date()
        return (day, r.snap.segment_id, r.draft.kind, r.draft.direction, r.snap.side)

    for r in stored:
        if r.draft.observed_at.astimezone(UTC).date() < through:
            counts[(*cell(r), "reports")] += 1
            counts[(*cell(r), "people")] += r.draft.people_count
    released = [r for r in stored if r.draft.observed_at.astimezone(UTC).date() < through]
    for anchor, people_est in _groups_among(store, released).values():
        counts[(*cell(anchor), "groups")] += 1
        counts[(*cell(anchor), "people_est")] += people_est
    return counts


def _release_cells(store: Store) -> Counter[Any]:
    cut = store.read_release()
    assert cut is not None
    counts: Counter[Any] = Counter()
    for row in cut[1]:
        for name in ("reports", "people", "groups", "people_est"):
            counts[(*row[:5], name)] += getattr(row, name)
    return +counts  # zeros dropped, as in the brute force


# Groups of people, each reported by one to three monitors (keys) a little apart in place, time
# and count, as bench/links.py makes duplicates: many reports are linked, some are not.
_sightings = st.lists(
    st.tuples(
        st.integers(0, len(KEYS) - 1),
        st.integers(0, 12),  # quarter-hours later
        st.integers(0, 3),  # ~55 m steps east
        st.integers(-1, 1),  # people off by
    ),
    min_size=1,
    max_size=3,
)
_crossings = st.lists(
    st.tuples(
        st.sampled_from(PLACES),
        st.sampled_from([0, 1, 12, 13]),  # days after T0: across the turn of the month and year
        st.integers(0, 16),  # quarter-hours into the day
        st.sampled_from(KINDS),
        st.integers(1, 6),
        st.sampled_from(["CA", "US", None]),
        _sightings,
    ),
    min_size=1,
    max_size=15,
)
_reports = _crossings.map(
    lambda crossings: [
        (number, key, place, day, q + dq, east, kind, max(1, people + dp), direction)
        for number, (key, place, day, q, dq, east, kind, people, dp, direction) in enumerate(
            (key, place, day, q, dq, east, kind, people, dp, direction)
            for place, day, q, kind, people, direction, sightings in crossings
            for key, dq, east, dp in sightings
        )
    ]
)
_requests = st.fixed_dictionaries(
    {
        "group_by": st.lists(st.sampled_from(GROUP_KEYS), unique=True, max_size=2).map(tuple),
        "bucket": st.sampled_from([None, *UNITS]),
        "zone": st.sampled_from(ZONES).map(ZoneInfo),
        "window": st.one_of(
            st.none(), st.tuples(st.integers(0, 42 * 24 * 4), st.integers(1, 42 * 24 * 4))
        ),
        "kind": st.sampled_from([None, "crossing"]),
        "boxed": st.booleans(),
    }
)


def _store(url: str, store: Store, index: SegmentIndex, rows: list[tuple[Any, ...]]) -> None:
    for k, key in enumerate(KEYS):
        drafts = [
            ReportDraft(
                id=uuid.UUID(int=number + 1),
                observed_at=T0 + timedelta(days=day, minutes=15 * q, seconds=number),
                lon=lon + 0.0007 * east,
                lat=lat,
                people_count=people,
                kind=kind,
                direction=direction,
            )
            for number, key_no, (lon, lat), day, q, east, kind, people, direction in rows
            if key_no == k
        ]
        if drafts:
            settings_ = Settings(database_url=url)
            submit_batch(store, index, drafts, settings=settings_, now=NOW, posted_by=key)
    store.settle_links()  # PostGIS links in the background; SQLite linked in ingest


def _request(spec: dict[str, Any]) -> AggregateRequest:
    start = end = None
    if spec["window"] is not None:
        a, length = spec["window"]
        start = T0 + timedelta(minutes=15 * a, seconds=7)
        end = start + timedelta(minutes=15 * length)
    return AggregateRequest(
        group_by=spec["group_by"],
        bucket=spec["bucket"],
        zone=spec["zone"],
        start=start,
        end=end,
        kind=spec["kind"],
        bbox=BOX if spec["boxed"] else None,
    )


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    rows=_reports,
    specs=st.lists(_requests, min_size=1, max_size=3),
    deleted=st.lists(st.integers(0, 59), max_size=5),
)
def test_groups_and_people_est_equal_counting_the_groups(
    store_with_border: tuple[str, Store, SegmentIndex],
    rows: list[tuple[Any, ...]],
    specs: list[dict[str, Any]],
    deleted: list[int],
) -> None:
    url, store, index = store_with_border
    wipe_reports(url)
    _store(url, store, index, rows)
    stored = list(export_reports(store))
    linked = sum(1 for g in store.group_ids([r.draft.id for r in stored]).values())
    event(f"linked reports: {'none' if not linked else 'some'}")
    event(f"boxed: {any(spec['boxed'] for spec in specs)}, linked: {bool(linked)}")
    for spec in specs:
        request = _request(spec)
        assert _from_service(store, index, request) == _by_hand(store, stored, request, index)

    # Deleting members (anchors among them) regroups what is left: the figures follow.
    for i in sorted(set(deleted)):
        if i < len(stored):
            assert store.delete_report(stored[i].draft.id)
    stored = list(export_reports(store))
    for spec in specs:
        request = _request(spec)
        assert _from_service(store, index, request) == _by_hand(store, stored, request, index)

    # The public release's cells, cut from the same reports.
    info = cut_release(store, now=T0 + timedelta(days=30, hours=3), delay_h=0)
    assert _release_cells(store) == +_release_by_hand(store, stored, info.through)


def test_a_border_reload_keeps_the_group_figures(
    store_with_border: tuple[str, Store, SegmentIndex],
) -> None:
    """A reload drops every group and links the reports again: the figures, read through the
    rollups and group_days, equal counting the groups again."""
    url, store, index = store_with_border
    wipe_reports(url)
    rows = [
        (n, n % 3, PLACES[n % 2], n % 4, n % 5, n % 3, KINDS[n % 2], 1 + n % 4, "US")
        for n in range(40)
    ]
    _store(url, store, index, rows)
    stored = list(export_reports(store))
    assert store.group_ids([r.draft.id for r in stored])  # some are linked
    requests = [
        AggregateRequest(group_by=("segment",), bucket="month"),
        AggregateRequest(group_by=("kind",), bucket="day", zone=ZoneInfo("Asia/Kathmandu")),
        AggregateRequest(bucket="week", bbox=BOX),
    ]
    before = [_from_service(store, index, r) for r in requests]
    replace_border(store, index, max_distance_m=Settings().max_snap_distance_m)
    store.settle_links()
    after = [_from_service(store, index, r) for r in requests]
    assert after == [_by_hand(store, stored, r, index) for r in requests]
    assert after == before  # the same reports and rule: the same groups
    unit: Unit = "month"
    assert any(
        f[2] < f[0] for f in _from_service(store, index, AggregateRequest(bucket=unit)).values()
    )


def test_a_report_younger_than_the_cut_changes_nothing_in_the_release(
    store_with_border: tuple[str, Store, SegmentIndex],
) -> None:
    """Two worlds that differ by one report observed after the release's last day, linked to
    reports the release holds (and reporting more people than they did), cut alike: groups and
    people_est among the released reports are theirs alone, as every figure of the release is
    (docs/threat-model.md)."""
    url, store, index = store_with_border
    through_at = T0 + timedelta(days=2)  # the release holds T0's two days
    rows = [  # one crossing seen by two monitors just before midnight, and a third crossing
        (1, 0, PLACES[0], 1, 88, 0, "crossing", 3, "US"),
        (2, 1, PLACES[0], 1, 90, 1, "crossing", 3, "US"),
        (3, 2, PLACES[0], 1, 91, 2, "crossing", 2, "US"),
    ]
    cells = []
    for younger in (False, True):
        wipe_reports(url)
        _store(url, store, index, rows)
        if younger:  # an hour after midnight, by a third monitor, with twice the people
            late = ReportDraft(uuid.UUID(int=99), through_at + timedelta(hours=1),
                               PLACES[0][0] + 0.0007, PLACES[0][1], 6, "crossing", "US", None)  # fmt: skip
            settings_ = Settings(database_url=url)
            submit_batch(store, index, [late], settings=settings_, now=NOW, posted_by="key-d")
            store.settle_links()
            assert uuid.UUID(int=99) in store.group_ids([uuid.UUID(int=99)])  # it is linked
        info = cut_release(store, now=through_at + timedelta(hours=2), delay_h=0)
        assert info.through == through_at.date()
        stored = list(export_reports(store))
        assert _release_cells(store) == +_release_by_hand(store, stored, info.through)
        cells.append(_release_cells(store))
    assert cells[0] == cells[1]
