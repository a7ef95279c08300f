"""Upgrading a store that holds the bundled border of an earlier release (Mexico-US from Natural
Earth) to this release's (the IBWC line): `crossings db upgrade` (and `crossings serve`) replace
it, re-snap every stored report and recount every rollup; a border the operator loaded is never
touched. Both stores."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.domain.errors import BorderChanged
from service.domain.reports import Report, ReportDraft
from service.domain.segments import SegmentIndex, border_fingerprint, parse_segment_collection
from service.domain.snapping import snap
from service.domain.tiles import TileFilter, TileQuery, tile_address
from service.settings import Settings
from service.storage import open_store
from service.storage.base import Store
from service.usecases.aggregates import AggregateRequest, aggregate
from service.usecases.segments import (
    PREVIOUS_BUNDLED_BORDERS,
    BorderUpgrade,
    load_segments,
    read_segment_file,
    stored_border,
    upgrade_bundled_border,
)
from service.usecases.submit_reports import submit_batch
from service.usecases.transfer import export_reports
from tests.live import run_cli, running_server

REPO = Path(__file__).resolve().parents[2]
BUNDLED = REPO / "data" / "border_segments.geojson"
OLD_MX_US = REPO / "tests" / "data" / "old_mx_us_segments.geojson"
T0 = datetime(2026, 1, 20, tzinfo=UTC)


def old_bundled_doc() -> dict[str, Any]:
    """The bundled border before issue #15: data/border_segments.geojson at 8246487. Its Canada-US
    features are today's, byte for byte; its Mexico-US ones are kept in tests/data."""
    doc: dict[str, Any] = json.loads(BUNDLED.read_text())
    doc["features"] = [f for f in doc["features"] if f["properties"]["border"] != "MX-US"]
    doc["features"] += json.loads(OLD_MX_US.read_text())["features"]
    return doc


@pytest.fixture
def old_border_file(tmp_path: Path) -> Path:
    path = tmp_path / "old_border.geojson"
    path.write_text(json.dumps(old_bundled_doc()))
    return path


