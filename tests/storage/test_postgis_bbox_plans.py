"""PostGIS bbox pages: walking the time index and fetching the matches first give the same pages.

query_reports reads a page of a box one of two ways (service/storage/postgis/pages.py): walking
the (observed_at, id) index, testing each report, or fetching every match through the cell index
(migration 0010) and sorting them. Which one depends on how many reports the box holds, counted
from the tile rollups. These tests pin that both ways return the same rows in the same order, page
after page (ties on observed_at included, both directions, with filters), that both give exactly
the reports inside any box (edges on, and a hair either side of, stored positions), that each way
is chosen where it should be, and that a count the rollups get wrong costs time, never rows.
"""

from __future__ import annotations

import dataclasses
import functools
import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, Row, text

from service.domain.queries import PageKey, ReportQuery
from service.domain.reports import BEYOND, Report, ReportDraft
from service.settings import Settings
from service.storage.postgis import pages
from service.storage.postgis.store import PostgisStore
from tests.conftest import fresh_postgis_database

pytestmark = pytest.mark.postgis

T0 = datetime(2026, 3, 1, tzinfo=UTC)
HOT_SPOT = (-73.52, 45.01)
DENSE_BOX = (-73.6, 44.95, -73.44, 45.07)  # most of the hot spot's 3,000 reports
SPARSE_BOX = (-95.0, 46.0, -93.0, 47.0)  # a few dozen of the scattered ones
EDGE_BOX = (-90.0, 46.5, -89.5, 47.0)  # reports placed on its edges and corners
EMPTY_BOX = (-60.0, 10.0, -59.0, 11.0)


def _draft(rng: random.Random, lon: float, lat: float) -> ReportDraft:
    # Whole hours only: many reports share an observed_at, so the id decides their order.
    return ReportDraft(
        id=uuid.UUID(int=rng.getrandbits(128), version=4),
        observed_at=T0 + timedelta(hours=rng.randrange(60 * 24)),
        lon=lon,
        lat=lat,
        people_count=rng.randint(1, 6),
        kind=rng.choice(("crossing", "attempt")),
        direction=rng.choice(("CA", "US", None)),
        accuracy_m=None,
        notes=None,
        device_id=None,
    )


def _reports(seed: int) -> list[Report]:
    """3,000 reports around a hot spot, 1,000 scattered along the border, 40 on a box's edges."""
    rng = random.Random(seed)
    drafts = [
        _draft(rng, round(rng.gauss(HOT_SPOT[0], 0.03), 6), round(rng.gauss(HOT_SPOT[1], 0.02), 6))
        for _ in range(3_000)
    ]
    drafts += [
        _draft(rng, round(rng.uniform(-100.0, -80.0), 6), round(rng.uniform(45.0, 49.0), 6))
        for _ in range(1_000)
    ]
    west, south, east, north = EDGE_BOX
    drafts += [
        _draft(rng, lon, lat)
        for lon, lat in [(west, south), (east, north), (west, 46.7), (-89.8, north)] * 10
    ]
    received = T0 + timedelta(days=90)
    return [Report(draft=d, received_at=received, snap=BEYOND) for d in drafts]


@pytest.fixture(scope="module")
def store() -> Iterator[PostgisStore]:
    """A store of its own holding _reports(), analysed (so reltuples is known)."""
    with fresh_postgis_database() as url:
        opened = PostgisStore.open(Settings(database_url=url).store_options)
        try:
            batch = _reports(seed=7)
            for start in range(0, len(batch), 1_000):
                opened.add_reports(batch[start : start + 1_000])
            libpq = url.replace("postgresql+psycopg://", "postgresql://", 1)
            with psycopg.connect(libpq, autocommit=True) as conn:
                conn.execute("VACUUM ANALYZE reports")
            yield opened
        finally:
            opened.close()


@pytest.fixture
def conn(store: PostgisStore) -> Iterator[Connection]:
    """A connection in a transaction that is rolled back: tests may change the rollups."""
    with store.engine.connect() as connection, connection.begin() as transaction:
        yield connection
        transaction.rollback()


