"""Tiles from the two stores agree, and the PostGIS rollups always equal a count of the reports.

- The same reports in SQLite and PostGIS give the same decoded vector tiles: PostGIS's single
  ST_AsMVT query, PostGIS content encoded in Python, and SQLite's Python tiles, at every zoom,
  with and without filters, through the rollups and around them.
- Any sequence of ingests (with replays and conflicts) leaves ``tile_cells`` and
  ``segment_totals`` equal to a GROUP BY over the stored reports, and the generated grid columns
  equal to ``grid_cell`` computed in Python.
"""

from __future__ import annotations

import math
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import mapbox_vector_tile
import psycopg
import pytest
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.domain.grid import GRID_LEVEL, ROLLUP_LEVELS, grid_cell
from service.domain.reports import ReportDraft
from service.domain.segments import SegmentIndex
from service.domain.tiles import TileFilter, TileQuery, tile_address
from service.settings import Settings
from service.storage import open_store
from service.storage.base import Store
from service.storage.postgis.rollups import PENDING, ROLLUP_TABLES
from service.storage.postgis.store import PostgisStore
from service.usecases.segments import ensure_segments
from service.usecases.submit_reports import submit_batch
from service.usecases.tile_encoding import encode_mvt
from service.usecases.tiles import mvt_tile, tile_content
from tests.conftest import fresh_postgis_database
from tests.factories import KINDS, scattered_drafts

pytestmark = pytest.mark.postgis
T0 = datetime(2026, 1, 1, tzinfo=UTC)
PLACES = [(-73.45, 45.01), (-122.75, 49.0), (-97.2, 49.0), (-67.8, 45.6), (-95.0, 30.0)]


def _drafts(n: int, seed: int) -> list[ReportDraft]:
    # The last place is far from the border: not snapped.
    return scattered_drafts(
        n, seed, places=PLACES, spread=(0.08, 0.05),
        observed_at=lambda rng: T0 + timedelta(seconds=rng.randrange(90 * 86_400)),
    )  # fmt: skip


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Store, Store, SegmentIndex]]:
    """A PostGIS and a SQLite store holding the same 3,000 reports."""
    sqlite_url = f"sqlite:///{tmp_path_factory.mktemp('tiles') / 'tiles.db'}"
    with fresh_postgis_database() as postgis_url:
        pg, lite = (
            open_store(Settings(database_url=postgis_url)),
            open_store(Settings(database_url=sqlite_url)),
        )
        try:
            index = ensure_segments(pg, None)
            ensure_segments(lite, None)
            drafts = _drafts(3_000, seed=11)
            for store, url in ((pg, postgis_url), (lite, sqlite_url)):
                for start in range(0, len(drafts), 1_000):
                    outcomes = submit_batch(
                        store, index, drafts[start : start + 1_000],
                        settings=Settings(database_url=url), now=T0 + timedelta(days=100),
                    )  # fmt: skip
                    assert all(o.result is not None for o in outcomes)
            yield pg, lite, index
        finally:
            pg.close()
            lite.close()


def _tiles_of_interest() -> list[tuple[int, int, int]]:
    out = []
    for z in (0, 2, 5, 7, 8, 9, 10, 12, 14):
        for lon, lat in PLACES[:4]:
            n = 2**z
            x = int((lon + 180) / 360 * n)
            y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)
            out.append((z, x, y))
    return sorted(set(out))


FILTERS = [
    TileFilter(),
    TileFilter(kind="attempt"),
    TileFilter(start=T0 + timedelta(days=10), end=T0 + timedelta(days=40, hours=7)),
    TileFilter(start=datetime(1970, 1, 1, tzinfo=UTC)),  # everything, but around the rollups
]


def _normalised(body: bytes) -> dict[str, dict[int, tuple[Any, Any]]]:
    """layer -> feature id -> (properties, geometry as Shapely)."""
    decoded = mapbox_vector_tile.decode(body, default_options={"y_coord_down": True})
    return {
        name: {
            f["id"]: (f["properties"], shapely.geometry.shape(f["geometry"]))
            for f in layer["features"]
        }
        for name, layer in decoded.items()
    }


_CORE = shapely.box(0, 0, 4096, 4096)


def _assert_same_tile(a: bytes, b: bytes, where: str) -> None:
    left, right = _normalised(a), _normalised(b)
    assert set(left) == set(right), where
    for layer in left:
        assert set(left[layer]) == set(right[layer]), (where, layer)
        for fid, (props, geom) in left[layer].items():
            other_props, other_geom = right[layer][fid]
            assert props == other_props, (where, layer, fid)
            if layer == "segments":
                # PostGIS and Shapely clip and snap lines independently: inside the tile, the same
                # line to a pixel (in the buffer, a line that wiggles across its edge may keep or
                # lose a stub of a few pixels along the edge).
                mine, theirs = geom.intersection(_CORE), other_geom.intersection(_CORE)
                if not (mine.is_empty and theirs.is_empty):
                    assert shapely.hausdorff_distance(mine, theirs) <= 1.5, (where, fid)
            else:
                assert geom.equals(other_geom), (where, layer, fid, geom, other_geom)


