"""Retention (issue #7): purging the precise fields of older reports keeps every aggregate and
every tile below zoom 10 exactly as it was, on both stores, while the precise fields are gone."""

from __future__ import annotations

import random
import sqlite3
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import mapbox_vector_tile
import psycopg
import pytest

from service.domain.grid import GRID_LEVEL, cell_centre, grid_cell
from service.domain.queries import ReportQuery
from service.domain.reports import IngestOutcome, Report, ReportDraft
from service.domain.segments import SegmentIndex
from service.domain.tiles import TileCluster, TileFilter, TileQuery, tile_address
from service.settings import Settings
from service.storage.base import Store
from service.usecases.aggregates import AggregateRequest, aggregate
from service.usecases.submit_reports import submit_batch
from service.usecases.tiles import mvt_tile
from service.usecases.transfer import export_reports
from tests.conftest import libpq_url, wipe_reports

T0 = datetime(2025, 12, 20, tzinfo=UTC)
CUT = T0 + timedelta(days=183, hours=5, minutes=7, seconds=3)  # not on a day boundary
NOW = datetime(2027, 1, 1, tzinfo=UTC)
LEVEL = 15  # a purged report keeps its cell at this grid level (the finest rollup level)
KINDS = ("crossing", "attempt", "evidence", "assistance")
# Near the border (snapped), and one place far from it (beyond reach): jittered ~5 km.
PLACES = [(-73.45, 45.01), (-122.75, 49.0), (-97.2, 49.0), (-106.5, 31.77), (-95.0, 30.0)]
# Edges of the grid, kept exact: beyond Web Mercator's latitude limit, and at the antimeridian.
EDGES = [(-60.0, 86.5), (179.9999, -87.0), (-180.0, 0.0)]
ZOOMS = (0, 2, 5, 7, 9)


def _drafts(count: int = 160) -> list[ReportDraft]:
    """Reports over a year, half of them before CUT, most with notes, devices and accuracies."""
    rng = random.Random(7)
    drafts = []
    for n in range(count):
        if n < len(EDGES):
            lon, lat = EDGES[n]
        else:
            base_lon, base_lat = PLACES[n % len(PLACES)]
            lon, lat = base_lon + rng.uniform(-0.05, 0.05), base_lat + rng.uniform(-0.05, 0.05)
        drafts.append(
            ReportDraft(
                id=uuid.UUID(int=n + 1),
                observed_at=T0 + timedelta(seconds=rng.randrange(366 * 86_400)),
                lon=lon,
                lat=lat,
                people_count=rng.randint(1, 20),
                kind=rng.choice(KINDS),
                direction=rng.choice(["CA", "US", "MX", None]),
                accuracy_m=rng.choice([None, round(rng.uniform(1.0, 50.0), 1)]),
                notes=rng.choice([None, f"seen from the road, report {n}"]),
                device_id=rng.choice([None, f"device-{n % 6}"]),
            )
        )
    return drafts


def _ingest(url: str, store: Store, index: SegmentIndex) -> dict[uuid.UUID, Report]:
    wipe_reports(url)
    outcomes = submit_batch(store, index, _drafts(), settings=Settings(database_url=url), now=NOW)
    assert {o.result.outcome for o in outcomes} == {IngestOutcome.CREATED}
    return {r.id: r for r in export_reports(store)}


def _is_old(report: Report) -> bool:
    return report.draft.observed_at < CUT


def _purged(report: Report) -> Report:
    """What purging should leave of ``report``."""
    gx, gy = grid_cell(report.draft.lon, report.draft.lat)
    shift = GRID_LEVEL - LEVEL
    lon, lat = cell_centre(LEVEL, gx >> shift, gy >> shift)
    draft = replace(report.draft, lon=lon, lat=lat, accuracy_m=None, notes=None, device_id=None)
    snap = replace(
        report.snap, distance_m=None, snapped_lon=None, snapped_lat=None, chainage_km=None
    )
    return replace(report, draft=draft, snap=snap)


def test_purge_strips_the_precise_fields_of_older_reports_only(
    store_with_border: tuple[str, Store, SegmentIndex],
) -> None:
    url, opened, index = store_with_border
    before = _ingest(url, opened, index)
    old = [r for r in before.values() if _is_old(r)]
    # Not vacuous: the old reports had every precise field to lose, snapped or not.
    assert any(r.draft.notes for r in old) and any(r.draft.device_id for r in old)
    assert any(r.draft.accuracy_m for r in old)
    assert any(r.snap.is_snapped for r in old) and any(not r.snap.is_snapped for r in old)
    assert 0 < len(old) < len(before)

    assert opened.purge_precise(CUT) == len(old)

    after = {r.id: r for r in export_reports(opened)}
    assert after.keys() == before.keys()
    for report_id, report in before.items():
        assert after[report_id] == (_purged(report) if _is_old(report) else report)
        assert opened.get_report(report_id) == after[report_id]
    assert _purged_flags(url) == {r.id: _is_old(r) for r in before.values()}


