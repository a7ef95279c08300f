"""GDAL (the OAPIF driver) reads the service like any OGC API - Features server: it lists the
collections, pages through every report exactly once, and its filters match the store's own."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.domain.queries import ReportQuery
from service.domain.reports import Report
from service.settings import Settings
from service.storage import open_store
from service.usecases.transfer import export_reports
from tests.conftest import served_fresh
from tests.factories import fill_along_border
from tests.live import live_key

REPORTS = 25_000
UNMEASURED = 2_000  # the earliest reports, with no accuracy: GDAL's first page is all null there
T0 = datetime(2026, 1, 1, tzinfo=UTC)
pytestmark = pytest.mark.skipif(
    shutil.which("ogr2ogr") is None, reason="GDAL (gdal-bin) is not installed"
)


def _fill(url: str) -> list[Report]:
    """25,000 reports along the CA-US border, whole-second times (GDAL keeps milliseconds); the
    first 2,000 in time have no accuracy_m."""
    return fill_along_border(
        url,
        REPORTS,
        seed=7,
        observed_at=lambda i, rng: (
            T0 - timedelta(days=1, seconds=-i)
            if i < UNMEASURED
            else T0 + timedelta(seconds=int(rng.integers(0, 180 * 86_400)))
        ),
        accuracy_m=lambda i, rng: None if i < UNMEASURED else float(rng.integers(5, 200)),
    )


# Each server's access log (base URL -> file): what GDAL asked the server for.


@pytest.fixture(scope="module")
def served(
    store_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, list[Report], str]]:
    with (
        served_fresh(store_url, tmp_path_factory, "gdal", _fill) as (url, base, stored),
        _analyst_gdal(url),
    ):
        yield base, stored, url


@contextmanager
def _analyst_gdal(url: str) -> Iterator[None]:
    """GDAL sends an analyst key with every request (GDAL_HTTP_HEADERS, GDAL >= 3.6), as a GIS
    analyst would configure it; without one the reports collection answers 401."""
    before = os.environ.get("GDAL_HTTP_HEADERS")
    os.environ["GDAL_HTTP_HEADERS"] = f"Authorization: Bearer {live_key(url, 'analyst')}"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("GDAL_HTTP_HEADERS", None)
        else:
            os.environ["GDAL_HTTP_HEADERS"] = before


def _ogr2ogr_geojson(
    tmp: Path,
    base: str,
    *extra: str,
    collection: str = "reports",
    env: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    gpkg = tmp / f"{collection}-{uuid.uuid4().hex[:6]}.gpkg"
    copied = subprocess.run(
        ["ogr2ogr", "-f", "GPKG", str(gpkg), f"OAPIF:{base}/ogc", collection, *extra],
        capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    assert copied.returncode == 0, copied.stderr[-2000:]
    out = subprocess.run(["ogr2ogr", "-f", "GeoJSON", "/vsistdout/", str(gpkg)],
                         check=True, capture_output=True, timeout=600)  # fmt: skip
    features: list[dict[str, Any]] = json.loads(out.stdout)["features"]
    return features


def test_ogrinfo_lists_both_collections(served: tuple[str, list[Report], str]) -> None:
    base, _, _ = served
    out = subprocess.run(
        ["ogrinfo", "-ro", f"OAPIF:{base}/ogc"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "1: reports" in out.stdout and "2: segments" in out.stdout


def test_gdal_types_columns_from_the_schema_not_the_first_page(
    served: tuple[str, list[Report], str],
) -> None:
    """The first page holds only reports without accuracy_m; the collection's JSON Schema still
    makes it a Real column, and times DateTime."""
    base, _, _ = served
    out = subprocess.run(
        ["ogrinfo", "-ro", "-so", f"OAPIF:{base}/ogc", "reports"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "accuracy_m: Real" in out.stdout
    assert "observed_at: DateTime" in out.stdout
    assert "people_count: Integer" in out.stdout


def test_ogr2ogr_copies_every_report_exactly_once_as_stored(
    served: tuple[str, list[Report], str], tmp_path: Path
) -> None:
    base, stored, _ = served
    copied = _ogr2ogr_geojson(tmp_path, base)
    ids = [f["properties"]["id"] for f in copied]
    assert len(ids) == REPORTS and len(set(ids)) == REPORTS
    by_id = {str(r.id): r for r in stored}
    for feature in copied:
        report = by_id[feature["properties"]["id"]]
        props = feature["properties"]
        assert feature["geometry"]["coordinates"] == [report.draft.lon, report.draft.lat]
        assert (
            datetime.fromisoformat(props["observed_at"].replace("Z", "+00:00"))
            == report.draft.observed_at
        )
        assert props["people_count"] == report.draft.people_count
        assert props["kind"] == report.draft.kind
        assert props["direction"] == report.draft.direction
        assert props["accuracy_m"] == report.draft.accuracy_m
        assert props["segment_id"] == report.snap.segment_id
        assert props["snap_distance_m"] == pytest.approx(report.snap.distance_m, abs=1e-9)


def test_bbox_and_datetime_through_ogr2ogr_match_the_store(
    served: tuple[str, list[Report], str], tmp_path: Path
) -> None:
    base, _, url = served
    box = (-80.0, 42.0, -70.0, 46.0)
    start, end = "2026-02-01T00:00:00Z", "2026-03-01T00:00:00Z"
    where = f"observed_at >= '{start}' AND observed_at <= '{end}'"
    copied = _ogr2ogr_geojson(tmp_path, base, "-spat", *map(str, box), "-where", where)
    store = open_store(Settings(database_url=url))
    try:
        query = ReportQuery(
            bbox=box,
            start=datetime(2026, 2, 1, tzinfo=UTC),
            end=datetime(2026, 3, 1, tzinfo=UTC) + timedelta(microseconds=1),
        )
        expected = {str(r.id) for r in export_reports(store, query)}
    finally:
        store.close()
    assert expected and {f["properties"]["id"] for f in copied} == expected


def test_without_a_key_gdal_reads_segments_but_no_reports(
    served: tuple[str, list[Report], str],
) -> None:
    base, _, _ = served
    env = {k: v for k, v in os.environ.items() if k != "GDAL_HTTP_HEADERS"}
    segments = subprocess.run(
        ["ogrinfo", "-ro", "-so", f"OAPIF:{base}/ogc", "segments"],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert segments.returncode == 0 and "Feature Count: " in segments.stdout
    reports = subprocess.run(
        ["ogr2ogr", "-f", "GeoJSON", "/vsistdout/", f"OAPIF:{base}/ogc", "reports"],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert '"coordinates"' not in reports.stdout


def _keyless_env() -> dict[str, str]:
    return {
        k: v for k, v in os.environ.items() if k not in ("GDAL_HTTP_HEADERS", "GDAL_HTTP_USERPWD")
    }


def _analyst_key() -> str:
    return os.environ["GDAL_HTTP_HEADERS"].removeprefix("Authorization: Bearer ")


@pytest.mark.parametrize("page_size", [None, "1000"])
def test_ogr2ogr_copies_every_segment_without_a_key(
    served: tuple[str, list[Report], str], tmp_path: Path, page_size: str | None
) -> None:
    """The segments' next links work (they answered 400 when every cursor was read as a
    report's): at GDAL's default page size (10) and at 1,000."""
    base, _, _ = served
    extra = ("-oo", f"PAGE_SIZE={page_size}") if page_size else ()
    copied = _ogr2ogr_geojson(tmp_path, base, *extra, collection="segments", env=_keyless_env())
    expected = [f["id"] for f in httpx.get(f"{base}/v1/segments", timeout=60).json()["features"]]
    assert sorted(f["properties"]["segment_id"] for f in copied) == sorted(expected)
    assert len(expected) > 400


def test_ogr2ogr_copies_every_report_at_pages_of_1000(
    served: tuple[str, list[Report], str], tmp_path: Path
) -> None:
    base, stored, _ = served
    copied = _ogr2ogr_geojson(tmp_path, base, "-oo", "PAGE_SIZE=1000")
    assert sorted(f["properties"]["id"] for f in copied) == sorted(str(r.id) for r in stored)


def test_gdal_sends_the_key_as_the_basic_password(
    served: tuple[str, list[Report], str], tmp_path: Path
) -> None:
    base, stored, _ = served
    env = {**_keyless_env(), "GDAL_HTTP_USERPWD": f"gdal:{_analyst_key()}"}
    copied = _ogr2ogr_geojson(tmp_path, base, "-oo", "PAGE_SIZE=5000", env=env)
    assert len({f["properties"]["id"] for f in copied}) == len(stored)
    wrong = {**_keyless_env(), "GDAL_HTTP_USERPWD": "gdal:crs_0notakey"}
    refused = subprocess.run(
        ["ogrinfo", "-ro", "-so", f"OAPIF:{base}/ogc", "reports"],
        capture_output=True, text=True, timeout=120, env=wrong,
    )  # fmt: skip
    assert "Feature Count: " not in refused.stdout


def test_gdal_shows_one_id_column(served: tuple[str, list[Report], str]) -> None:
    base, _, _ = served
    out = subprocess.run(
        ["ogrinfo", "-ro", "-so", f"OAPIF:{base}/ogc", "reports"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    columns = [line.split(":")[0] for line in out.stdout.splitlines() if re.match(r"^\w+: ", line)]
    assert columns.count("id") == 1 and "id2" not in columns
    assert f"Feature Count: {REPORTS}" in out.stdout  # numberMatched, from the first page