@pytest.mark.parametrize("max_points", [4_000, 40])
def test_both_stores_make_the_same_tiles(
    stores: tuple[Store, Store, SegmentIndex], max_points: int
) -> None:
    pg, lite, index = stores
    assert isinstance(pg, PostgisStore)
    checked = 0
    for z, x, y in _tiles_of_interest():
        for flt in FILTERS:
            query = TileQuery(tile_address(z, x, y), flt, points=z >= 10, max_points=max_points)
            native = pg.tile_mvt(query)
            assert native is not None
            from_pg_content = encode_mvt(tile_content(pg, index, query))
            from_sqlite = mvt_tile(lite, index, query)
            where = f"{z}/{x}/{y} {flt} max_points={max_points}"
            _assert_same_tile(native, from_pg_content, where)
            _assert_same_tile(native, from_sqlite, where)
            checked += bool(native)
    assert checked > 50


def test_rollups_and_reports_give_the_same_clusters(
    stores: tuple[Store, Store, SegmentIndex],
) -> None:
    """Without a window, clusters and segment counts come from the rollups; a window that holds
    everything reads the reports: the answers are equal."""
    pg = stores[0]
    everything = TileFilter(start=datetime(1970, 1, 1, tzinfo=UTC))
    for z, x, y in _tiles_of_interest():
        if z >= 10:
            continue
        tile = tile_address(z, x, y)
        rolled = pg.tile_mvt(TileQuery(tile, TileFilter(), points=False, max_points=1))
        counted = pg.tile_mvt(TileQuery(tile, everything, points=False, max_points=1))
        assert rolled is not None and counted is not None
        _assert_same_tile(rolled, counted, f"{z}/{x}/{y}")


# --- rollups under any sequence of ingests ---------------------------------------------------

_positions = st.tuples(
    st.floats(-180, 180, allow_nan=False), st.floats(-89.9, 89.9, allow_nan=False)
)
_batches = st.lists(
    st.lists(
        st.tuples(
            st.integers(0, 40),  # id number: small, so ids repeat (replays and conflicts)
            _positions,
            st.sampled_from(KINDS),
            st.integers(1, 50),
        ),
        min_size=1,
        max_size=30,
    ),
    min_size=1,
    max_size=6,
)


@pytest.fixture(scope="module")
def rollup_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Store, Any]]:
    with fresh_postgis_database() as url:
        store = open_store(Settings(database_url=url))
        try:
            index = ensure_segments(store, None)
            yield url, store, index
        finally:
            store.close()


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batches=_batches)
def test_rollups_equal_a_count_of_the_reports(
    rollup_store: tuple[str, Store, Any], batches: list[list[tuple[Any, ...]]]
) -> None:
    url, store, index = rollup_store
    with psycopg.connect(_libpq(url)) as conn:
        conn.execute(f"TRUNCATE reports, {PENDING}, {', '.join(ROLLUP_TABLES)}")
    for batch in batches:
        drafts = [
            ReportDraft(
                id=uuid.UUID(int=number + 1),
                observed_at=T0,
                lon=lon,
                lat=lat,
                people_count=people,
                kind=kind,
                direction=None,
                accuracy_m=None,
            )
            for number, (lon, lat), kind, people in batch
        ]
        submit_batch(store, index, drafts, settings=Settings(database_url=url), now=T0)
    store.fold_rollups()  # what ingest left pending (the rollup tables alone are compared here)
    with psycopg.connect(_libpq(url)) as conn:
        stored = conn.execute(
            "SELECT ST_X(geom), ST_Y(geom), grid_x, grid_y, kind, people_count, snap_status,"
            " segment_id FROM reports"
        ).fetchall()
        cells = {
            (lv, cx, cy, k): (n, p)
            for lv, cx, cy, k, n, p in conn.execute("SELECT * FROM tile_cells")
        }
        totals = {(s, k): (n, p) for s, k, n, p in conn.execute("SELECT * FROM segment_totals")}
    expected_cells: Counter[tuple[Any, ...]] = Counter()
    expected_people: Counter[tuple[Any, ...]] = Counter()
    expected_totals: Counter[tuple[Any, ...]] = Counter()
    expected_total_people: Counter[tuple[Any, ...]] = Counter()
    for lon, lat, gx, gy, kind, people, status, segment_id in stored:
        assert (gx, gy) == grid_cell(lon, lat)  # PostGIS's generated cell is Python's
        for level in ROLLUP_LEVELS:
            key = (level, gx >> (GRID_LEVEL - level), gy >> (GRID_LEVEL - level), kind)
            expected_cells[key] += 1
            expected_people[key] += people
        if status == "snapped":
            expected_totals[segment_id, kind] += 1
            expected_total_people[segment_id, kind] += people
    assert cells == {k: (n, expected_people[k]) for k, n in expected_cells.items()}
    assert totals == {k: (n, expected_total_people[k]) for k, n in expected_totals.items()}


def test_rebuild_recounts_what_ingest_counted(
    rollup_store: tuple[str, Store, Any], tmp_path: Path
) -> None:
    url, store, index = rollup_store
    with psycopg.connect(_libpq(url)) as conn:
        conn.execute(f"TRUNCATE reports, {PENDING}, {', '.join(ROLLUP_TABLES)}")
    later = T0 + timedelta(days=100)
    drafts = _drafts(500, seed=3)
    submit_batch(store, index, drafts, settings=Settings(database_url=url), now=later)
    for draft in drafts[::7]:  # deleting counts a report out of every rollup
        assert store.delete_report(draft.id)

    def every_rollup() -> dict[str, list[tuple[Any, ...]]]:
        with psycopg.connect(_libpq(url)) as conn:
            return {
                table: sorted(conn.execute(f"SELECT * FROM {table}").fetchall())
                for table in ROLLUP_TABLES
            }

    store.fold_rollups()
    before = every_rollup()
    store.rebuild_rollups()
    assert every_rollup() == before
    assert all(before.values())
