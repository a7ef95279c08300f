"""The alerts and webhooks API on both stores: filters, paging, roles, problems for bad input."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from service.api.lifecycle import current_store
from service.api.state import app_state
from service.domain.alerts import AlertEvent
from tests.problems import refused_fields
from tests.webhooks.receivers import transition

PUBLIC_IP_URL = "https://93.184.215.14/hooks/crossings"  # a literal public address: no DNS


@pytest.fixture
async def alerts(app: FastAPI, client: httpx.AsyncClient) -> list[Any]:
    """Three alerts: two on CAN-USA (one closed), one on MEX-USA."""
    store = current_store(app)
    _wipe(app)
    base = datetime(2026, 12, 1, tzinfo=UTC)
    out: list[Any] = store.record_alerts([
        transition(segment_id="CA-US-0208", at=base),
        transition(segment_id="CA-US-0300", at=base + timedelta(hours=1)),
        transition(border="MEX-USA", section="Sonora", segment_id="MX-US-0001",
                   at=base + timedelta(hours=2)),
    ])  # fmt: skip
    out += store.record_alerts([
        transition(segment_id="CA-US-0300", event=AlertEvent.CLOSED, closed_day=date(2026, 12, 2),
                   at=base + timedelta(hours=3)),
    ])  # fmt: skip
    return out


def _wipe(app: FastAPI) -> None:
    from tests.webhooks.conftest import wipe

    wipe(app_state(app).settings.database_url)


def _as(app: FastAPI, role: str) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {app.state.test_keys[role]}"} if role != "public" else {}
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver", headers=headers
    )


async def test_alerts_list_newest_first(client: httpx.AsyncClient, alerts: list[Any]) -> None:
    response = await client.get("/v1/alerts")
    assert response.status_code == 200
    segments = [a["segment_id"] for a in response.json()["alerts"]]
    assert segments == ["CA-US-0300", "MX-US-0001", "CA-US-0208"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("state=open", ["MX-US-0001", "CA-US-0208"]),
        ("state=closed", ["CA-US-0300"]),
        ("border=MEX-USA", ["MX-US-0001"]),
        ("segment=CA-US-0208", ["CA-US-0208"]),
        ("since=2026-12-01T01:30:00Z", ["CA-US-0300", "MX-US-0001"]),
    ],
)
async def test_alerts_filter(
    client: httpx.AsyncClient, alerts: list[Any], query: str, expected: list[str]
) -> None:
    response = await client.get(f"/v1/alerts?{query}")
    assert [a["segment_id"] for a in response.json()["alerts"]] == expected


async def test_alerts_page_by_next_link(client: httpx.AsyncClient, alerts: list[Any]) -> None:
    first = (await client.get("/v1/alerts?limit=2")).json()
    second = (await client.get(first["next"])).json()
    assert len(first["alerts"]) == 2 and len(second["alerts"]) == 1
    assert "next" not in second


async def test_one_alert_by_id(client: httpx.AsyncClient, alerts: list[Any]) -> None:
    response = await client.get(f"/v1/alerts/{alerts[0].id}")
    assert response.status_code == 200
    body = response.json()
    assert body["segment_id"] == "CA-US-0208" and body["state"] == "open"
    missing = await client.get("/v1/alerts/00000000-0000-4000-8000-000000000000")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(("role", "status"), [("public", 401), ("reporter", 403),
                                              ("analyst", 200), ("admin", 200)])  # fmt: skip
async def test_alerts_are_for_analysts_and_admins(
    app: FastAPI, alerts: list[Any], role: str, status: int
) -> None:
    async with _as(app, role) as c:
        listing = await c.get("/v1/alerts")
        one = await c.get(f"/v1/alerts/{alerts[0].id}")
    assert (listing.status_code, one.status_code) == (status, status)


async def test_an_alert_read_is_audited(app: FastAPI, alerts: list[Any]) -> None:
    before = datetime.now(UTC)
    async with _as(app, "analyst") as c:
        await c.get("/v1/alerts?border=MEX-USA")
    entries = current_store(app).list_audit(since=before)
    assert any(e.action == "alerts.read" and e.detail["query"] == "border=MEX-USA"
               for e in entries)  # fmt: skip


@pytest.mark.parametrize("query", ["state=sideways", "since=yesterday", "limit=0", "cursor=%%%"])
async def test_bad_alert_filters_are_problems(
    client: httpx.AsyncClient, alerts: list[Any], query: str
) -> None:
    response = await client.get(f"/v1/alerts?{query}")
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"


async def test_a_webhook_secret_is_shown_once(client: httpx.AsyncClient) -> None:
    made = await client.post("/v1/webhooks", json={"url": PUBLIC_IP_URL,
                                                    "filter": {"borders": ["CAN-USA"]}})  # fmt: skip
    assert made.status_code == 201, made.text
    secret = made.json()["secret"]
    assert secret.startswith("whsec_")
    hook_id = made.json()["id"]
    listed = await client.get("/v1/webhooks")
    one = await client.get(f"/v1/webhooks/{hook_id}")
    assert secret not in listed.text and secret not in one.text
    assert one.json()["filter"]["borders"] == ["CAN-USA"]
    rotated = await client.post(f"/v1/webhooks/{hook_id}/rotate")
    assert rotated.json()["secret"] not in (secret, None)
    assert len(rotated.json()["secrets"]) == 2


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "ftp://93.184.215.14/x"}, "url"),
        ({"url": "not a url"}, "url"),
        ({"url": "https://user:pw@93.184.215.14/x"}, "url"),
        ({"url": "http://127.0.0.1:9/x"}, "url"),
        ({"url": "http://10.1.2.3/x"}, "url"),
        ({"url": "http://[::1]/x"}, "url"),
        ({"url": "http://169.254.169.254/latest/meta-data"}, "url"),
        ({"url": "http://localhost/x"}, "url"),
        ({"url": PUBLIC_IP_URL, "filter": {"event_types": ["alert.exploded"]}},
         "filter.event_types"),
        ({"url": PUBLIC_IP_URL, "filter": {"borders": "CAN-USA"}}, "filter.borders"),
        ({"url": PUBLIC_IP_URL, "filter": {"colour": ["red"]}}, "filter.colour"),
    ],
)  # fmt: skip
async def test_bad_webhooks_are_refused_as_problems(
    client: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    assert field in refused_fields(await client.post("/v1/webhooks", json=body), 422)


async def test_a_deleted_webhook_stays_listed_disabled(client: httpx.AsyncClient) -> None:
    made = (await client.post("/v1/webhooks", json={"url": PUBLIC_IP_URL})).json()
    assert (await client.delete(f"/v1/webhooks/{made['id']}")).status_code == 204
    one = (await client.get(f"/v1/webhooks/{made['id']}")).json()
    assert one["disabled_reason"] == "deleted"
    assert (await client.delete(f"/v1/webhooks/{made['id']}")).status_code == 404


async def test_deliveries_are_visible_to_an_admin(app: FastAPI, client: httpx.AsyncClient) -> None:
    _wipe(app)
    made = (await client.post("/v1/webhooks", json={"url": PUBLIC_IP_URL})).json()
    current_store(app).record_alerts([transition()])
    response = await client.get(f"/v1/webhooks/{made['id']}/deliveries")
    [delivery] = response.json()["deliveries"]
    assert (delivery["event_type"], delivery["state"], delivery["attempts"]) == (
        "alert.opened", "pending", 0,
    )  # fmt: skip
    pending = await client.get(f"/v1/webhooks/{made['id']}/deliveries?state=delivered")
    assert pending.json()["deliveries"] == []
    bad = await client.get(f"/v1/webhooks/{made['id']}/deliveries?state=lost")
    assert bad.status_code == 422


@pytest.mark.parametrize("role", ["public", "reporter", "analyst"])
async def test_webhooks_are_for_admins(app: FastAPI, role: str) -> None:
    async with _as(app, role) as c:
        responses = [await c.get("/v1/webhooks"),
                     await c.post("/v1/webhooks", json={"url": PUBLIC_IP_URL})]  # fmt: skip
    assert {r.status_code for r in responses} == {401 if role == "public" else 403}
