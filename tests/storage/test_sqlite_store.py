"""SqliteStore reports: exactly-once ingest, exact round trips, filters and keyset pages."""

from __future__ import annotations

import math
import multiprocessing
import random
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from unittest import mock
from uuid import UUID, uuid4

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.domain.errors import StoreUnavailable
from service.domain.queries import PageKey, ReportQuery
from service.domain.reports import (
    BEYOND,
    IngestOutcome,
    Report,
    ReportDraft,
    SnapResult,
    SnapStatus,
)
from service.storage.sqlite import SqliteStore
from service.storage.sqlite import reports as report_queries

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
_DRAFT_FIELDS = frozenset(ReportDraft.__dataclass_fields__)


def snapped_to(segment_id: str) -> SnapResult:
    return SnapResult(
        status=SnapStatus.SNAPPED,
        segment_id=segment_id,
        distance_m=120.5,
        snapped_lon=26.001,
        snapped_lat=41.0,
        chainage_km=12.25,
        side="GR",
    )


def make_report(**overrides: Any) -> Report:
    """A snapped report; any ReportDraft field, ``received_at`` or ``snap`` may be overridden."""
    draft: dict[str, Any] = {
        "id": uuid4(),
        "observed_at": T0,
        "lon": 26.0,
        "lat": 41.0,
        "people_count": 3,
        "kind": "crossing",
        "direction": "north",
        "accuracy_m": 10.0,
        "notes": None,
        "device_id": "device-1",
    }
    report: dict[str, Any] = {"received_at": T0 + timedelta(minutes=5), "snap": snapped_to("s-1")}
    for name, value in overrides.items():
        if name in _DRAFT_FIELDS:
            draft[name] = value
        elif name in report:
            report[name] = value
        else:
            raise TypeError(f"make_report() has no field {name!r}")
    return Report(draft=ReportDraft(**draft), **report)


def url_for(path: Path) -> str:
    return f"sqlite:///{path}"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    opened = SqliteStore.open(url_for(tmp_path / "crossings.db"))
    yield opened
    opened.close()


def all_reports(store: SqliteStore, **filters: Any) -> list[Report]:
    page = store.query_reports(ReportQuery(limit=100_000, **filters))
    assert page.next_key is None
    return page.reports


def key(report: Report) -> tuple[datetime, UUID]:
    return (report.draft.observed_at, report.id)


# --- exactly once ---------------------------------------------------------------------------


def test_new_report_is_created_and_reads_back_equal(store: SqliteStore) -> None:
    report = make_report(
        lon=0.1 + 0.2,
        lat=-33.000000000000014,
        accuracy_m=1e-300,
        notes="zwei Männer 🚶\x00 und ein Kind",
        observed_at=datetime(2024, 2, 29, 23, 59, 59, 999_999, tzinfo=UTC),
    )
    [result] = store.add_reports([report])
    assert result.outcome is IngestOutcome.CREATED
    assert result.report == report
    stored = store.get_report(report.id)
    assert stored == report
    assert stored is not None
    assert stored.draft.lon.hex() == report.draft.lon.hex()
    assert stored.draft.observed_at.tzinfo is UTC
    assert stored.received_at.tzinfo is UTC


def test_optional_fields_and_unsnapped_reports_read_back_as_none(store: SqliteStore) -> None:
    report = make_report(direction=None, accuracy_m=None, device_id=None, snap=BEYOND)
    store.add_reports([report])
    assert store.get_report(report.id) == report


def test_replayed_report_is_a_duplicate_carrying_the_original(store: SqliteStore) -> None:
    original = make_report()
    store.add_reports([original])
    replay = Report(original.draft, received_at=T0 + timedelta(hours=1), snap=BEYOND)
    [result] = store.add_reports([replay])
    assert result.outcome is IngestOutcome.DUPLICATE
    assert result.report == original
    assert all_reports(store) == [original]


def test_same_instant_written_with_another_offset_is_a_duplicate(store: SqliteStore) -> None:
    original = make_report()
    store.add_reports([original])
    shifted = original.draft.observed_at.astimezone(timezone(timedelta(hours=2)))
    replay = make_report(id=original.id, observed_at=shifted)
    [result] = store.add_reports([replay])
    assert result.outcome is IngestOutcome.DUPLICATE