def test_purged_reports_are_found_at_their_new_position(
    store_with_border: tuple[str, Store, SegmentIndex],
) -> None:
    """The spatial index follows the move (SQLite's R*Tree): a box around the cell centre finds
    the report, a box around where it was no longer does."""
    url, opened, index = store_with_border
    before = _ingest(url, opened, index)
    opened.purge_precise(CUT)
    for report in (r for r in before.values() if _is_old(r)):
        now_at = opened.get_report(report.id)
        assert now_at is not None
        assert report.id in _ids_near(opened, now_at.draft.lon, now_at.draft.lat)
        assert report.id not in _ids_near(opened, report.draft.lon, report.draft.lat)


def test_purge_keeps_every_report_in_its_level_15_cell(
    store_with_border: tuple[str, Store, SegmentIndex],
) -> None:
    """PostGIS recomputes its generated grid_x/grid_y from the moved position: they stay in the
    same level-15 cell, and agree with grid_cell to the bit. SQLite computes cells from lon/lat."""
    url, opened, index = store_with_border
    _ingest(url, opened, index)
    cells_before = _level_15_cells(url)
    opened.purge_precise(CUT)
    assert _level_15_cells(url) == cells_before
    if not url.startswith("sqlite"):
        for lon, lat, gx, gy in _postgis_positions(url):
            assert grid_cell(lon, lat) == (gx, gy)


AGGREGATES = [
    AggregateRequest(group_by=group_by, bucket=bucket, zone=ZoneInfo(zone))
    for group_by in [(), ("segment",), ("side", "kind"), ("border", "direction"), ("region",)]
    for bucket in (None, "day", "week", "month", "year")
    for zone in ["UTC", "Asia/Kathmandu", "America/St_Johns"]
] + [
    # Windows that cut days, so that ranges of reports are read as well as rollups.
    AggregateRequest(
        group_by=("segment", "kind"),
        bucket="month",
        zone=ZoneInfo("America/Los_Angeles"),
        start=T0 + timedelta(days=40, hours=3, seconds=11),
        end=CUT + timedelta(days=20, minutes=17),
    ),
    AggregateRequest(
        group_by=("side",),
        bucket="day",
        start=CUT - timedelta(days=3, hours=2),
        end=CUT + timedelta(hours=30),
        kind="crossing",
    ),
]


def test_purge_keeps_aggregates_identical(
    store_with_border: tuple[str, Store, SegmentIndex],
) -> None:
    url, opened, index = store_with_border
    _ingest(url, opened, index)
    before = [aggregate(opened, index, request) for request in AGGREGATES]
    assert any(result.rows for result in before)
    assert opened.purge_precise(CUT) > 0
    after = [aggregate(opened, index, request) for request in AGGREGATES]
    assert after == before


FILTERS = [
    TileFilter(),  # PostGIS: from the rollups
    TileFilter(kind="attempt"),
    TileFilter(start=T0 + timedelta(days=10, seconds=7), end=CUT + timedelta(days=30)),  # reports
]


def _tile_queries() -> list[TileQuery]:
    queries = []
    for lon, lat in [*PLACES, *EDGES]:
        gx, gy = grid_cell(lon, lat)
        for z in ZOOMS:
            tile = tile_address(z, gx >> (GRID_LEVEL - z), gy >> (GRID_LEVEL - z))
            # Below zoom 10 (tile_points_min_zoom) tiles draw clusters, never points.
            queries += [TileQuery(tile, flt, points=False, max_points=4_000) for flt in FILTERS]
    return list(dict.fromkeys(queries))


def test_purge_keeps_tiles_below_zoom_10_identical(
    store_with_border: tuple[str, Store, SegmentIndex],
) -> None:
    url, opened, index = store_with_border
    _ingest(url, opened, index)
    queries = _tile_queries()
    before = [_tile(opened, index, query) for query in queries]
    assert sum(1 for tile in before if tile.content) > len(queries) // 2
    assert opened.purge_precise(CUT) > 0
    after = [_tile(opened, index, query) for query in queries]
    for query, old, new in zip(queries, before, after, strict=True):
        assert new.content == old.content, query
        assert new.clusters == old.clusters, query
        if query.filter.start is None:
            # Read from the rollups (PostGIS) or in cell order (SQLite): the very same bytes.
            # From reports (a time window), PostGIS may group cells in another order once rows
            # have moved on disk: the same features, not necessarily the same bytes.
            assert new.encoded == old.encoded, query
            assert new.native == old.native, query


class Tile(NamedTuple):
    encoded: bytes  # as served (on PostGIS, the native encoding)
    content: dict[str, Any]  # decoded, each layer's features in a stable order
    native: bytes | None  # the store's own encoding (PostGIS's ST_AsMVT; None on SQLite)
    clusters: list[TileCluster]  # the reports layer as plain data (GeoJSON tiles), sorted


