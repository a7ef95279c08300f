"""Submitting and reading reports through the API, on both stores."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import httpx
from fastapi import FastAPI
from pyproj import Geod

from tests.factories import ROXHAM_ROAD, report_body, report_feature_body

GEOD = Geod(ellps="WGS84")
PROBLEM = "application/problem+json"


async def test_report_at_roxham_road_is_snapped_to_its_segment(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/reports", json=report_body())
    assert response.status_code == 201
    props = response.json()["properties"]
    assert props["snap_status"] == "snapped"
    assert props["segment_id"] == "CA-US-0208"
    assert props["side"] == "CA"
    assert abs(props["chainage_km"] - 5178.527) < 0.001
    # The distance is the geodesic one to the point it reports, and matches the published 4.2 m.
    _, _, to_snapped = GEOD.inv(*ROXHAM_ROAD, props["snapped_lon"], props["snapped_lat"])
    assert abs(props["snap_distance_m"] - to_snapped) < 0.001
    assert abs(props["snap_distance_m"] - 4.2) < 0.06


async def test_created_report_has_location_that_reads_it_back(client: httpx.AsyncClient) -> None:
    created = await client.post("/v1/reports", json=report_body())
    location = created.headers["location"]
    assert location.endswith(f"/v1/reports/{created.json()['id']}")
    read = await client.get(location)
    assert read.status_code == 200
    assert read.headers["content-type"] == "application/geo+json"
    # An analyst's or admin's read adds the report's group (issue #20): not known at ingest.
    read_back = read.json()
    assert read_back["properties"].pop("group_id") == created.json()["id"]
    assert read_back == created.json()


async def test_replayed_report_is_stored_once(client: httpx.AsyncClient) -> None:
    body = report_body()
    first = await client.post("/v1/reports", json=body)
    replay = await client.post("/v1/reports", json=body)
    assert (first.status_code, replay.status_code) == (201, 200)
    assert replay.json() == first.json()
    listing = await client.get("/v1/reports")
    assert [f["id"] for f in listing.json()["features"]] == [body["id"]]


async def test_replay_with_same_instant_in_other_offset_is_a_duplicate(
    client: httpx.AsyncClient,
) -> None:
    body = report_body(observed_at="2026-03-01T10:00:00-05:00")
    await client.post("/v1/reports", json=body)
    replay = await client.post("/v1/reports", json={**body, "observed_at": "2026-03-01T15:00:00Z"})
    assert replay.status_code == 200


async def test_reused_id_with_other_content_is_a_conflict(client: httpx.AsyncClient) -> None:
    body = report_body()
    await client.post("/v1/reports", json=body)
    response = await client.post("/v1/reports", json={**body, "people_count": 9})
    assert response.status_code == 409
    assert response.headers["content-type"] == PROBLEM
    assert body["id"] in response.json()["detail"]
    stored = await client.get(f"/v1/reports/{body['id']}")
    assert stored.json()["properties"]["people_count"] == 3


async def test_concurrent_replays_create_one_report(client: httpx.AsyncClient) -> None:
    body = report_body()
    responses = await asyncio.gather(*(client.post("/v1/reports", json=body) for _ in range(12)))
    codes = sorted(r.status_code for r in responses)
    assert codes == [200] * 11 + [201]
    listing = await client.get("/v1/reports")
    assert listing.json()["numberReturned"] == 1


async def test_concurrent_single_reports_are_each_answered_as_if_alone(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    """Many single reports at once, from two keys, new ones among replays, conflicts and an
    invalid one: each request gets the answer it would get alone, and each report is stored
    once (what any change to how concurrent writes are stored must keep)."""
    reporter = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://testserver",
        headers={"Authorization": f"Bearer {app.state.test_keys['reporter']}"},
    )
    async with reporter:
        for _ in range(4):
            new = [report_body() for _ in range(6)]
            replayed, changed, shared = report_body(), report_body(), report_body()
            late = report_body(observed_at=(datetime.now(UTC) + timedelta(days=2)).isoformat())
            sends = [
                *((client, b) for b in new),
                (client, replayed), (client, replayed),
                (client, changed), (client, {**changed, "people_count": 9}),
                (client, late),
                (client, shared), (reporter, shared), (client, shared),
            ]  # fmt: skip
            answers = await asyncio.gather(*(c.post("/v1/reports", json=b) for c, b in sends))
            codes = [a.status_code for a in answers]
            assert codes[:6] == [201] * 6
            assert [a.json()["id"] for a in answers[:6]] == [b["id"] for b in new]
            assert sorted(codes[6:8]) == [200, 201]
            assert answers[6].json() == answers[7].json()
            assert sorted(codes[8:10]) == [201, 409]
            created = answers[8] if codes[8] == 201 else answers[9]
            stored = (await client.get(f"/v1/reports/{changed['id']}")).json()
            assert stored["properties"].pop("group_id") == changed["id"]  # an admin's read
            assert stored == created.json()
            assert codes[10] == 422 and answers[10].headers["content-type"] == PROBLEM
            # One of three creates; the other key's tries are conflicts, the same key's replays.
            shared_codes = (codes[11], codes[12], codes[13])
            assert shared_codes in ((201, 409, 200), (200, 409, 201), (409, 201, 409))
    listing = await client.get("/v1/reports", params={"limit": 1000})
    assert listing.json()["numberReturned"] == 4 * 9


async def test_report_without_id_gets_a_server_id(client: httpx.AsyncClient) -> None:
    body = report_body()
    del body["id"]
    response = await client.post("/v1/reports", json=body)
    assert response.status_code == 201
    assert uuid.UUID(response.json()["id"]).version == 4


async def test_geojson_feature_is_accepted_as_a_report(client: httpx.AsyncClient) -> None:
    body = report_feature_body()
    response = await client.post(
        "/v1/reports",
        content=httpx.Request("POST", "/", json=body).content,
        headers={"content-type": "application/geo+json"},
    )
    assert response.status_code == 201
    assert response.json()["id"] == body["properties"]["id"]


async def test_report_far_from_the_border_is_stored_without_a_segment(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/v1/reports", json=report_body(lon=-100.0, lat=40.0))
    assert response.status_code == 201
    props = response.json()["properties"]
    assert props["snap_status"] == "beyond_max_distance"
    assert props["segment_id"] is None and props["snap_distance_m"] is None


async def test_direction_is_normalised_to_upper_case(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/reports", json=report_body(direction="us"))
    assert response.json()["properties"]["direction"] == "US"


async def test_observed_at_is_returned_in_utc(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/reports", json=report_body(observed_at="2026-03-01T10:00:00+05:30")
    )
    assert response.json()["properties"]["observed_at"] == "2026-03-01T04:30:00Z"


async def test_unknown_report_is_404_problem(client: httpx.AsyncClient) -> None:
    response = await client.get(f"/v1/reports/{uuid.uuid4()}")
    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM


async def test_dry_run_snap_stores_nothing(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/snap", json={"type": "Point", "coordinates": list(ROXHAM_ROAD)}
    )
    assert response.status_code == 200
    assert response.json()["result"]["segment_id"] == "CA-US-0208"
    listing = await client.get("/v1/reports")
    assert listing.json()["numberReturned"] == 0


async def test_dry_run_snaps_many_points_in_order(client: httpx.AsyncClient) -> None:
    points = [list(ROXHAM_ROAD), [-100.0, 40.0], [-117.02972, 32.54333]]
    response = await client.post("/v1/snap", json={"type": "MultiPoint", "coordinates": points})
    results = response.json()["results"]
    assert [r["segment_id"] for r in results] == ["CA-US-0208", None, "MX-US-0001"]


async def test_openapi_names_this_deployments_kinds_and_border_countries(
    client: httpx.AsyncClient,
) -> None:
    """The report body's schema lists the configured kinds and the loaded border's countries
    (the direction enum was once never published: it read state that was never set)."""
    doc = (await client.get("/openapi.json")).json()
    props = doc["components"]["schemas"]["ReportProperties"]["properties"]
    assert "crossing" in props["kind"]["enum"]
    assert {"CA", "US", "MX"} <= set(props["direction"]["anyOf"][0]["enum"])
