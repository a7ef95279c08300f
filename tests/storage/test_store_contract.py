"""The report store's contract, on both stores (SQLite and PostGIS): exactly-once ingest, exact
round trips, filters, keyset pages, life cycle and concurrent writers. What only one store has (a
file reopened, processes racing on it, its R*Tree plans) is tested beside it
(test_sqlite_store.py; PostGIS plans in test_postgis_bbox_plans.py)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from uuid import UUID, uuid4

import pytest

from service.domain.queries import PageKey, ReportQuery
from service.domain.reports import BEYOND, IngestOutcome, Report
from service.settings import Settings
from service.storage import open_store
from service.storage.base import Store
from tests.conftest import STORES, all_reports, module_store_url, wipe_reports
from tests.factories import T0, make_report, snapped_to


@pytest.fixture(scope="module", params=STORES)
def store_url_of_module(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A fresh, empty database of each store for this module; each test wipes it first."""
    with module_store_url(request, tmp_path_factory, "contract") as url:
        yield url


@pytest.fixture
def store(store_url_of_module: str) -> Iterator[Store]:
    opened = open_store(Settings(database_url=store_url_of_module))
    wipe_reports(store_url_of_module)
    yield opened
    opened.close()


def key(report: Report) -> tuple[datetime, UUID]:
    return (report.draft.observed_at, report.id)


# --- exactly once ------------------------------------------------------------------------


def test_new_report_is_created_and_reads_back_equal(store: Store) -> None:
    report = make_report(
        lon=0.1 + 0.2,
        lat=-33.000000000000014,
        accuracy_m=1e-300,
        notes='zwei Männer 🚶 und ein Kind\t"=1"',  # NUL is refused by the API (schemas/common.py)
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


def test_optional_fields_and_unsnapped_reports_read_back_as_none(store: Store) -> None:
    report = make_report(direction=None, accuracy_m=None, device_id=None, snap=BEYOND)
    store.add_reports([report])
    assert store.get_report(report.id) == report


def test_replayed_report_is_a_duplicate_carrying_the_original(store: Store) -> None:
    original = make_report()
    store.add_reports([original])
    replay = Report(original.draft, received_at=T0 + timedelta(hours=1), snap=BEYOND)
    [result] = store.add_reports([replay])
    assert result.outcome is IngestOutcome.DUPLICATE
    assert result.report == original
    assert all_reports(store) == [original]


def test_same_instant_written_with_another_offset_is_a_duplicate(store: Store) -> None:
    original = make_report()
    store.add_reports([original])
    shifted = original.draft.observed_at.astimezone(timezone(timedelta(hours=2)))
    replay = make_report(id=original.id, observed_at=shifted)
    [result] = store.add_reports([replay])
    assert result.outcome is IngestOutcome.DUPLICATE


def test_reused_id_with_other_content_is_a_conflict(store: Store) -> None:
    original = make_report(people_count=3)
    store.add_reports([original])
    [result] = store.add_reports([make_report(id=original.id, people_count=4)])
    assert result.outcome is IngestOutcome.CONFLICT
    assert result.report == original
    assert store.get_report(original.id) == original


def test_repeated_id_within_one_call_is_created_once(store: Store) -> None:
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


def test_empty_batch_returns_no_results(store: Store) -> None:
    assert store.add_reports([]) == []


def test_failed_batch_stores_nothing(store: Store) -> None:
    naive = make_report(observed_at=datetime(2024, 5, 1, 12))
    with pytest.raises(ValueError, match="UTC offset"):
        store.add_reports([make_report(), make_report(), naive])
    assert all_reports(store) == []
    assert all_reports(store, bbox=(-180.0, -90.0, 180.0, 90.0)) == []


def test_unknown_id_reads_as_none(store: Store) -> None:
    assert store.get_report(uuid4()) is None


# --- filters -----------------------------------------------------------------------------


def test_time_window_includes_start_and_excludes_end(store: Store) -> None:
    at = [make_report(observed_at=T0 + timedelta(microseconds=i)) for i in range(4)]
    store.add_reports(at)
    window = all_reports(store, start=at[1].draft.observed_at, end=at[3].draft.observed_at)
    assert window == at[1:3]


def test_time_window_compares_instants_not_wall_clocks(store: Store) -> None:
    report = make_report(observed_at=T0)
    store.add_reports([report])
    plus_two = timezone(timedelta(hours=2))
    assert all_reports(store, start=T0.astimezone(plus_two)) == [report]
    assert all_reports(store, end=T0.astimezone(plus_two)) == []


def test_segment_and_kind_filters_combine(store: Store) -> None:
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


def test_points_on_the_bbox_edges_are_included(store: Store) -> None:
    box = (20.1, 40.3, 20.7, 40.9)
    on_edges = [make_report(lon=lon, lat=lat) for lon in (20.1, 20.7) for lat in (40.3, 40.6, 40.9)]
    outside = [
        make_report(lon=20.1 - 1e-12, lat=40.5),
        make_report(lon=20.4, lat=40.9 + 1e-12),
    ]
    store.add_reports(on_edges + outside)
    assert {r.id for r in all_reports(store, bbox=box)} == {r.id for r in on_edges}


# --- keyset pages ------------------------------------------------------------------------


def test_pages_return_every_report_once_in_order(store: Store) -> None:
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


def test_last_full_page_has_no_next_key(store: Store) -> None:
    store.add_reports([make_report() for _ in range(5)])
    first = store.query_reports(ReportQuery(limit=5))
    assert len(first.reports) == 5
    assert first.next_key is None


def test_reports_added_between_pages_are_listed_once_if_after_the_cursor(
    store: Store,
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


def test_limit_below_one_is_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="limit"):
        store.query_reports(ReportQuery(limit=0))


# --- life cycle and concurrent writers ---------------------------------------------------


def test_ping_answers_while_open(store: Store) -> None:
    store.ping()


def test_threads_sharing_one_store_write_and_read_at_once(store: Store) -> None:
    def write_and_read(thread_no: int) -> list[Report]:
        reports = [make_report(observed_at=T0 + timedelta(seconds=thread_no)) for _ in range(40)]
        for chunk in (reports[:20], reports[20:], reports[:20]):
            store.add_reports(chunk)
            store.query_reports(ReportQuery(limit=10, bbox=(25.0, 40.0, 27.0, 42.0)))
        return reports

    with ThreadPoolExecutor(max_workers=8) as pool:
        written = [r for reports in pool.map(write_and_read, range(16)) for r in reports]
    assert all_reports(store) == sorted(written, key=key)
