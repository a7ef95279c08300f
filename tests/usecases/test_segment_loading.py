"""`crossings segments load`: all or nothing, idempotent, and clear about what is wrong."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from service.settings import Settings
from service.storage import open_store
from tests.live import run_cli

BUNDLED = Path(__file__).resolve().parents[2] / "data" / "border_segments.geojson"


def _segment_ids(url: str) -> list[str]:
    store = open_store(Settings(database_url=url))
    try:
        return [s.segment_id for s in store.list_segments()]
    finally:
        store.close()


def _doc() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(BUNDLED.read_text())
    return doc


def _write(tmp_path: Path, doc: object, name: str = "segments.geojson") -> Path:
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


def test_loading_twice_leaves_the_same_set(fresh_url: str) -> None:
    for _ in range(2):
        result = run_cli(fresh_url, "segments", "load", str(BUNDLED), text=True)
        assert result.returncode == 0, result.stderr
        assert "loaded 478 segments" in result.stdout
    ids = _segment_ids(fresh_url)
    assert len(ids) == 478 and len(set(ids)) == 478


def test_a_new_set_replaces_the_old_one(fresh_url: str, tmp_path: Path) -> None:
    run_cli(fresh_url, "segments", "load", str(BUNDLED), text=True)
    doc = _doc()
    doc["features"] = [f for f in doc["features"] if f["properties"]["border"] == "MX-US"]
    assert (
        run_cli(fresh_url, "segments", "load", str(_write(tmp_path, doc)), text=True).returncode
        == 0
    )
    assert all(i.startswith("MX-US") for i in _segment_ids(fresh_url))


def _broken(kind: str) -> object:
    doc = _doc()
    feature = doc["features"][100]
    if kind == "not json":
        return "{not json"
    if kind == "not a collection":
        return {"type": "Feature", "geometry": None, "properties": {}}
    if kind == "point geometry":
        feature["geometry"] = {"type": "Point", "coordinates": [0, 0]}
    elif kind == "missing id":
        del feature["properties"]["segment_id"]
    elif kind == "duplicate id":
        feature["properties"]["segment_id"] = doc["features"][99]["properties"]["segment_id"]
    elif kind == "bad coordinate":
        feature["geometry"]["coordinates"][1] = [-200.0, 45.0]
    elif kind == "unknown country":
        feature["properties"]["left_country"] = "XXX"
    return copy.deepcopy(doc)


@pytest.mark.parametrize(
    "kind, message",
    [
        ("not json", "is not JSON"),
        ("not a collection", "not a GeoJSON FeatureCollection"),
        ("point geometry", "feature 100 (CA-US-0101): geometry must be a LineString, not Point"),
        ("missing id", "feature 100: missing segment_id"),
        ("duplicate id", "feature 100: duplicate segment_id 'CA-US-0100'"),
        ("bad coordinate", "feature 100 (CA-US-0101): bad position"),
        ("unknown country", "feature 100 (CA-US-0101): left_country 'XXX'"),
    ],
)
def test_a_bad_file_is_refused_naming_the_feature_and_nothing_changes(
    fresh_url: str, tmp_path: Path, kind: str, message: str
) -> None:
    run_cli(fresh_url, "segments", "load", str(BUNDLED), text=True)
    before = _segment_ids(fresh_url)
    result = run_cli(fresh_url, "segments", "load", str(_write(tmp_path, _broken(kind))), text=True)
    assert result.returncode == 1
    assert message in result.stderr
    assert _segment_ids(fresh_url) == before


def test_a_missing_file_is_refused(fresh_url: str, tmp_path: Path) -> None:
    result = run_cli(fresh_url, "segments", "load", str(tmp_path / "nope.geojson"), text=True)
    assert result.returncode == 1
    assert "cannot read" in result.stderr


def test_a_new_border_re_snaps_stored_reports_and_recounts(fresh_url: str, tmp_path: Path) -> None:
    """After `segments load`, every stored report is snapped to the new border (as a fresh
    snap would), and aggregates and tiles count by the new segments only."""
    import uuid
    from datetime import UTC, datetime, timedelta

    from service.domain.reports import ReportDraft
    from service.domain.snapping import snap
    from service.domain.tiles import TileFilter, TileQuery, tile_address
    from service.usecases.aggregates import AggregateRequest, aggregate
    from service.usecases.segments import ensure_segments, read_segment_file
    from service.usecases.submit_reports import submit_batch
    from service.usecases.transfer import export_reports

    settings = Settings(database_url=fresh_url)
    store = open_store(settings)
    try:
        index = ensure_segments(store, None)
        t0 = datetime(2026, 3, 1, tzinfo=UTC)
        drafts = [
            ReportDraft(uuid.uuid4(), t0 + timedelta(hours=i), lon, lat, 2, "crossing", None, None)
            for i, (lon, lat) in enumerate(
                [(-73.45, 45.01), (-97.2, 49.0), (-106.5, 31.77), (-117.03, 32.54)] * 5
            )
        ]
        submit_batch(store, index, drafts, settings=settings, now=t0 + timedelta(days=2))
    finally:
        store.close()
    # The new border: only the Mexico-US line, its ids renamed.
    doc = _doc()
    doc["features"] = [f for f in doc["features"] if f["properties"]["border"] == "MX-US"]
    for f in doc["features"]:
        f["properties"]["segment_id"] = "NEW-" + f["properties"]["segment_id"]
    path = _write(tmp_path, doc)
    result = run_cli(fresh_url, "segments", "load", str(path), text=True)
    assert result.returncode == 0, result.stderr
    assert "20 stored reports re-snapped" in result.stdout
    audit = run_cli(fresh_url, "audit", text=True).stdout
    assert "segments.load" in audit and '"resnapped":20' in audit
    new_index = read_segment_file(path)
    store = open_store(settings)
    try:
        stored = list(export_reports(store))
        fresh = snap([r.draft.lon for r in stored], [r.draft.lat for r in stored], new_index,
                     max_distance_m=settings.max_snap_distance_m)  # fmt: skip
        assert [r.snap for r in stored] == fresh
        assert {r.snap.segment_id for r in stored} <= {None} | {
            s.segment_id for s in new_index.segments
        }
        result_agg = aggregate(store, new_index, AggregateRequest(group_by=("segment",)))
        counted = {row.group[0]: row.figure.reports or 0 for row in result_agg.rows}
        assert sum(counted.values()) == 20
        assert counted.get(None) == 10  # the Canada-US reports are now beyond reach
        assert all(k is None or k.startswith("NEW-MX-US") for k in counted)
        tile = store.tile_mvt(TileQuery(tile_address(0, 0, 0), TileFilter(), False, 4_000))
        if tile is not None:  # PostGIS: the segments layer counts by the new segments
            import mapbox_vector_tile

            layer = mapbox_vector_tile.decode(tile)["segments"]["features"]
            assert sum(f["properties"]["reports"] for f in layer) == 10
            assert all(f["properties"]["segment_id"].startswith("NEW-") for f in layer)
    finally:
        store.close()