def test_reused_id_with_other_content_is_a_conflict(store: SqliteStore) -> None:
    original = make_report(people_count=3)
    store.add_reports([original])
    [result] = store.add_reports([make_report(id=original.id, people_count=4)])
    assert result.outcome is IngestOutcome.CONFLICT
    assert result.report == original
    assert store.get_report(original.id) == original


def test_repeated_id_within_one_call_is_created_once(store: SqliteStore) -> None:
    first = make_report()
    other = make_report()
    batch = [first, other, first, make_report(id=first.id, kind="attempt")]
    outcomes = [(r.outcome, r.report) for r in store.add_reports(batch)]
    assert outcomes == [
        (IngestOutcome.CREATED, first),
        (IngestOutcome.CREATED, other),
        (IngestOutcome.DUPLICATE, first),
        (IngestOutcome.CONFLICT, first),
    ]
    assert {r.id for r in all_reports(store)} == {first.id, other.id}


def test_empty_batch_returns_no_results(store: SqliteStore) -> None:
    assert store.add_reports([]) == []


def test_failed_batch_stores_nothing(store: SqliteStore) -> None:
    naive = make_report(observed_at=datetime(2024, 5, 1, 12))
    with pytest.raises(ValueError, match="UTC offset"):
        store.add_reports([make_report(), make_report(), naive])
    assert all_reports(store) == []
    assert all_reports(store, bbox=(-180.0, -90.0, 180.0, 90.0)) == []


def test_reports_survive_reopening(tmp_path: Path) -> None:
    reports = [make_report(observed_at=T0 + timedelta(seconds=i)) for i in range(5)]
    first = SqliteStore.open(url_for(tmp_path / "crossings.db"))
    first.add_reports(reports)
    first.close()
    second = SqliteStore.open(url_for(tmp_path / "crossings.db"))
    try:
        assert all_reports(second) == reports
        assert all_reports(second, bbox=(25.0, 40.0, 27.0, 42.0)) == reports
        assert second.add_reports(reports[:1])[0].outcome is IngestOutcome.DUPLICATE
    finally:
        second.close()


def test_unknown_id_reads_as_none(store: SqliteStore) -> None:
    assert store.get_report(uuid4()) is None


# --- filters --------------------------------------------------------------------------------


def test_time_window_includes_start_and_excludes_end(store: SqliteStore) -> None:
    at = [make_report(observed_at=T0 + timedelta(microseconds=i)) for i in range(4)]
    store.add_reports(at)
    window = all_reports(store, start=at[1].draft.observed_at, end=at[3].draft.observed_at)
    assert window == at[1:3]


def test_time_window_compares_instants_not_wall_clocks(store: SqliteStore) -> None:
    report = make_report(observed_at=T0)
    store.add_reports([report])
    plus_two = timezone(timedelta(hours=2))
    assert all_reports(store, start=T0.astimezone(plus_two)) == [report]
    assert all_reports(store, end=T0.astimezone(plus_two)) == []


def test_segment_and_kind_filters_combine(store: SqliteStore) -> None:
    wanted = make_report(kind="attempt", snap=snapped_to("s-2"))
    store.add_reports(
        [
            wanted,
            make_report(kind="crossing", snap=snapped_to("s-2")),
            make_report(kind="attempt", snap=snapped_to("s-1")),
            make_report(kind="attempt", snap=BEYOND),
        ]
    )
    assert all_reports(store, segment_id="s-2", kind="attempt") == [wanted]


def test_points_on_the_bbox_edges_are_included(store: SqliteStore) -> None:
    box = (20.1, 40.3, 20.7, 40.9)
    on_edges = [make_report(lon=lon, lat=lat) for lon in (20.1, 20.7) for lat in (40.3, 40.6, 40.9)]
    outside = [
        make_report(lon=20.1 - 1e-12, lat=40.5),
        make_report(lon=20.4, lat=40.9 + 1e-12),
    ]
    store.add_reports(on_edges + outside)
    assert {r.id for r in all_reports(store, bbox=box)} == {r.id for r in on_edges}


