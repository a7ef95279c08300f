"""OWSLib (the Python OGC client scripts and notebooks use) reads the service as an OGC API -
Features server: landing page, conformance, collections, queryables, items in a box and a time,
paged by the server's own ``next`` links, one feature by id; without a key, segments and no reports."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from owslib.ogcapi import REQUEST_HEADERS
from owslib.ogcapi.features import Features

from service.domain.queries import ReportQuery
from service.domain.reports import Report
from service.settings import Settings
from service.storage import open_store
from service.usecases.transfer import export_reports
from tests.factories import fill_along_border
from tests.live import auth, live_key, running_server

REPORTS = 1_500
T0 = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def served(
    store_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, list[Report], str, str]]:
    """A running server over ``REPORTS`` reports; its base URL, the reports, the store's URL and
    an analyst's token."""

    def serve(url: str) -> Iterator[tuple[str, list[Report], str, str]]:
        stored = fill_along_border(
            url,
            REPORTS,
            seed=11,
            observed_at=lambda i, rng: T0 + timedelta(seconds=int(rng.integers(0, 60 * 86_400))),
        )
        with running_server(url) as base:
            yield base, stored, url, live_key(url, "analyst")

    if store_url.startswith("sqlite"):
        yield from serve(f"sqlite:///{tmp_path_factory.mktemp('owslib') / 'owslib.db'}")
        return
    from tests.conftest import fresh_postgis_database

    with fresh_postgis_database() as url:
        yield from serve(url)


def _analyst(base: str, token: str) -> Features:
    """A client that sends the analyst's key. Not ``Features(url, headers=...)``: OWSLib (0.35)
    adds those headers to its module-wide defaults, so every later client in the process would
    send the key too (docs/gis-clients.md)."""
    api = Features(f"{base}/ogc")
    api.headers = {**REQUEST_HEADERS, **auth(token)}
    return api


def _all_items(api: Features, **params: Any) -> list[dict[str, Any]]:
    """Every feature of ``reports`` that ``params`` select, following the server's ``next`` links
    the way an OWSLib script does (their query string passed back as keyword arguments)."""
    features: list[dict[str, Any]] = []
    for _ in range(1_000):
        page = api.collection_items("reports", **params)
        features += page["features"]
        following = [link["href"] for link in page["links"] if link["rel"] == "next"]
        if not following:
            return features
        params = dict(parse_qsl(urlsplit(following[0]).query))
        if "bbox" in params:  # OWSLib joins a list's items: give it the list back
            params["bbox"] = params["bbox"].split(",")
    raise AssertionError("more than 1,000 pages")


def test_landing_conformance_and_collections(
    served: tuple[str, list[Report], str, str],
) -> None:
    base, _, _, token = served
    api = _analyst(base, token)
    conforms = api.conformance()["conformsTo"]
    assert "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core" in conforms
    assert "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson" in conforms
    assert {c["id"] for c in api.collections()["collections"]} == {"reports", "segments"}
    assert {c for c in api.feature_collections()} == {"reports", "segments"}
    reports = api.collection("reports")
    spatial = reports["extent"]["spatial"]["bbox"][0]
    assert -180 <= spatial[0] < spatial[2] <= 180 and -90 <= spatial[1] < spatial[3] <= 90
    queryables = api.collection_queryables("reports")["properties"]
    assert {"observed_at", "kind", "people_count", "segment_id"} <= set(queryables)


def test_items_in_a_box_and_time_paged_by_next_links_match_the_store(
    served: tuple[str, list[Report], str, str],
) -> None:
    base, _, url, token = served
    box = (-80.0, 42.0, -70.0, 46.0)
    start, end = datetime(2026, 3, 10, tzinfo=UTC), datetime(2026, 4, 10, tzinfo=UTC)
    features = _all_items(
        _analyst(base, token),
        bbox=list(box),
        datetime_=f"{start:%Y-%m-%dT%H:%M:%SZ}/{end:%Y-%m-%dT%H:%M:%SZ}",
        limit=25,
    )
    store = open_store(Settings(database_url=url))
    try:
        query = ReportQuery(bbox=box, start=start, end=end + timedelta(microseconds=1))
        expected = {str(r.id) for r in export_reports(store, query)}
    finally:
        store.close()
    ids = [f["id"] for f in features]
    assert len(expected) > 25  # more than one page
    assert len(ids) == len(set(ids)) and set(ids) == expected


def test_every_report_once_and_one_feature_by_id(
    served: tuple[str, list[Report], str, str],
) -> None:
    base, stored, _, token = served
    api = _analyst(base, token)
    features = _all_items(api, limit=500)
    by_id = {str(r.id): r for r in stored}
    assert sorted(f["id"] for f in features) == sorted(by_id)
    report = stored[REPORTS // 2]
    feature = api.collection_item("reports", str(report.id))
    assert feature["geometry"]["coordinates"] == [report.draft.lon, report.draft.lat]
    assert feature["properties"]["segment_id"] == report.snap.segment_id
    assert feature["properties"]["people_count"] == report.draft.people_count


def test_without_a_key_owslib_reads_segments_but_no_reports(
    served: tuple[str, list[Report], str, str],
) -> None:
    base, _, _, _ = served
    api = Features(f"{base}/ogc")
    assert "Authorization" not in api.headers
    segments = api.collection_items("segments", limit=10)
    assert len(segments["features"]) == 10
    assert all(
        f["geometry"]["type"] in ("LineString", "MultiLineString") for f in segments["features"]
    )
    with pytest.raises(RuntimeError, match="401"):
        api.collection_items("reports", limit=10)