def _drafts(old: SegmentIndex) -> list[ReportDraft]:
    """Reports along the old Mexico-US line (on and beside its vertices, where the old and new
    lines are up to kilometres apart), a few on the Canada-US line and one beyond reach, over
    two months and all four kinds."""
    mx = [s for s in old.segments if s.border == "MX-US"]
    places = [
        (lon + dlon, lat + dlat)
        for n, s in enumerate(mx)
        for (lon, lat), (dlon, dlat) in zip(
            s.coords[:: max(1, len(s.coords) // 2)], [(0.0, 0.004), (0.003, -0.006)], strict=False
        )
        if n % 2 == 0
    ]
    places += [(-73.45, 45.01), (-97.2, 49.0), (-122.75, 49.0), (-100.0, 40.0)]
    kinds = ("crossing", "attempt", "evidence", "assistance")
    return [
        ReportDraft(
            uuid.UUID(int=i + 1),
            T0 + timedelta(hours=17 * i),
            lon,
            lat,
            1 + i % 4,
            kinds[i % 4],
            ("US", "MX", None)[i % 3],
            None,
        )
        for i, (lon, lat) in enumerate(places)
    ]


def _store_reports_on_old_border(url: str, old_border_file: Path) -> list[ReportDraft]:
    store = open_store(Settings(database_url=url))
    try:
        load_segments(store, old_border_file)
        old = stored_border(store)
        assert border_fingerprint(old.segments) in PREVIOUS_BUNDLED_BORDERS
        drafts = _drafts(old)
        outcomes = submit_batch(store, old, drafts, settings=Settings(database_url=url))
        assert all(o.result is not None for o in outcomes)
        return drafts
    finally:
        store.close()


def _stored(store: Store) -> list[Report]:
    return list(export_reports(store))


def _rollup_figures(store: Store, index: SegmentIndex) -> dict[Any, tuple[int, int]]:
    """Reports and people by segment, side, kind, direction and UTC month and day, as the
    aggregates read them: from the rollups (whole UTC periods read nothing else)."""
    out: dict[Any, tuple[int, int]] = {}
    for bucket in ("month", "day"):
        request = AggregateRequest(
            group_by=("segment", "side", "kind", "direction"),
            bucket=bucket,
            start=datetime(2026, 1, 1, tzinfo=UTC),
            end=datetime(2026, 5, 1, tzinfo=UTC),
        )
        result = aggregate(store, index, request)
        for row in result.rows:
            if row.figure.reports:
                key = (bucket, *row.group, result.buckets[row.bucket].start)
                out[key] = (row.figure.reports, row.figure.people or 0)
    return out


def _counted(reports: list[Report]) -> dict[Any, tuple[int, int]]:
    """The same figures, counted from the reports one by one."""
    counts: Counter[Any] = Counter()
    people: Counter[Any] = Counter()
    for r in reports:
        t = r.draft.observed_at.astimezone(UTC)
        for bucket, start in (
            ("month", datetime(t.year, t.month, 1, tzinfo=UTC)),
            ("day", datetime(t.year, t.month, t.day, tzinfo=UTC)),
        ):
            key = (bucket, r.snap.segment_id, r.snap.side, r.draft.kind, r.draft.direction, start)
            counts[key] += 1
            people[key] += r.draft.people_count
    return {k: (counts[k], people[k]) for k in counts}


def _check_upgraded(url: str, drafts: list[ReportDraft]) -> None:
    new = read_segment_file(BUNDLED)
    settings = Settings(database_url=url)
    store = open_store(settings)
    try:
        index = stored_border(store)
        assert border_fingerprint(index.segments) == border_fingerprint(new.segments)
        stored = sorted(_stored(store), key=lambda r: r.id)
        assert [r.id for r in stored] == [d.id for d in drafts]
        # Every report is snapped as a fresh snap to the new border would snap it: none points
        # at a segment (or a piece of line) that is gone.
        fresh = snap([d.lon for d in drafts], [d.lat for d in drafts], new,
                     max_distance_m=settings.max_snap_distance_m)  # fmt: skip
        assert [r.snap for r in stored] == fresh
        assert {r.snap.segment_id for r in stored} <= {None} | set(new.by_id)
        # The rollups equal a recount: as counted one by one, and as rebuilt from scratch.
        figures = _rollup_figures(store, index)
        assert figures == _counted(stored)
        tile = TileQuery(tile_address(0, 0, 0), TileFilter(), False, 4_000)
        before_rebuild = store.tile_mvt(tile)
        store.rebuild_rollups()
        assert _rollup_figures(store, index) == figures
        assert store.tile_mvt(tile) == before_rebuild  # PostGIS: the tile rollups (else None)
    finally:
        store.close()


def test_the_old_border_rebuilt_from_tests_data_is_the_one_listed_as_bundled() -> None:
    old = parse_segment_collection(old_bundled_doc())
    assert PREVIOUS_BUNDLED_BORDERS[border_fingerprint(old)][0] == len(old) == 457
    new = parse_segment_collection(json.loads(BUNDLED.read_text()))
    assert border_fingerprint(new) not in PREVIOUS_BUNDLED_BORDERS


def test_db_upgrade_replaces_the_old_bundled_border_and_re_snaps_every_report(
    fresh_url: str, old_border_file: Path
) -> None:
    drafts = _store_reports_on_old_border(fresh_url, old_border_file)
    old = read_segment_file(old_border_file)
    new = read_segment_file(BUNDLED)
    on_old = snap([d.lon for d in drafts], [d.lat for d in drafts], old, max_distance_m=25_000)
    on_new = snap([d.lon for d in drafts], [d.lat for d in drafts], new, max_distance_m=25_000)
    moved = sum(a != b for a, b in zip(on_old, on_new, strict=True))
    assert moved > len(drafts) // 2  # the premise: most stored snaps are wrong for the new line

    result = run_cli(fresh_url, "db", "upgrade", text=True)

    assert result.returncode == 0, result.stderr
    assert f"{len(drafts)} stored reports re-snapped" in result.stdout
    _check_upgraded(fresh_url, drafts)
    audit = run_cli(fresh_url, "audit", text=True).stdout
    assert "segments.upgrade" in audit and f'"resnapped":{len(drafts)}' in audit


def test_a_second_upgrade_changes_nothing(fresh_url: str, old_border_file: Path) -> None:
    _store_reports_on_old_border(fresh_url, old_border_file)
    assert run_cli(fresh_url, "db", "upgrade", text=True).returncode == 0
    store = open_store(Settings(database_url=fresh_url))
    try:
        version = store.border_version()
        result = upgrade_bundled_border(store, max_distance_m=25_000)
        assert result.outcome is BorderUpgrade.KEPT
        assert store.border_version() == version
    finally:
        store.close()


def test_a_border_the_operator_loaded_is_never_replaced(
    fresh_url: str, old_border_file: Path, tmp_path: Path
) -> None:
    # The old bundled border with one vertex moved by a metre: the operator's own.
    doc = old_bundled_doc()
    coords = doc["features"][-1]["geometry"]["coordinates"]
    coords[1] = [coords[1][0] + 0.00001, coords[1][1]]
    own = tmp_path / "own.geojson"
    own.write_text(json.dumps(doc))
    assert run_cli(fresh_url, "segments", "load", str(own), text=True).returncode == 0
    store = open_store(Settings(database_url=fresh_url))
    try:
        version, fingerprint = store.border_version(), border_fingerprint(store.list_segments())
    finally:
        store.close()

    result = run_cli(fresh_url, "db", "upgrade", text=True)

    assert result.returncode == 0, result.stderr
    assert "not one an earlier release bundled; kept as it is" in result.stdout
    store = open_store(Settings(database_url=fresh_url))
    try:
        assert store.border_version() == version
        assert border_fingerprint(store.list_segments()) == fingerprint
    finally:
        store.close()


def test_the_upgrade_can_be_turned_off(fresh_url: str, old_border_file: Path) -> None:
    _store_reports_on_old_border(fresh_url, old_border_file)

    result = run_cli(fresh_url, "db", "upgrade", text=True,
                     env={"CROSSINGS_UPGRADE_BUNDLED_BORDER": "false"})  # fmt: skip

    assert result.returncode == 0, result.stderr
    store = open_store(Settings(database_url=fresh_url))
    try:
        assert border_fingerprint(store.list_segments()) in PREVIOUS_BUNDLED_BORDERS
    finally:
        store.close()


def test_a_border_replaced_meanwhile_by_another_process_is_not_replaced_again(
    fresh_url: str, old_border_file: Path
) -> None:
    _store_reports_on_old_border(fresh_url, old_border_file)
    new = read_segment_file(BUNDLED)
    store = open_store(Settings(database_url=fresh_url))
    try:
        seen = store.border_version()
        load_segments(store, BUNDLED)  # the other process
        with pytest.raises(BorderChanged):
            store.replace_border(
                new.segments, lambda xs, ys: [], expected_version=seen
            )  # would re-snap every report to nothing, were it run
        assert store.border_version() == seen + 1
        assert all(r.snap.segment_id is None or r.snap.segment_id in new.by_id
                   for r in _stored(store))  # fmt: skip
    finally:
        store.close()


def test_serve_upgrades_the_border_before_it_answers(fresh_url: str, old_border_file: Path) -> None:
    drafts = _store_reports_on_old_border(fresh_url, old_border_file)

    with running_server(fresh_url) as base:
        segments = httpx.get(f"{base}/v1/segments", params={"border": "MX-US"}).json()

    assert len(segments["features"]) == 127
    _check_upgraded(fresh_url, drafts)