def _tile(store: Store, index: SegmentIndex, query: TileQuery) -> Tile:
    encoded = mvt_tile(store, index, query)
    layers = mapbox_vector_tile.decode(encoded) if encoded else {}
    content = {
        name: sorted(
            (feature["id"], feature["geometry"], sorted(feature["properties"].items()))
            for feature in layer["features"]
        )
        for name, layer in layers.items()
    }
    clusters = sorted(store.tile_reports(query).clusters, key=lambda c: (c.cx, c.cy))
    return Tile(encoded, content, store.tile_mvt(query), clusters)


def test_purging_again_purges_nothing(store_with_border: tuple[str, Store, SegmentIndex]) -> None:
    url, opened, index = store_with_border
    _ingest(url, opened, index)
    assert opened.purge_precise(CUT) > 0
    once = list(export_reports(opened))
    assert opened.purge_precise(CUT) == 0
    assert list(export_reports(opened)) == once


def test_a_replayed_purged_report_is_still_a_duplicate(
    store_with_border: tuple[str, Store, SegmentIndex],
) -> None:
    url, opened, index = store_with_border
    before = _ingest(url, opened, index)
    opened.purge_precise(CUT)
    drafts = _drafts()
    outcomes = submit_batch(opened, index, drafts, settings=Settings(database_url=url), now=NOW)
    assert [o.result.outcome for o in outcomes] == [IngestOutcome.DUPLICATE] * len(drafts)
    for draft, outcome in zip(drafts, outcomes, strict=True):
        stored = before[draft.id]
        # The stored report is what is left of it, not the replay.
        assert outcome.result.report == (_purged(stored) if _is_old(stored) else stored)
    assert opened.purge_precise(CUT) == 0


# Looking into the stores themselves: the purged flag, and PostGIS's generated grid cells.


def _ids_near(store: Store, lon: float, lat: float) -> set[uuid.UUID]:
    d = 1e-7
    page = store.query_reports(ReportQuery(bbox=(lon - d, lat - d, lon + d, lat + d), limit=1000))
    return {r.id for r in page.reports}


def _sqlite(url: str) -> sqlite3.Connection:
    return sqlite3.connect(Path(url.removeprefix("sqlite:///")))


def _postgis(url: str) -> psycopg.Connection[Any]:
    return psycopg.connect(libpq_url(url))


def _purged_flags(url: str) -> dict[uuid.UUID, bool]:
    if url.startswith("sqlite"):
        conn = _sqlite(url)
        try:
            rows = conn.execute("SELECT id, purged FROM reports").fetchall()
        finally:
            conn.close()
        return {uuid.UUID(id_): bool(purged) for id_, purged in rows}
    with _postgis(url) as pg:
        return dict(pg.execute("SELECT id, purged FROM reports").fetchall())


def _level_15_cells(url: str) -> dict[Any, tuple[int, int]]:
    shift = GRID_LEVEL - LEVEL
    if url.startswith("sqlite"):
        conn = _sqlite(url)
        try:
            rows = conn.execute("SELECT id, lon, lat FROM reports").fetchall()
        finally:
            conn.close()
        cells = {id_: grid_cell(lon, lat) for id_, lon, lat in rows}
    else:
        with _postgis(url) as pg:
            rows = pg.execute("SELECT id, grid_x, grid_y FROM reports").fetchall()
        cells = {id_: (gx, gy) for id_, gx, gy in rows}
    return {id_: (gx >> shift, gy >> shift) for id_, (gx, gy) in cells.items()}


def _postgis_positions(url: str) -> list[tuple[float, float, int, int]]:
    with _postgis(url) as pg:
        return pg.execute(
            "SELECT ST_X(geom), ST_Y(geom), grid_x, grid_y FROM reports WHERE purged"
        ).fetchall()


def test_tile_rollups_still_count_the_reports_after_a_purge(
    store_with_border: tuple[str, Store, SegmentIndex],
) -> None:
    """Cells finer than the purge level move with the purged reports (PostGIS keeps them)."""
    url, opened, index = store_with_border
    if url.startswith("sqlite"):
        pytest.skip("SQLite keeps no tile rollups")
    _ingest(url, opened, index)
    assert opened.purge_precise(CUT) > 0
    opened.fold_rollups()  # the rollup table alone is compared below
    import psycopg

    with psycopg.connect(libpq_url(url)) as conn:
        kept = conn.execute(
            "SELECT level, cx, cy, kind, reports, people FROM tile_cells ORDER BY 1, 2, 3, 4"
        ).fetchall()
        counted = conn.execute(
            "SELECT l.level, grid_x >> (24 - l.level), grid_y >> (24 - l.level), kind, count(*),"
            " sum(people_count) FROM reports CROSS JOIN (VALUES (12), (15), (18)) AS l(level)"
            " GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4"
        ).fetchall()
    assert kept == counted
