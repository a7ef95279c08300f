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
    return json.loads(BUNDLED.read_text())


def _write(tmp_path: Path, doc: object, name: str = "segments.geojson") -> Path:
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


def test_loading_twice_leaves_the_same_set(fresh_url: str) -> None:
    for _ in range(2):
        result = run_cli(fresh_url, "segments", "load", str(BUNDLED), text=True)
        assert result.returncode == 0, result.stderr
        assert "loaded 457 segments" in result.stdout
    ids = _segment_ids(fresh_url)
    assert len(ids) == 457 and len(set(ids)) == 457


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
