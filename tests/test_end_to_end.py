"""The README's flow against the real server process (uvicorn) over a socket, on a fresh store:
start, load the bundled border by itself, accept a report, read it back."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from tests.factories import report_body
from tests.live import auth, live_key, running_server


def test_fresh_server_snaps_stores_and_reads_back_a_report(fresh_url: str) -> None:
    key = live_key(fresh_url)
    with (
        running_server(fresh_url) as base,
        httpx.Client(base_url=base, timeout=10, headers=auth(key)) as http,
    ):
        assert http.get("/readyz").json()["segments"] == 478
        body = report_body()
        created = http.post("/v1/reports", json=body)
        assert created.status_code == 201
        assert created.json()["properties"]["segment_id"] == "CA-US-0208"
        replay = http.post("/v1/reports", json=body)
        assert replay.status_code == 200
        read = http.get(created.headers["location"])
        stored = read.json()
        assert stored["properties"].pop("group_id") == body["id"]  # an admin's read: its group
        assert stored == created.json()
        assert read.headers["x-request-id"]


def test_two_servers_on_one_store_store_each_report_exactly_once(fresh_url: str) -> None:
    """Two server processes on one store, posting at once, every report sent to both twice."""
    bodies = [report_body() for _ in range(120)]
    batches = [bodies[i : i + 15] for i in range(0, len(bodies), 15)]
    key = live_key(fresh_url)
    with running_server(fresh_url) as first, running_server(fresh_url) as second:

        def send(base: str, batch: list[dict[str, Any]]) -> list[str]:
            with httpx.Client(base_url=base, timeout=60, headers=auth(key)) as http:
                singles = [http.post("/v1/reports", json=b).status_code for b in batch[:3]]
                results = http.post("/v1/reports/batch", json=batch).json()["results"]
                assert all(code in (200, 201) for code in singles)
                return [r["status"] for r in results]

        jobs = [(base, batch) for batch in batches for base in (first, second, first, second)]
        with ThreadPoolExecutor(max_workers=8) as pool:
            statuses = [s for result in pool.map(lambda job: send(*job), jobs) for s in result]
        assert set(statuses) <= {"created", "duplicate"}
        with httpx.Client(base_url=second, timeout=30, headers=auth(key)) as http:
            ids = _all_ids(http)
    assert sorted(ids) == sorted(b["id"] for b in bodies)


def _all_ids(http: httpx.Client) -> list[str]:
    ids: list[str] = []
    url = "/v1/reports?limit=50"
    while url:
        page = http.get(url).json()
        ids += [f["id"] for f in page["features"]]
        url = next((link["href"] for link in page["links"] if link["rel"] == "next"), "")
    return ids
