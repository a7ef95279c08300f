"""Every bad input gets an RFC 9457 problem naming the field and the reason, and stores nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.factories import report_body
from tests.problems import refused_fields

PROBLEM = "application/problem+json"


def _with_coordinates(*coords: Any) -> dict[str, Any]:
    return report_body(location={"type": "Point", "coordinates": list(coords)})


def _future(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


BAD_REPORTS = {
    "longitude out of range": (_with_coordinates(-181.0, 45.0), "location.coordinates.0"),
    "latitude out of range": (_with_coordinates(-73.5, 90.5), "location.coordinates.1"),
    "latitude as a string": (_with_coordinates(-73.5, "45.0"), "location.coordinates.1"),
    "longitude as a string": (_with_coordinates("-73.5", 45.0), "location.coordinates.0"),
    "one coordinate": (_with_coordinates(-73.5), "location.coordinates"),
    "wrong geometry type": (
        report_body(location={"type": "LineString", "coordinates": [[0, 0], [1, 1]]}),
        "location.type",
    ),
    "no location": ({k: v for k, v in report_body().items() if k != "location"}, "location"),
    "timestamp without offset": (report_body(observed_at="2026-03-01T10:00:00"), "observed_at"),
    "timestamp as a number": (report_body(observed_at=1767225600), "observed_at"),
    "date only": (report_body(observed_at="2026-03-01"), "observed_at"),
    "impossible date": (report_body(observed_at="2026-02-30T10:00:00Z"), "observed_at"),
    "far future": (report_body(observed_at=_future(3600)), "observed_at"),
    "year one": (report_body(observed_at="0001-01-01T00:00:00+05:00"), "observed_at"),
    "zero people": (report_body(people_count=0), "people_count"),
    "negative people": (report_body(people_count=-2), "people_count"),
    "fractional people": (report_body(people_count=2.5), "people_count"),
    "people as text": (report_body(people_count="3"), "people_count"),
    "huge people count": (report_body(people_count=2**70), "people_count"),
    "unknown kind": (report_body(kind="stroll"), "kind"),
    "not an ISO country": (report_body(direction="XX"), "direction"),
    "a country not on this border": (report_body(direction="FR"), "direction"),
    "negative accuracy": (report_body(accuracy_m=-1.0), "accuracy_m"),
    "notes too long": (report_body(notes="x" * 2001), "notes"),
    "NUL in notes": (report_body(notes="a\x00b"), "notes"),
    "device id with spaces": (report_body(device_id="my phone"), "device_id"),
    "id not a UUID": (report_body(id="report-1"), "id"),
    "unknown field": (report_body(name="Jane"), "name"),
}


@pytest.mark.parametrize("body, field", BAD_REPORTS.values(), ids=BAD_REPORTS.keys())
async def test_bad_report_is_a_problem_naming_the_field(
    client: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    response = await client.post("/v1/reports", json=body)
    assert field in refused_fields(response, 422)
    problem = response.json()
    assert {"type", "title", "status", "detail", "instance"} <= problem.keys()
    assert all(e["reason"] for e in problem["errors"])
    listing = await client.get("/v1/reports")
    assert listing.json()["numberReturned"] == 0


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
async def test_non_finite_number_is_400_naming_the_field(
    client: httpx.AsyncClient, literal: str
) -> None:
    raw = (
        '{"observed_at": "2026-03-01T10:00:00Z", "people_count": 1, "kind": "crossing",'
        f' "location": {{"type": "Point", "coordinates": [-73.5, {literal}]}}}}'
    )
    response = await client.post(
        "/v1/reports", content=raw, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["errors"] == [
        {"field": "location.coordinates.1", "reason": "is NaN or Infinity"}
    ]


@pytest.mark.parametrize("raw", [b"{bad", b"", b"[1, 2", b"\xff\xfe"])
async def test_malformed_json_is_400(client: httpx.AsyncClient, raw: bytes) -> None:
    response = await client.post(
        "/v1/reports", content=raw, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.headers["content-type"] == PROBLEM


async def test_body_that_is_not_an_object_is_422(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/reports", json=[1, 2])
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "body"


@pytest.mark.parametrize("media", ["text/plain", "application/x-www-form-urlencoded", None])
async def test_wrong_content_type_is_415(client: httpx.AsyncClient, media: str | None) -> None:
    headers = {"content-type": media} if media else {}
    response = await client.post("/v1/reports", content=b"{}", headers=headers)
    assert response.status_code == 415
    assert response.headers["content-type"] == PROBLEM


async def test_body_over_the_limit_is_413(client: httpx.AsyncClient) -> None:
    body = report_body(notes="x" * 2000)
    raw = httpx.Request("POST", "/", json={**body, "pad": "y" * (1_048_576 + 10)}).content
    response = await client.post(
        "/v1/reports", content=raw, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert response.headers["content-type"] == PROBLEM


async def test_streamed_body_over_the_limit_is_413(client: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[
        bytes
    ]:  # no Content-Length: the limit is counted as the body arrives
        for _ in range(20):
            yield b" " * 65_536
        yield b"{}"

    response = await client.post(
        "/v1/reports", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413


@pytest.mark.parametrize(
    "query, field",
    [
        ("bbox=1,2,3", "bbox"),
        ("bbox=1,2,3,4,5,6", "bbox"),
        ("bbox=a,b,c,d", "bbox"),
        ("bbox=10,0,0,10", "bbox"),
        ("bbox=0,0,200,10", "bbox"),
        ("start=yesterday", "start"),
        ("end=2026-01-01", "end"),
        ("start=2026-02-01T00:00:00Z&end=2026-01-01T00:00:00Z", "end"),
        ("limit=0", "limit"),
        ("limit=10001", "limit"),
        ("limit=ten", "limit"),
        ("cursor=not-a-cursor", "cursor"),
    ],
)
async def test_bad_listing_parameter_is_400_naming_it(
    client: httpx.AsyncClient, query: str, field: str
) -> None:
    assert refused_fields(await client.get(f"/v1/reports?{query}")) == [field]


async def test_unknown_route_is_a_problem(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/nowhere")
    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM


async def test_unknown_segment_is_404_problem(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/segments/XX-0001")
    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM


async def test_bad_snap_point_names_the_position(client: httpx.AsyncClient) -> None:
    body = {"type": "MultiPoint", "coordinates": [[-73.5, 45.0], [-73.5, 99.0]]}
    response = await client.post("/v1/snap", json=body)
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "coordinates.1.1"
