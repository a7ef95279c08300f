"""Batches: per-item results in order, good items stored even when others are refused."""

from __future__ import annotations

import httpx

from tests.factories import report_body, report_feature_body


async def test_batch_stores_valid_items_and_reports_invalid_ones(client: httpx.AsyncClient) -> None:
    good, bad, also_good = report_body(), report_body(people_count=0), report_body()
    response = await client.post("/v1/reports/batch", json=[good, bad, also_good])
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["created", "invalid", "created"]
    assert results[1]["problem"]["errors"] == [
        {"field": "people_count", "reason": "Input should be greater than or equal to 1"}
    ]
    listing = await client.get("/v1/reports")
    assert {f["id"] for f in listing.json()["features"]} == {good["id"], also_good["id"]}


async def test_batch_reports_duplicates_and_conflicts(client: httpx.AsyncClient) -> None:
    stored = report_body()
    await client.post("/v1/reports", json=stored)
    fresh = report_body()
    items = [stored, {**stored, "people_count": 8}, fresh, fresh, {**fresh, "kind": "attempt"}]
    response = await client.post("/v1/reports/batch", json=items)
    body = response.json()
    assert [r["status"] for r in body["results"]] == [
        "duplicate", "conflict", "created", "duplicate", "conflict",
    ]  # fmt: skip
    assert body["summary"] == {"created": 1, "duplicate": 2, "conflict": 2, "invalid": 0}
    assert body["results"][1]["problem"]["status"] == 409


async def test_batch_accepts_a_feature_collection(client: httpx.AsyncClient) -> None:
    features = [report_feature_body() for _ in range(3)]
    response = await client.post(
        "/v1/reports/batch", json={"type": "FeatureCollection", "features": features}
    )
    assert [r["status"] for r in response.json()["results"]] == ["created"] * 3


async def test_feature_rule_errors_name_the_property_path(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/reports/batch", json=[report_feature_body(kind="stroll")])
    errors = response.json()["results"][0]["problem"]["errors"]
    assert errors[0]["field"] == "properties.kind"


async def test_batch_over_the_item_limit_is_413(client: httpx.AsyncClient) -> None:
    items = [report_body() for _ in range(1001)]
    response = await client.post("/v1/reports/batch", json=items)
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    listing = await client.get("/v1/reports")
    assert listing.json()["numberReturned"] == 0


async def test_batch_that_is_not_a_list_is_400(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/reports/batch", json={"reports": []})
    assert response.status_code == 400


async def test_batch_of_a_thousand_is_accepted(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/reports/batch", json=[report_body() for _ in range(1000)])
    assert response.json()["summary"]["created"] == 1000


async def test_batch_items_carry_id_and_snap_but_not_the_report_unless_asked(
    client: httpx.AsyncClient,
) -> None:
    body = report_body()
    plain = (await client.post("/v1/reports/batch", json=[body])).json()["results"][0]
    assert plain == {
        "index": 0, "status": "created", "id": body["id"],
        "snap_status": "snapped", "segment_id": "CA-US-0208",
    }  # fmt: skip
    asked = await client.post(
        "/v1/reports/batch", json=[body], headers={"Prefer": "return=representation"}
    )
    item = asked.json()["results"][0]
    assert item["status"] == "duplicate"
    read = (await client.get(f"/v1/reports/{body['id']}")).json()
    assert read["properties"].pop("group_id") == body["id"]  # an admin's read adds its group
    assert item["report"] == read


async def test_batch_of_replays_conflicts_and_invalid_items_at_once(
    client: httpx.AsyncClient,
) -> None:
    stored = report_body()
    await client.post("/v1/reports", json=stored)
    fresh, upper = report_body(), report_body()
    upper["id"] = upper["id"].upper()  # answered, like any id, in canonical (lower) case
    items = [
        fresh, stored, report_body(kind="nonsense"), {**stored, "people_count": 9}, upper,
        fresh, {**fresh, "notes": "other"}, report_body(lat=95.0),
    ]  # fmt: skip
    body = (await client.post("/v1/reports/batch", json=items)).json()
    assert [(r["index"], r["status"], r.get("id")) for r in body["results"]] == [
        (0, "created", fresh["id"]), (1, "duplicate", stored["id"]), (2, "invalid", None),
        (3, "conflict", stored["id"]), (4, "created", upper["id"].lower()),
        (5, "duplicate", fresh["id"]), (6, "conflict", fresh["id"]), (7, "invalid", None),
    ]  # fmt: skip
    assert body["summary"] == {"created": 2, "duplicate": 2, "conflict": 2, "invalid": 2}
    listing = (await client.get("/v1/reports")).json()["features"]
    assert sorted(f["id"] for f in listing) == sorted(
        [stored["id"], fresh["id"], upper["id"].lower()]
    )
