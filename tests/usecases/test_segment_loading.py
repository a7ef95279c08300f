"""`crossings segments load`: all or nothing, idempotent, and clear about what is wrong."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from service.settings import Settings
from service.storage import open_store

BUNDLED = Path(__file__).resolve().parents[2] / "data" / "border_segments.geojson"


def _cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CROSSINGS_DATABASE_URL": url}
    return subprocess.run(
        [sys.executable, "-m", "service.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


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
        result = _cli(fresh_url, "segments", "load", str(BUNDLED))
        assert result.returncode == 0, result.stderr
        assert "loaded 457 segments" in result.stdout
    ids = _segment_ids(fresh_url)
    assert len(ids) == 457 and len(set(ids)) == 457


def test_a_new_set_replaces_the_old_one(fresh_url: str, tmp_path: Path) -> None:
    _cli(fresh_url, "segments", "load", str(BUNDLED))
    doc = _doc()
    doc["features"] = [f for f in doc["features"] if f["properties"]["border"] == "MX-US"]
    assert _cli(fresh_url, "segments", "load", str(_write(tmp_path, doc))).returncode == 0
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
    _cli(fresh_url, "segments", "load", str(BUNDLED))
    before = _segment_ids(fresh_url)
    result = _cli(fresh_url, "segments", "load", str(_write(tmp_path, _broken(kind))))
    assert result.returncode == 1
    assert message in result.stderr
    assert _segment_ids(fresh_url) == before


def test_a_missing_file_is_refused(fresh_url: str, tmp_path: Path) -> None:
    result = _cli(fresh_url, "segments", "load", str(tmp_path / "nope.geojson"))
    assert result.returncode == 1
    assert "cannot read" in result.stderr