def float32_neighbours(value: float) -> list[float]:
    """``value``, the doubles either side of it, and the float32 grid points around it."""
    nearest = np.float32(value)
    grid = [float(np.nextafter(nearest, np.float32(end))) for end in (-np.inf, np.inf)]
    around = [math.nextafter(value, -math.inf), value, math.nextafter(value, math.inf)]
    return [v for v in [*around, float(nearest), *grid] if -180.0 <= v <= 180.0]


@st.composite
def boxes_and_points(
    draw: st.DrawFn,
) -> tuple[tuple[float, float, float, float], list[tuple[float, float]]]:
    lons = sorted(draw(st.floats(-180.0, 180.0)) for _ in range(2))
    lats = sorted(draw(st.floats(-90.0, 90.0)) for _ in range(2))
    lon_edges = [v for edge in lons for v in float32_neighbours(edge)]
    lat_edges = [v for edge in lats for v in float32_neighbours(edge) if -90.0 <= v <= 90.0]
    lon = st.one_of(st.sampled_from(lon_edges), st.floats(-180.0, 180.0))
    lat = st.one_of(st.sampled_from(lat_edges), st.floats(-90.0, 90.0))
    points = draw(st.lists(st.tuples(lon, lat), max_size=40))
    return (lons[0], lats[0], lons[1], lats[1]), points


@pytest.mark.parametrize("rtree_max_rows", [report_queries.RTREE_MAX_ROWS, 0])
@settings(max_examples=60, deadline=None)
@given(case=boxes_and_points())
def test_bbox_matches_a_brute_force_filter_at_float32_edges(
    rtree_max_rows: int,
    case: tuple[tuple[float, float, float, float], list[tuple[float, float]]],
) -> None:
    """Both plans (through the R*Tree, or walking time order) give exactly the inclusive box."""
    bbox, points = case
    min_lon, min_lat, max_lon, max_lat = bbox
    reports = [make_report(lon=lon, lat=lat) for lon, lat in points]
    expected = {
        r.id
        for r in reports
        if min_lon <= r.draft.lon <= max_lon and min_lat <= r.draft.lat <= max_lat
    }
    with (
        tempfile.TemporaryDirectory() as tmp,
        mock.patch.object(report_queries, "RTREE_MAX_ROWS", rtree_max_rows),
    ):
        store = SqliteStore.open(url_for(Path(tmp) / "bbox.db"))
        try:
            store.add_reports(reports)
            found = {r.id for r in all_reports(store, bbox=bbox)}
        finally:
            store.close()
    assert found == expected


# --- keyset pages ---------------------------------------------------------------------------


def test_pages_return_every_report_once_in_order(store: SqliteStore) -> None:
    # Few distinct instants, so ties on observed_at must be broken by id across page edges.
    reports = [make_report(observed_at=T0 + timedelta(seconds=i % 4)) for i in range(23)]
    store.add_reports(reports)
    seen: list[Report] = []
    after = None
    while True:
        page = store.query_reports(ReportQuery(limit=5, after=after))
        seen.extend(page.reports)
        if page.next_key is None:
            break
        assert page.next_key == PageKey(*key(page.reports[-1]))
        after = page.next_key
    assert seen == sorted(reports, key=key)


def test_last_full_page_has_no_next_key(store: SqliteStore) -> None:
    store.add_reports([make_report() for _ in range(5)])
    first = store.query_reports(ReportQuery(limit=5))
    assert len(first.reports) == 5
    assert first.next_key is None


def test_reports_added_between_pages_are_listed_once_if_after_the_cursor(
    store: SqliteStore,
) -> None:
    rng = random.Random(7)

    def at_some_instant() -> Report:
        return make_report(observed_at=T0 + timedelta(seconds=rng.randrange(10)))

    originals = [at_some_instant() for _ in range(40)]
    store.add_reports(originals)
    seen: list[Report] = []
    expected_late: set[UUID] = set()
    after: PageKey | None = None
    while True:
        page = store.query_reports(ReportQuery(limit=6, after=after, kind="crossing"))
        seen.extend(page.reports)
        if page.next_key is None:
            break
        after = page.next_key
        late = [at_some_instant() for _ in range(3)] + [make_report(kind="attempt")]
        store.add_reports(late)
        cursor = (after.observed_at, after.id)
        expected_late |= {r.id for r in late if r.draft.kind == "crossing" and key(r) > cursor}
    ids = [r.id for r in seen]
    assert len(ids) == len(set(ids))
    assert [key(r) for r in seen] == sorted(key(r) for r in seen)
    assert set(ids) == {r.id for r in originals} | expected_late


