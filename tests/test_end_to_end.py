"""The README's flow against the real server process (uvicorn) over a socket, on a fresh store:
start, load the bundled border by itself, accept a report, read it back."""

from __future__ import annotations

import httpx

from tests.factories import report_body
from tests.live import running_server


def test_fresh_server_snaps_stores_and_reads_back_a_report(fresh_url: str) -> None:
    with running_server(fresh_url) as base, httpx.Client(base_url=base, timeout=10) as http:
        assert http.get("/readyz").json()["segments"] == 457
        body = report_body()
        created = http.post("/v1/reports", json=body)
        assert created.status_code == 201
        assert created.json()["properties"]["segment_id"] == "CA-US-0208"
        replay = http.post("/v1/reports", json=body)
        assert replay.status_code == 200
        read = http.get(created.headers["location"])
        assert read.json() == created.json()
        assert read.headers["x-request-id"]


def test_two_workers_share_one_store_without_losing_or_doubling(fresh_url: str) -> None:
    bodies = [report_body() for _ in range(60)]
    with running_server(fresh_url, workers=2) as base, httpx.Client(base_url=base, timeout=30) as http:
        # Each batch overlaps the next, so the same ids arrive at both workers.
        for start in range(0, 60, 10):
            response = http.post("/v1/reports/batch", json=bodies[start : start + 20])
            assert response.status_code == 200
        ids: list[str] = []
        url = "/v1/reports?limit=25"
        while url:
            page = http.get(url).json()
            ids += [f["id"] for f in page["features"]]
            url = next((link["href"] for link in page["links"] if link["rel"] == "next"), "")
    assert sorted(ids) == sorted(b["id"] for b in bodies)
