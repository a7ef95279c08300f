"""Bounded work (issue #13), on both stores: an aggregates request over a cap is refused before
any counting, naming the cap; the group bound holds for every grouping; and when the client goes
away the statement stops (PostGIS: pg_stat_activity shows it gone) — an analyst's count, report
and OGC items pages, and an analyst's tiles."""

from __future__ import annotations

import itertools
import math
import socket
import threading
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import httpx
import psycopg
import pytest
from fastapi import FastAPI

from service.api.lifecycle import current_border, current_store
from service.api.state import app_state
from service.app import create_app
from service.domain.aggregation import GROUP_KEYS
from service.settings import Settings
from service.usecases.aggregates import AggregateRequest, group_bound, time_plan
from tests.conftest import libpq_url, make_key, make_settings, wipe_reports
from tests.factories import ROXHAM_ROAD, report_body

CAPS = {"aggregate_max_cells": 1_000, "aggregate_max_range_days": 3_660, "aggregate_max_parts": 900}


@pytest.fixture
async def capped(store_url: str) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    wipe_reports(store_url)
    application = create_app(make_settings(store_url, rate_limit_public=0, **CAPS))
    async with application.router.lifespan_context(application):
        token = make_key(current_store(application), "analyst")
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=application),
            base_url="http://testserver",
            headers={"Authorization": f"Bearer {token}"},
        ) as c:
            yield application, c


def _refused(response: httpx.Response, field: str, cap: int, setting: str) -> None:
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["type"] == "/problems/too-costly"
    (error,) = body["errors"]
    assert error["field"] == field
    assert f"{cap:,}" in error["reason"] and setting in error["reason"], error