def test_limit_below_one_is_refused(store: SqliteStore) -> None:
    with pytest.raises(ValueError, match="limit"):
        store.query_reports(ReportQuery(limit=0))


# --- life cycle -----------------------------------------------------------------------------


def test_ping_answers_while_open(store: SqliteStore) -> None:
    store.ping()


def test_closed_store_is_unavailable(tmp_path: Path) -> None:
    closed = SqliteStore.open(url_for(tmp_path / "crossings.db"))
    closed.close()
    with pytest.raises(StoreUnavailable):
        closed.ping()
    with pytest.raises(StoreUnavailable):
        closed.add_reports([make_report()])


# --- concurrent writers ---------------------------------------------------------------------


def test_threads_sharing_one_store_write_and_read_at_once(store: SqliteStore) -> None:
    def write_and_read(thread_no: int) -> list[Report]:
        reports = [make_report(observed_at=T0 + timedelta(seconds=thread_no)) for _ in range(40)]
        for chunk in (reports[:20], reports[20:], reports[:20]):
            store.add_reports(chunk)
            store.query_reports(ReportQuery(limit=10, bbox=(25.0, 40.0, 27.0, 42.0)))
        return reports

    with ThreadPoolExecutor(max_workers=8) as pool:
        written = [r for reports in pool.map(write_and_read, range(16)) for r in reports]
    assert all_reports(store) == sorted(written, key=key)


WRITER_IDS = 400


def shared_report(number: int) -> Report:
    """The same report in every process, so that writers replay each other's submissions."""
    return make_report(
        id=UUID(int=number + 1),
        observed_at=T0 + timedelta(seconds=number),
        lon=26.0 + number / 1000,
        received_at=T0,
    )


def write_shared_reports(
    url: str, seed: int, start: Any, results: multiprocessing.Queue[dict[str, int]]
) -> None:
    """Submit every shared report twice, in a shuffled order, in batches; report the outcomes."""
    start.wait()
    try:
        store = SqliteStore.open(url)
    except BaseException:
        results.put({"failed": 1})
        raise
    try:
        order = list(range(WRITER_IDS)) * 2
        random.Random(seed).shuffle(order)
        counts = dict.fromkeys(IngestOutcome, 0)
        for begin in range(0, len(order), 40):
            batch = [shared_report(n) for n in order[begin : begin + 40]]
            for submitted, result in zip(batch, store.add_reports(batch), strict=True):
                counts[result.outcome] += 1
                assert result.report == submitted
        results.put({str(outcome): count for outcome, count in counts.items()})
    except BaseException:
        results.put({"failed": 1})
        raise
    finally:
        store.close()


def test_processes_writing_the_same_ids_store_each_once(tmp_path: Path) -> None:
    """Several processes open one new file at once and race to write the same ids."""
    url = url_for(tmp_path / "shared.db")
    context = multiprocessing.get_context("spawn")
    writers = 3
    start = context.Barrier(writers)
    results: multiprocessing.Queue[dict[str, int]] = context.Queue()
    processes = [
        context.Process(target=write_shared_reports, args=(url, seed, start, results))
        for seed in range(writers)
    ]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(timeout=30)
        assert process.exitcode == 0
    results.close()
    results.join_thread()

    assert not any("failed" in o for o in outcomes), "a writer failed: see its traceback above"
    assert sum(o["created"] for o in outcomes) == WRITER_IDS
    assert sum(o["conflict"] for o in outcomes) == 0
    assert sum(sum(o.values()) for o in outcomes) == writers * 2 * WRITER_IDS
    store = SqliteStore.open(url)
    try:
        assert all_reports(store) == [shared_report(n) for n in range(WRITER_IDS)]
    finally:
        store.close()
