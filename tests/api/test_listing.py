"""Listing reports: filters, stable order, keyset pages that never skip or repeat."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from tests.factories import report_body

BASE = datetime(2026, 3, 1, tzinfo=UTC)


async def _post_many(client: httpx.AsyncClient, bodies: list[dict[str, Any]]) -> None:
    response = await client.post("/v1/reports/batch", json=bodies)
    assert response.json()["summary"]["created"] == len(bodies)


async def _all_pages(client: httpx.AsyncClient, url: str) -> list[dict[str, Any]]:
    features: list[dict[str, Any]] = []
    while url:
        page = (await client.get(url)).json()
        features.extend(page["features"])
        url = next((link["href"] for link in page["links"] if link["rel"] == "next"), "")
    return features


async def test_pages_cover_every_report_once_in_stable_order(client: httpx.AsyncClient) -> None:
    # Several reports share an instant, so the id must break ties for the order to be stable.
    bodies = [
        report_body(observed_at=(BASE + timedelta(minutes=i // 3)).isoformat()) for i in range(47)
    ]
    await _post_many(client, bodies)
    features = await _all_pages(client, "/v1/reports?limit=5")
    keys = [(f["properties"]["observed_at"], f["id"]) for f in features]
    assert keys == sorted(keys)
    assert sorted(f["id"] for f in features) == sorted(b["id"] for b in bodies)


async def test_reports_added_while_paging_are_not_skipped_or_repeated(
    client: httpx.AsyncClient,
) -> None:
    first = [report_body(observed_at=(BASE + timedelta(hours=i)).isoformat()) for i in range(10)]
    await _post_many(client, first)
    page = (await client.get("/v1/reports?limit=4")).json()
    seen = [f["id"] for f in page["features"]]
    later = [
        report_body(observed_at=(BASE + timedelta(hours=20 + i)).isoformat()) for i in range(3)
    ]
    await _post_many(client, later)
    next_url = next(link["href"] for link in page["links"] if link["rel"] == "next")
    seen += [f["id"] for f in await _all_pages(client, next_url)]
    assert sorted(seen) == sorted(b["id"] for b in first + later)


async def test_last_page_has_no_next_link(client: httpx.AsyncClient) -> None:
    await _post_many(client, [report_body() for _ in range(3)])
    page = (await client.get("/v1/reports?limit=3")).json()
    assert [link["rel"] for link in page["links"]] == ["self"]


async def test_time_filter_is_start_inclusive_end_exclusive(client: httpx.AsyncClient) -> None:
    bodies = [report_body(observed_at=(BASE + timedelta(days=d)).isoformat()) for d in range(5)]
    await _post_many(client, bodies)
    start, end = BASE + timedelta(days=1), BASE + timedelta(days=3)
    params = {"start": start.isoformat(), "end": end.isoformat()}
    features = (await client.get("/v1/reports", params=params)).json()["features"]
    assert [f["id"] for f in features] == [bodies[1]["id"], bodies[2]["id"]]


async def test_bbox_filter_includes_points_on_its_edge(client: httpx.AsyncClient) -> None:
    inside = report_body(lon=-73.5, lat=45.0)
    edge = report_body(lon=-73.4, lat=45.1)
    outside = report_body(lon=-73.3, lat=45.0)
    await _post_many(client, [inside, edge, outside])
    features = (await client.get("/v1/reports?bbox=-73.6,44.9,-73.4,45.1")).json()["features"]
    assert {f["id"] for f in features} == {inside["id"], edge["id"]}


async def test_bbox_filter_is_exact_just_outside_its_edge(client: httpx.AsyncClient) -> None:
    # 2e-6 degrees (~0.15 m) beyond the edge: inside the float4-rounded box an index compares.
    edge = report_body(lon=-73.4, lat=45.05)
    beyond = report_body(lon=-73.4 + 2e-6, lat=45.05)
    await _post_many(client, [edge, beyond])
    for url in (
        "/v1/reports?bbox=-73.6,44.9,-73.4,45.1",
        "/ogc/collections/reports/items?bbox=-73.6,44.9,-73.4,45.1",
    ):
        features = (await client.get(url)).json()["features"]
        assert [f["id"] for f in features] == [edge["id"]], url


async def test_segment_and_kind_filters(client: httpx.AsyncClient) -> None:
    roxham = report_body(kind="attempt")
    peace_arch = report_body(lon=-122.754389, lat=49.000111, kind="attempt")
    other_kind = report_body(kind="evidence")
    await _post_many(client, [roxham, peace_arch, other_kind])
    features = (await client.get("/v1/reports?segment_id=CA-US-0208&kind=attempt")).json()[
        "features"
    ]
    assert [f["id"] for f in features] == [roxham["id"]]


async def test_segments_list_the_whole_border(client: httpx.AsyncClient) -> None:
    collection = (await client.get("/v1/segments")).json()
    assert len(collection["features"]) == 478
    ca_us = (await client.get("/v1/segments?border=CA-US")).json()["features"]
    assert len(ca_us) == 351 and all(f["properties"]["border"] == "CA-US" for f in ca_us)


async def test_health_and_readiness(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["segments"] == 478
