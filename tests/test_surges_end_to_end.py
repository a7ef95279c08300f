"""Surges end to end (issue #19), on both stores: reports posted to a real server over HTTP, a
quiet history and then a sudden day, raise one alert per episode, visible to an analyst at
/v1/alerts, delivered to a real receiver signed as Standard Webhooks (checked by the package's own
verifier), and withdrawn when the reports that raised it are deleted."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from standardwebhooks.webhooks import Webhook

from tests.factories import report_body
from tests.live import auth, live_key, running_server
from tests.webhooks.receivers import ScriptedReceiver

ENV = {
    "CROSSINGS_WEBHOOK_ALLOW_PRIVATE": "true",  # the receiver is on loopback
    "CROSSINGS_WEBHOOK_POLL_S": "0.1",
    "CROSSINGS_ROLLUP_FOLD_INTERVAL_MS": "50",
}
SEGMENT = "CA-US-0208"  # Roxham Road


def _day(days_ago: int, hour: int = 12) -> str:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return (today - timedelta(days=days_ago, hours=-hour)).isoformat()


def _post(client: httpx.Client, key: str, bodies: list[dict[str, Any]]) -> None:
    answer = client.post("/v1/reports/batch", json=bodies, headers=auth(key))
    assert answer.status_code == 200, answer.text
    assert answer.json()["summary"]["created"] == len(bodies)


def _alerts(client: httpx.Client, key: str, **params: str) -> list[dict[str, Any]]:
    answer = client.get("/v1/alerts", params=params, headers=auth(key))
    assert answer.status_code == 200, answer.text
    alerts: list[dict[str, Any]] = answer.json()["alerts"]
    return alerts


def _wait_for(check: Any, *, timeout_s: float = 90) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError("timed out")


def test_a_surge_raises_one_alert_delivered_signed_and_withdrawn_on_deletion(
    fresh_url: str,
) -> None:
    admin = live_key(fresh_url, "admin")
    analyst = live_key(fresh_url, "analyst")
    with (
        ScriptedReceiver() as receiver,
        running_server(fresh_url, extra_env=ENV) as base,
        httpx.Client(base_url=base, timeout=60) as client,
    ):
        made = client.post("/v1/webhooks", json={"url": receiver.url}, headers=auth(admin))
        assert made.status_code == 201, made.text
        secret = made.json()["secret"]

        # Eight quiet weeks at Roxham Road: one report a day, 35 to 91 days ago.
        _post(client, admin, [report_body(observed_at=_day(ago)) for ago in range(91, 35, -1)])
        time.sleep(1)  # PostGIS: the fold (every 50 ms here) has counted them in
        assert _alerts(client, analyst, segment=SEGMENT) == []  # in control: nothing raised

        # Then a day with 40 reports of 3 people each, posted late (34 days on).
        surge = [
            report_body(observed_at=_day(34, hour=1 + i % 20), people_count=3) for i in range(40)
        ]
        started = datetime.now(UTC)
        _post(client, admin, surge)
        opened = _wait_for(lambda: _alerts(client, analyst, segment=SEGMENT, state="open"))
        day = _day(34)[:10]
        series = {(a["kind"], a["measure"]) for a in opened}
        assert {(None, "reports"), ("crossing", "reports")} <= series
        for alert in opened:
            assert alert["opened_day"] == day
            assert alert["observed"] >= 40 if alert["measure"] == "reports" else True
            assert alert["observed"] > alert["expected"]
            # Raised late: found now, for a day a month ago.
            assert datetime.fromisoformat(alert["raised_at"]) >= started - timedelta(seconds=1)
        # The region's and border's series rose with the segment's.
        regions = _alerts(client, analyst, state="open")
        assert any(a["segment_id"] is None and a["section"] is not None for a in regions)
        assert any(a["segment_id"] is None and a["section"] is None for a in regions)

        # One alert per series and episode, however many reports raised it.
        keys = [
            (a["border"], a["section"], a["segment_id"], a["kind"], a["measure"]) for a in regions
        ]
        assert len(keys) == len(set(keys))

        # Delivered, signed, each webhook-id once per alert version.
        def delivered() -> list[dict[str, Any]]:
            with receiver.lock:
                got = list(receiver.received)
            bodies = []
            for request in got:
                Webhook(secret).verify(request.body, request.headers)
                bodies.append(json.loads(request.body))
            ids = {a["id"] for a in regions}
            return [b for b in bodies if b["data"]["id"] in ids] if len(bodies) >= len(ids) else []

        bodies = _wait_for(delivered)
        assert {b["type"] for b in bodies} <= {"alert.opened", "alert.updated"}
        assert {b["data"]["id"] for b in bodies} == {a["id"] for a in regions}

        # Deleting the surge's reports withdraws the episode: its alerts close.
        for body in surge:
            gone = client.delete(f"/v1/reports/{body['id']}", headers=auth(admin))
            assert gone.status_code == 204, gone.text
        _wait_for(lambda: not _alerts(client, analyst, segment=SEGMENT, state="open"))
        closed = _alerts(client, analyst, segment=SEGMENT, state="closed")
        assert {a["id"] for a in closed} == {a["id"] for a in opened}


def test_alerts_are_not_public(fresh_url: str) -> None:
    reporter = live_key(fresh_url, "reporter")
    with running_server(fresh_url) as base, httpx.Client(base_url=base, timeout=30) as client:
        assert client.get("/v1/alerts").status_code == 401
        assert client.get("/v1/alerts", headers=auth(reporter)).status_code == 403
        missing = client.get(f"/v1/alerts/{uuid.uuid4()}", headers=auth(reporter))
        assert missing.status_code == 403