async def test_more_cells_than_the_cap_are_refused(
    capped: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    app, c = capped
    index = current_border(app).index
    year = {"start": "2025-01-01T00:00:00Z", "end": "2026-01-01T00:00:00Z"}
    # 13 months x every segment (and the reports beyond reach) > 1,000 cells.
    assert len(index.segments) * 13 > CAPS["aggregate_max_cells"]
    response = await c.get(
        "/v1/aggregates", params={**year, "group_by": "segment", "bucket": "month"}
    )
    _refused(response, "group_by", 1_000, "CROSSINGS_AGGREGATE_MAX_CELLS")
    # One segment's months, or all segments' totals, are well under.
    one = index.segments[0].segment_id
    params = {**year, "group_by": "segment", "bucket": "month", "segment_id": one}
    assert (await c.get("/v1/aggregates", params=params)).status_code == 200
    params = {**year, "group_by": "segment"}
    assert (await c.get("/v1/aggregates", params=params)).status_code == 200
    # Days of three years, no groups: 1,097 periods.
    params = {"start": "2023-01-01T00:00:00Z", "end": "2026-01-01T00:00:00Z", "bucket": "day"}
    _refused(await c.get("/v1/aggregates", params=params), "bucket", 1_000, "MAX_CELLS")
    params["f"] = "csv"
    _refused(await c.get("/v1/aggregates", params=params), "bucket", 1_000, "MAX_CELLS")


async def test_a_window_longer_than_the_cap_is_refused(
    capped: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    app, c = capped
    current_store(app).add_reports([_report()])  # the window runs from start to the newest report
    params = {"start": "1836-01-01T00:00:00Z", "bucket": "year", "tz": "Asia/Kathmandu"}
    _refused(await c.get("/v1/aggregates", params=params), "start", 3_660, "MAX_RANGE_DAYS")
    params = {"start": "2017-01-01T00:00:00Z", "end": "2026-12-01T00:00:00Z"}
    assert (await c.get("/v1/aggregates", params=params)).status_code == 200


async def test_a_zone_that_needs_more_counting_parts_than_the_cap_is_refused(
    capped: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    _, c = capped
    start, end = datetime(2024, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC)

    def parts(zone: str) -> int:
        _, periods, ranges = time_plan("week", ZoneInfo(zone), start, end, ("day",))
        return len(periods) + len(ranges)

    assert parts("UTC") <= CAPS["aggregate_max_parts"] < parts("Asia/Kathmandu")
    params = {"start": start.isoformat(), "end": end.isoformat(), "bucket": "week"}
    assert (await c.get("/v1/aggregates", params=params | {"tz": "UTC"})).status_code == 200
    response = await c.get("/v1/aggregates", params=params | {"tz": "Asia/Kathmandu"})
    _refused(response, "tz", 900, "CROSSINGS_AGGREGATE_MAX_PARTS")


async def test_the_group_bound_holds_for_every_grouping(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    c = client
    index = current_border(app).index
    kinds = app_state(app).settings.report_kinds
    # Reports on several segments, both sides, every kind and direction, and one beyond reach.
    places = [ROXHAM_ROAD, (-79.0377, 43.0896), (-117.0296, 32.5422), (-106.45, 31.76)]
    bodies = [
        report_body(lon=lon + 0.01 * side, lat=lat - 0.01 * side, kind=kind, direction=direction)
        for (lon, lat), side, kind, direction in itertools.product(
            places, (-1, 1), kinds, ("CA", "US", "MX", None)
        )
    ]
    bodies.append(report_body(lon=10.0, lat=10.0))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://testserver",
        headers={"Authorization": f"Bearer {make_key(current_store(app), 'reporter')}"},
    ) as reporter:
        response = await reporter.post("/v1/reports/batch", json=bodies)
        assert response.status_code == 200
        assert response.json()["summary"]["created"] > 50
    for size in (1, 2, 3):
        for keys in itertools.combinations(GROUP_KEYS, size):
            answer = await c.get("/v1/aggregates", params={"group_by": ",".join(keys)})
            assert answer.status_code == 200, answer.text
            groups = len(answer.json()["rows"])
            assert 0 < groups <= group_bound(AggregateRequest(group_by=keys), index, kinds), keys


def _report() -> Any:
    from service.api.schemas.reports import parse_report
    from service.domain.errors import Problem
    from service.domain.reports import BEYOND, Report

    draft = parse_report(report_body())
    assert not isinstance(draft, Problem), draft
    return Report(draft, datetime.now(UTC), BEYOND)


# --- the work stops when the client goes away --------------------------------------------------


def _abandon(base: str, path: str, *, key: str, after_s: float) -> None:
    """Send a GET on a raw socket and close it after ``after_s`` without reading the answer."""
    parts = urlsplit(base)
    with socket.create_connection((parts.hostname, parts.port)) as sock:
        head = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n\r\n"
        sock.sendall(head.encode())
        time.sleep(after_s)


def _running(dsn: str, marker: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(
            "SELECT pid, state, wait_event_type, left(query, 60) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND state = 'active' AND query LIKE %s",
            (f"%{marker}%",),
        ).fetchall()


@pytest.mark.postgis
def test_a_client_that_goes_away_stops_its_statement(postgis_url: str, tmp_path: Any) -> None:
    """The count statement is made to wait (the tables it reads are locked by another
    transaction, as a slow statement would keep running); the client hangs up; the server cancels
    the statement at once, long before the statement timeout. An analyst's count: the public's
    is a sum over the release in memory, with no statement to cancel."""
    from tests.live import live_key, running_server

    key = live_key(postgis_url, "analyst")
    dsn = libpq_url(postgis_url)
    log = tmp_path / "server.log"
    path = (
        "/v1/aggregates?start=2025-01-01T00:00:00Z&end=2026-01-01T00:00:00Z"
        "&bucket=day&tz=Asia/Kathmandu&group_by=kind"
    )
    with (
        running_server(postgis_url, log_to=log, CROSSINGS_LOG_LEVEL="info") as base,
        psycopg.connect(dsn) as locker,
    ):
        locker.execute(
            "LOCK TABLE reports, count_days, count_months, count_segment_months IN ACCESS EXCLUSIVE MODE"
        )
        client = threading.Thread(
            target=_abandon, args=(base, path), kwargs={"key": key, "after_s": 1.5}
        )
        client.start()
        deadline = time.monotonic() + 10
        while not _running(dsn, "unnest") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _running(dsn, "unnest"), "the count never started"
        client.join()
        deadline = time.monotonic() + 5
        while _running(dsn, "unnest") and time.monotonic() < deadline:
            time.sleep(0.05)
        left = _running(dsn, "unnest")
        locker.rollback()
        assert left == [], left
        # The server is well, and counts again once the tables are free.
        answer = httpx.get(f"{base}{path}", timeout=30, headers={"Authorization": f"Bearer {key}"})
        assert answer.status_code == 200
    assert "client went away" in log.read_text()


def _tile_over(lon: float, lat: float, z: int) -> str:
    n = 2**z
    x = int((lon + 180.0) / 360.0 * n)
    y = int((1.0 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2.0 * n)
    return f"{z}/{x}/{y}"


_POINT_ZOOM = int(Settings.model_fields["tile_points_min_zoom"].default)
# A page of reports (v1 and OGC items, CSV too) and an analyst's tile at a zoom that places
# single reports (MVT built by PostGIS, and GeoJSON built from the store's rows).
_READS = {
    "v1_reports_page": "/v1/reports?limit=100",
    "ogc_items_page": "/ogc/collections/reports/items?limit=100",
    "ogc_items_page_csv": "/ogc/collections/reports/items?limit=100&f=csv",
    "analyst_tile_mvt": f"/v1/tiles/{_tile_over(*ROXHAM_ROAD, _POINT_ZOOM)}.mvt",
    "analyst_tile_geojson": f"/v1/tiles/{_tile_over(*ROXHAM_ROAD, _POINT_ZOOM)}.geojson",
}


def _blocked_by(dsn: str, locker: int) -> list[tuple[Any, ...]]:
    """The statements of this database waiting for the locks that ``locker`` holds (but the
    server's rollup folder, which folds what earlier tests posted in the background)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(
            "SELECT pid, state, wait_event_type, left(query, 80) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND %s = ANY(pg_blocking_pids(pid))"
            " AND query NOT LIKE '%%DELETE FROM rollup_pending%%'",
            (locker,),
        ).fetchall()


@pytest.mark.postgis
@pytest.mark.parametrize("read", sorted(_READS))
def test_a_page_or_tile_whose_client_goes_away_stops_its_statement(
    read: str, postgis_url: str, tmp_path: Any
) -> None:
    """As the count above, for pages and analysts' tiles: the read's statement waits on the
    locked tables (as a slow one would keep running), the client hangs up, and the statement is
    cancelled at once (gone from pg_stat_activity long before the 30 s statement timeout)."""
    from tests.live import live_key, running_server

    key = live_key(postgis_url, "analyst")
    dsn = libpq_url(postgis_url)
    log = tmp_path / "server.log"
    path = _READS[read]
    with (
        running_server(postgis_url, log_to=log, CROSSINGS_LOG_LEVEL="info") as base,
        psycopg.connect(dsn) as locker,
    ):
        # Pages and tiles read the reports themselves (the folder never does).
        locker.execute("LOCK TABLE reports IN ACCESS EXCLUSIVE MODE")
        locker_pid = locker.info.backend_pid
        client = threading.Thread(
            target=_abandon, args=(base, path), kwargs={"key": key, "after_s": 1.5}
        )
        client.start()
        deadline = time.monotonic() + 10
        while not _blocked_by(dsn, locker_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        waiting = _blocked_by(dsn, locker_pid)
        assert waiting, f"the {read} statement never started"
        client.join()
        deadline = time.monotonic() + 5
        while _blocked_by(dsn, locker_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        left = _blocked_by(dsn, locker_pid)
        locker.rollback()
        assert left == [], (waiting, left)
        # The server is well, and answers again once the tables are free.
        answer = httpx.get(f"{base}{path}", timeout=30, headers={"Authorization": f"Bearer {key}"})
        assert answer.status_code in (200, 204), answer.text
    assert "client went away" in log.read_text()


def test_a_cancelled_scope_interrupts_a_running_sqlite_statement(sqlite_url: str) -> None:
    """The SQLite store's count is interrupted the same way (sqlite3's interrupt)."""
    from service.settings import Settings
    from service.storage import open_store
    from service.storage.cancel import CURRENT, CancelScope, cancellable

    store = open_store(Settings(database_url=sqlite_url))
    slow = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n"
    scope = CancelScope()
    outcome: list[BaseException | object] = []

    def count() -> None:
        CURRENT.set(scope)
        try:
            store._db.read(  # type: ignore[attr-defined]
                lambda conn: _interruptible(conn, slow, cancellable)
            )
            outcome.append("finished")
        except BaseException as error:
            outcome.append(error)

    worker = threading.Thread(target=count)
    started = time.monotonic()
    worker.start()
    time.sleep(0.3)
    scope.cancel()
    worker.join(timeout=10)
    store.close()
    assert not worker.is_alive()
    assert time.monotonic() - started < 5
    assert "interrupted" in str(outcome[0])


def _interruptible(conn: Any, sql: str, cancellable: Any) -> Any:
    with cancellable(conn.interrupt):
        return conn.execute(sql).fetchone()
