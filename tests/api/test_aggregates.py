"""Aggregates over HTTP on both stores: JSON and CSV, the segment series and choropleth, the
group of reports beyond reach, what the public reads (the release), and errors."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from service.api.lifecycle import current_release, current_store
from service.usecases.release import cut_release
from tests.factories import report_body
from tests.problems import refused_fields

T0 = datetime(2026, 1, 5, 12, tzinfo=UTC)
ROXHAM = (-73.5172, 45.0071)
PEMBINA = (-97.2, 49.0)
FAR = (-95.0, 30.0)  # beyond reach of the border


def _body(
    place: tuple[float, float], day: int, people: int = 2, kind: str = "crossing"
) -> dict[str, Any]:
    return report_body(
        location={"type": "Point", "coordinates": list(place)},
        observed_at=(T0 + timedelta(days=day)).isoformat(),
        people_count=people,
        kind=kind,
    )


async def _post(client: httpx.AsyncClient, bodies: list[dict[str, Any]]) -> None:
    response = await client.post("/v1/reports/batch", json=bodies)
    assert response.json()["summary"]["created"] == len(bodies)


async def test_monthly_series_per_segment_as_json_and_csv(client: httpx.AsyncClient) -> None:
    # January: 12 at Roxham, 6 at Pembina; February: 7 at Roxham; 5 far from the border.
    bodies = [_body(ROXHAM, d % 20) for d in range(12)] + [_body(PEMBINA, d) for d in range(6)]
    bodies += [_body(ROXHAM, 30 + d) for d in range(7)] + [_body(FAR, d) for d in range(5)]
    await _post(client, bodies)
    doc = (await client.get("/v1/aggregates?group_by=segment&bucket=month")).json()
    rows = {(r["segment_id"], r["period_start"][:7]): r for r in doc["rows"]}
    roxham = next(r["segment_id"] for r in doc["rows"] if r["reports"] == 12)
    assert rows[roxham, "2026-01"]["people"] == 24 and rows[roxham, "2026-02"]["reports"] == 7
    beyond = [r for r in doc["rows"] if r["snap_status"] == "beyond_max_distance"]
    assert [(r["segment_id"], r["reports"]) for r in beyond] == [(None, 5)]
    # One monitor: nothing is linked, every report its own group (groups as reports).
    assert doc["totals"]["all"] == {
        "reports": 30, "people": 60, "groups": 30, "people_est": 60, "suppressed": False
    }  # fmt: skip
    text = (await client.get("/v1/aggregates?group_by=segment&bucket=month&f=csv")).text
    table = list(csv.DictReader(io.StringIO(text)))
    assert list(table[0]) == [
        "segment_id", "snap_status", "period_start", "reports", "people", "groups", "people_est",
        "suppressed",
    ]  # fmt: skip
    assert {(r["segment_id"], r["period_start"][:7], r["reports"]) for r in table} == {
        (r["segment_id"] or "", r["period_start"][:7], str(r["reports"])) for r in doc["rows"]
    }
    via_accept = await client.get(
        "/v1/aggregates?group_by=segment&bucket=month", headers={"Accept": "text/csv"}
    )
    assert via_accept.text == text


async def test_the_public_reads_the_release_and_analysts_the_reports(
    app: FastAPI, client: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    """Without a key: the last cut of the release, whole UTC months, hidden below 5 (CSV
    ``<5``), rounded to 5; reports are public only once a cut holds them. An analyst or admin
    sees every report, exact, at once."""
    cut_release(current_store(app), now=datetime.now(UTC), delay_h=24)  # of no reports
    current_release(app).refresh_now()
    # Roxham: 9 in January, 2 in February; Pembina: 8 and 6.
    bodies = [_body(ROXHAM, d) for d in range(9)] + [_body(ROXHAM, 31 + d) for d in range(2)]
    bodies += [_body(PEMBINA, d) for d in range(8)] + [_body(PEMBINA, 31 + d) for d in range(6)]
    await _post(client, bodies)
    admin_view = (await client.get("/v1/aggregates?group_by=segment&bucket=month")).json()
    assert sorted(r["reports"] for r in admin_view["rows"]) == [2, 6, 8, 9]
    assert "release" not in admin_view
    query = "/v1/aggregates?group_by=segment&bucket=month&start=2026-01-01T00:00:00Z"
    assert (await anonymous.get(query)).json()["rows"] == []  # not in the last cut yet
    cut_release(current_store(app), now=datetime.now(UTC), delay_h=24)
    current_release(app).refresh_now()
    doc = (await anonymous.get(query)).json()
    assert sorted(r["reports"] for r in doc["rows"]) == [5, 10, 10]  # 6, 8, 9; the 2 is hidden
    assert doc["window"]["start"] == "2026-01-01" and doc["release"]["min_count"] == 5
    by_period = [t["reports"] for t in doc["totals"]["by_period"]]
    assert by_period[:2] == [15, 10] and set(by_period[2:]) <= {None}  # 17, 8, then none
    text = (await anonymous.get(query + "&f=csv")).text
    assert "<5" not in text  # hidden cells are not listed ...
    filled = await anonymous.get(query + "&fill=true&f=csv")
    assert "<5" in filled.text  # ... but shown as <5 where every period is listed


async def test_segment_timeseries_fills_every_period(client: httpx.AsyncClient) -> None:
    await _post(client, [_body(ROXHAM, d * 40) for d in range(3)] * 1)
    snapped = await client.post("/v1/snap", json={"type": "Point", "coordinates": list(ROXHAM)})
    segment_id = snapped.json()["result"]["segment_id"]
    response = await client.get(
        f"/v1/segments/{segment_id}/timeseries?bucket=month&start=2026-01-01T00:00:00-05:00"
        "&end=2026-05-01T00:00:00-04:00&tz=America/Toronto"
    )
    doc = response.json()
    assert [r["period_start"] for r in doc["rows"]] == [
        "2026-01-01T00:00:00-05:00", "2026-02-01T00:00:00-05:00",
        "2026-03-01T00:00:00-05:00", "2026-04-01T00:00:00-04:00",
    ]  # fmt: skip
    zero = [r for r in doc["rows"] if r["reports"] == 0]
    assert zero and all(not r["suppressed"] for r in zero)
    assert (await client.get("/v1/segments/NOPE/timeseries")).status_code == 404


async def test_choropleth_has_every_segment(client: httpx.AsyncClient) -> None:
    await _post(client, [_body(ROXHAM, d) for d in range(6)])
    doc = (await client.get("/v1/aggregates/segments.geojson?border=CA-US")).json()
    features = doc["features"]
    segments = (await client.get("/v1/segments?border=CA-US")).json()["features"]
    assert len(features) == len(segments)
    assert all(f["geometry"]["type"] == "LineString" for f in features)
    assert sum(f["properties"]["reports"] or 0 for f in features) == 6
    assert doc["totals"]["all"]["reports"] == 6


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("group_by=segment,planet", "group_by"),
        ("group_by=kind,kind", "group_by"),
        ("bucket=fortnight", "bucket"),
        ("tz=Mars/Olympus", "tz"),
        ("start=soon", "start"),
        ("start=2026-02-01T00:00:00Z&end=2026-01-01T00:00:00Z", "end"),
        ("kind=smuggling", "kind"),
        ("border=XX-YY", "border"),
        ("segment_id=NOPE", "segment_id"),
        ("fill=maybe", "fill"),
        ("bbox=1,2,3", "bbox"),
        ("f=xml", "f"),
        ("colour=red", "colour"),
    ],
)
async def test_bad_parameters_are_400_naming_them(
    client: httpx.AsyncClient, query: str, field: str
) -> None:
    assert field in refused_fields(await client.get(f"/v1/aggregates?{query}"))


async def test_a_range_of_too_many_buckets_is_refused(client: httpx.AsyncClient) -> None:
    await _post(client, [_body(ROXHAM, 0)])
    response = await client.get("/v1/aggregates?bucket=day&start=0001-01-01T00:00:00Z")
    assert refused_fields(response) == ["bucket"]
    # Few buckets over a window longer than CROSSINGS_AGGREGATE_MAX_RANGE_DAYS: refused by that cap.
    too_long = await client.get("/v1/aggregates?bucket=year&start=0001-01-01T00:00:00Z")
    assert refused_fields(too_long) == ["start"]
    assert (
        await client.get("/v1/aggregates?bucket=year&start=1940-01-01T00:00:00Z")
    ).status_code == 200
