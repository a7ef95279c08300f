"""Links over HTTP (issue #20), on both stores: analysts list links and confirm or reject them,
audited; analysts' report features carry group_id, nobody else's do."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from service.api.lifecycle import current_store
from tests.factories import report_body


async def _one_group_twice(
    app: FastAPI, as_role: dict[str, Any], *, days_ago: int = 0
) -> tuple[str, str]:
    """The same group reported by two monitors (the reporter key and the admin key)."""
    observed = (datetime.now(UTC) - timedelta(days=days_ago, hours=2)).isoformat()
    first = report_body(observed_at=observed)
    second = report_body(observed_at=observed, device_id="another-phone")
    assert (await as_role["reporter"].post("/v1/reports", json=first)).status_code == 201
    assert (await as_role["admin"].post("/v1/reports", json=second)).status_code == 201
    current_store(app).settle_links()  # PostGIS: what the folder thread does within 100 ms
    return first["id"], second["id"]


async def _groups(client: httpx.AsyncClient) -> dict[str, str | None]:
    page = (await client.get("/v1/reports")).json()
    return {f["id"]: f["properties"].get("group_id") for f in page["features"]}


async def test_links_are_for_analysts_and_admins(app: FastAPI, as_role: dict[str, Any]) -> None:
    await _one_group_twice(app, as_role)
    assert (await as_role["public"].get("/v1/links")).status_code == 401
    assert (await as_role["reporter"].get("/v1/links")).status_code == 403
    (link,) = (await as_role["analyst"].get("/v1/links")).json()["links"]
    for role, status in (("public", 401), ("reporter", 403)):
        response = await as_role[role].post(f"/v1/links/{link['id']}/reject")
        assert response.status_code == status
        assert response.headers["content-type"] == "application/problem+json"
    assert (await as_role["admin"].get("/v1/links")).json()["links"] == [link]


async def test_links_page_by_next_link(app: FastAPI, as_role: dict[str, Any]) -> None:
    for days_ago in range(3):  # three groups, days apart: three links
        await _one_group_twice(app, as_role, days_ago=days_ago)
    first = (await as_role["analyst"].get("/v1/links", params={"limit": 2})).json()
    second = (await as_role["analyst"].get(first["next"])).json()
    assert len(first["links"]) == 2 and len(second["links"]) == 1 and "next" not in second
    ids = [link["id"] for link in first["links"] + second["links"]]
    assert len(set(ids)) == 3


async def test_review_flow(app: FastAPI, as_role: dict[str, Any]) -> None:
    a, b = await _one_group_twice(app, as_role)
    analyst = as_role["analyst"]
    (link,) = (await analyst.get("/v1/links", params={"state": "proposed"})).json()["links"]
    assert sorted(link["reports"]) == sorted([a, b]) and link["state"] == "proposed"
    assert link["fields"]["distance"] == {"level": "<=100 m", "weight": pytest.approx(8.966)}
    assert link["weight"] > 1.0
    assert set((await _groups(analyst)).values()) == {min(a, b)}

    rejected = await analyst.post(f"/v1/links/{link['id']}/reject")
    assert rejected.status_code == 200
    assert rejected.json()["state"] == "rejected" and rejected.json()["reviewed_by"]
    assert await _groups(analyst) == {a: a, b: b}
    assert (await analyst.get("/v1/links", params={"state": "proposed"})).json()["links"] == []

    confirmed = await analyst.post(f"/v1/links/{link['id']}/confirm")
    assert confirmed.json()["state"] == "confirmed"
    assert set((await _groups(analyst)).values()) == {min(a, b)}
    audit = (await as_role["admin"].get("/v1/audit")).json()
    actions = [e["action"] for e in audit["entries"] if e.get("detail", {}).get("link_id")]
    assert actions[-2:] == ["link.reject", "link.confirm"]


async def test_an_unknown_link_is_a_problem(as_role: dict[str, Any]) -> None:
    missing = await as_role["analyst"].post(f"/v1/links/{uuid.uuid4()}/confirm")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    bad = await as_role["analyst"].post("/v1/links/not-a-uuid/confirm")
    assert bad.status_code in (400, 422)
    assert bad.headers["content-type"] == "application/problem+json"
    wrong_state = await as_role["analyst"].get("/v1/links", params={"state": "maybe"})
    assert wrong_state.status_code in (400, 422)


async def test_only_analysts_see_group_ids(app: FastAPI, as_role: dict[str, Any]) -> None:
    a, b = await _one_group_twice(app, as_role)
    group = min(a, b)
    for role in ("analyst", "admin"):
        assert await _groups(as_role[role]) == {a: group, b: group}
        item = (await as_role[role].get(f"/ogc/collections/reports/items/{a}")).json()
        assert item["properties"]["group_id"] == group
        items = (await as_role[role].get("/ogc/collections/reports/items")).json()
        assert {f["properties"]["group_id"] for f in items["features"]} == {group}
        single = (await as_role[role].get(f"/v1/reports/{b}")).json()
        assert single["properties"]["group_id"] == group
    reporter = as_role["reporter"]
    assert await _groups(reporter) == {a: None}  # its own report, without its group
    own = (await reporter.get(f"/ogc/collections/reports/items/{a}")).json()
    assert "group_id" not in own["properties"]
    own_items = (await reporter.get("/ogc/collections/reports/items")).json()
    assert all("group_id" not in f["properties"] for f in own_items["features"])
    assert "group_id" not in (await reporter.get(f"/v1/reports/{a}")).json()["properties"]
    for path in ("/v1/reports", "/ogc/collections/reports/items", f"/v1/reports/{a}"):
        response = await as_role["public"].get(path)
        assert response.status_code == 401 and "group_id" not in response.text


async def test_one_group_counts_once_in_analysts_figures(
    app: FastAPI, as_role: dict[str, Any]
) -> None:
    """Aggregates, a segment's time series and the segments choropleth carry groups and
    people_est beside reports and people; a rejection splits the group and the figures follow."""
    a, b = await _one_group_twice(app, as_role)
    analyst = as_role["analyst"]
    both = {"reports": 2, "people": 6, "groups": 1, "people_est": 3, "suppressed": False}
    doc = (await analyst.get("/v1/aggregates?group_by=segment&bucket=day")).json()
    assert doc["totals"]["all"] == both
    (row,) = doc["rows"]
    assert (row["reports"], row["groups"], row["people_est"]) == (2, 1, 3)
    segment = row["segment_id"]
    series = (await analyst.get(f"/v1/segments/{segment}/timeseries?bucket=day")).json()
    assert series["totals"]["all"] == both
    lines = (await analyst.get("/v1/aggregates/segments.geojson")).json()
    (line,) = [f for f in lines["features"] if f["properties"]["segment_id"] == segment]
    assert (line["properties"]["groups"], line["properties"]["people_est"]) == (1, 3)

    (link,) = (await analyst.get("/v1/links")).json()["links"]
    await analyst.post(f"/v1/links/{link['id']}/reject")
    doc = (await analyst.get("/v1/aggregates")).json()
    assert doc["totals"]["all"] == both | {"groups": 2, "people_est": 6}
    await analyst.post(f"/v1/links/{link['id']}/confirm")
    assert (await analyst.get("/v1/aggregates")).json()["totals"]["all"] == both
    assert (await as_role["admin"].delete(f"/v1/reports/{a}")).status_code in (200, 204)
    alone = {"reports": 1, "people": 3, "groups": 1, "people_est": 3, "suppressed": False}
    assert (await analyst.get("/v1/aggregates")).json()["totals"]["all"] == alone
    assert b