def _walked(conn: Connection, query: ReportQuery) -> list[Row[Any]]:
    """The page as walking in time order reads it."""
    shape = pages._Shape.of(query)
    return list(conn.execute(pages._walk(shape), pages._params(query, _plan(query, 0.0))))


def _matched_first(conn: Connection, query: ReportQuery, *, cap: int) -> list[Row[Any]] | None:
    """The page as fetching at most ``cap`` matches first reads it; None if more match (its
    rows then say so)."""
    shape = pages._Shape.of(query)
    params = pages._params(query, _plan(query, 0.0)) | {"cap": cap}
    rows = list(conn.execute(pages._page_statement(shape, "matches"), params))
    return None if rows and rows[0].beyond else rows


def _plan(query: ReportQuery, reltuples: float) -> pages.BoxPlan | None:
    if query.bbox is None:
        return None
    return pages.BoxPlan.of(query.bbox, limit=query.limit, reltuples=reltuples)


def _matches_first(conn: Connection, box: tuple[float, float, float, float], *, limit: int) -> bool:
    """Whether the rollups' count says to fetch the box's matches first."""
    plan = pages.BoxPlan.of(box, limit=limit, reltuples=pages._reltuples(conn))
    return plan.matches_first(pages._cell_counts(conn))


def _inside(report: Report, box: tuple[float, float, float, float]) -> bool:
    return box[0] <= report.draft.lon <= box[2] and box[1] <= report.draft.lat <= box[3]


def _expected(query: ReportQuery) -> list[uuid.UUID]:
    """Every report of ``query`` in page order, computed in Python from what was stored."""
    assert query.bbox is not None
    chosen = [
        r
        for r in _reports(seed=7)
        if _inside(r, query.bbox)
        and (query.start is None or r.draft.observed_at >= query.start)
        and (query.kind is None or r.draft.kind == query.kind)
    ]
    chosen.sort(key=lambda r: (r.draft.observed_at, r.id), reverse=query.descending)
    return [r.id for r in chosen]


QUERIES = [
    pytest.param(ReportQuery(bbox=DENSE_BOX, limit=250), id="dense"),
    pytest.param(ReportQuery(bbox=DENSE_BOX, limit=250, descending=True), id="dense-newest-first"),
    pytest.param(
        ReportQuery(bbox=DENSE_BOX, limit=100, start=T0 + timedelta(days=50), kind="attempt"),
        id="dense-late-attempts",
    ),
    pytest.param(ReportQuery(bbox=SPARSE_BOX, limit=7), id="sparse"),
    pytest.param(ReportQuery(bbox=SPARSE_BOX, limit=7, descending=True), id="sparse-newest-first"),
    pytest.param(ReportQuery(bbox=EDGE_BOX, limit=6), id="edges"),
    pytest.param(ReportQuery(bbox=EMPTY_BOX, limit=10), id="empty"),
]


@pytest.mark.parametrize("query", QUERIES)
def test_walking_in_time_order_and_fetching_matches_first_give_the_same_rows(
    conn: Connection, query: ReportQuery
) -> None:
    pages_read = 0
    while True:
        walked = _walked(conn, query)
        matched = _matched_first(conn, query, cap=1_000_000)
        assert matched is not None
        assert [tuple(row) for row in matched] == [tuple(row) for row in walked]
        pages_read += 1
        if len(walked) <= query.limit:
            break
        last = walked[query.limit - 1]
        query = dataclasses.replace(query, after=PageKey(last.observed_at, last.id))
    assert pages_read > 1 or not _expected(query)


@pytest.mark.parametrize("query", QUERIES)
def test_store_pages_through_a_box_without_skips_or_repeats(
    store: PostgisStore, query: ReportQuery
) -> None:
    seen: list[uuid.UUID] = []
    while True:
        page = store.query_reports(query)
        seen += [r.id for r in page.reports]
        if page.next_key is None:
            break
        query = dataclasses.replace(query, after=page.next_key)
    assert seen == _expected(query)


def test_a_sparse_box_is_read_matches_first_and_a_dense_one_in_time_order(
    conn: Connection,
) -> None:
    assert _matches_first(conn, SPARSE_BOX, limit=7)
    assert _matches_first(conn, EMPTY_BOX, limit=7)
    assert not _matches_first(conn, DENSE_BOX, limit=7)


def test_the_cell_counts_kept_in_memory_hold_every_report(conn: Connection) -> None:
    # The rollup has a row per cell and kind: each cell's count is their sum.
    counts = pages._cell_counts(conn)
    assert sum(counts.values()) == len(_stored())
    assert len(counts) < conn.execute(text("SELECT count(*) FROM tile_cells")).scalar_one()


def test_bigger_pages_read_more_boxes_matches_first(conn: Connection) -> None:
    # Walking reads about limit * N / n rows: the bigger the page, the more it costs.
    assert not _matches_first(conn, DENSE_BOX, limit=10)
    assert _matches_first(conn, DENSE_BOX, limit=100_000)


def test_a_box_denser_than_its_rollups_say_is_walked_after_all(conn: Connection) -> None:
    conn.execute(text("DELETE FROM tile_cells"))  # as if reports were loaded around ingest
    conn.info.pop("cell_counts", None)  # as a minute later
    query = ReportQuery(bbox=DENSE_BOX, limit=50)
    assert _matches_first(conn, DENSE_BOX, limit=query.limit)
    assert query.bbox is not None
    cap = pages.BoxPlan.of(query.bbox, limit=query.limit, reltuples=pages._reltuples(conn)).cap
    assert cap < len(_expected(query))
    assert _matched_first(conn, query, cap=cap) is None
    page = pages.query_reports(conn, query)
    assert [r.id for r in page.reports] == _expected(query)[:50]
    assert page.next_key is not None


# Box edges: on a stored report's coordinate, or a hair (1e-9 degrees, under a millimetre) or a
# metre (1e-5) either side of it, so that reports lie on, just inside and just outside each edge
# (and on grid cell edges, which the cell index rounds either way).
_NUDGES = st.sampled_from([0.0, 1e-9, -1e-9, 1e-5, -1e-5])


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_both_ways_give_exactly_the_reports_inside_any_box(
    store: PostgisStore, data: st.DataObject
) -> None:
    stored = _stored()
    a, b = data.draw(st.sampled_from(stored)), data.draw(st.sampled_from(stored))
    lons = sorted((a.draft.lon + data.draw(_NUDGES), b.draft.lon + data.draw(_NUDGES)))
    lats = sorted((a.draft.lat + data.draw(_NUDGES), b.draft.lat + data.draw(_NUDGES)))
    box = (lons[0], lats[0], lons[1], lats[1])
    query = ReportQuery(bbox=box, limit=data.draw(st.sampled_from([1, 20, 5_000])))
    inside = [r.id for r in sorted(stored, key=lambda r: (r.draft.observed_at, r.id))
              if _inside(r, box)]  # fmt: skip
    with store.engine.connect() as conn:
        walked = [row.id for row in _walked(conn, query) if _row_inside(row, box)]
        matched = _matched_first(conn, query, cap=1_000_000)
    assert matched is not None
    # Matches first tests positions exactly in SQL. The walk's && admits a metre more, which
    # query_reports drops: its rows inside the box are the first ones, perhaps fewer.
    assert [row.id for row in matched][: query.limit] == inside[: query.limit]
    assert walked == inside[: len(walked)]
    # So the store's page may come out short, never wrong, and its pages hold every report.
    paged: list[uuid.UUID] = []
    while len(paged) < query.limit:
        page = store.query_reports(query)
        paged += [r.id for r in page.reports]
        if page.next_key is None:
            break
        query = dataclasses.replace(query, after=page.next_key)
    assert paged[: query.limit] == inside[: query.limit]


@functools.cache
def _stored() -> list[Report]:
    return _reports(seed=7)


def _row_inside(row: Row[Any], box: tuple[float, float, float, float]) -> bool:
    return bool(box[0] <= row.lon <= box[2] and box[1] <= row.lat <= box[3])
