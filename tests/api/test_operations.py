"""Operating the service in-process (issue #18 and #13's spoofed addresses): whose address counts
for rate limits, /metrics and who may read it, a statement timeout as its own problem, the
batch cost cap, and start-up that waits for a database that is not there yet."""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
import pytest
from fastapi import FastAPI

from service.api import lifecycle
from service.api.lifecycle import current_store
from service.app import create_app
from service.domain.release import release_through
from service.usecases.release import cut_release
from tests.api.test_outage import CuttableProxy
from tests.conftest import libpq_url, make_key, make_settings, wipe_reports
from tests.factories import report_body


@asynccontextmanager
async def serving(url: str, **overrides: Any) -> AsyncIterator[FastAPI]:
    app = create_app(make_settings(url, **overrides))
    async with app.router.lifespan_context(app):
        yield app


def client_for(app: FastAPI, *, peer: str = "127.0.0.1", **headers: str) -> httpx.AsyncClient:
    """A client whose TCP peer address (what the server sees) is ``peer``."""
    transport = httpx.ASGITransport(app=app, client=(peer, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver", headers=headers)


# --- X-Forwarded-For: believed only from CROSSINGS_TRUSTED_PROXIES (issue #13) ---------------


async def test_a_rotating_forwarded_for_from_an_untrusted_peer_is_ignored(store_url: str) -> None:
    """The attack of issue #13: 3,000 requests with a new X-Forwarded-For each, from loopback."""
    async with serving(store_url, rate_limit_public=20) as app, client_for(app) as client:
        statuses = [
            (await client.get("/ogc/conformance", headers={"X-Forwarded-For": f"10.0.{n // 250}.{n % 250}"})).status_code
            for n in range(60)
        ]  # fmt: skip
    assert statuses.count(200) == 20
    assert statuses.count(429) == 40


async def test_a_trusted_proxy_s_forwarded_for_names_the_client(store_url: str) -> None:
    async with (
        serving(store_url, rate_limit_public=3, trusted_proxies="10.9.0.0/16") as app,
        client_for(app, peer="10.9.1.1") as proxy,
    ):
        alice = [(await proxy.get("/ogc/conformance", headers={"X-Forwarded-For": "203.0.113.7"})).status_code for _ in range(4)]  # fmt: skip
        bob = await proxy.get("/ogc/conformance", headers={"X-Forwarded-For": "203.0.113.8"})
        # A client's own X-Forwarded-For before the proxy's entry changes nothing: the proxy
        # appends the address it saw, and the rightmost untrusted entry is the client.
        spoofed = await proxy.get(
            "/ogc/conformance", headers={"X-Forwarded-For": "198.51.100.1, 203.0.113.7"}
        )
    assert alice == [200, 200, 200, 429]
    assert bob.status_code == 200
    assert spoofed.status_code == 429


async def test_requests_with_a_bad_key_count_against_their_address(store_url: str) -> None:
    async with serving(store_url, rate_limit_public=5) as app, client_for(app) as client:
        bad = [
            (await client.get("/v1/reports", headers={"Authorization": f"Bearer crs_{uuid.uuid4().hex[:12]}_x"})).status_code
            for _ in range(8)
        ]  # fmt: skip
        after = await client.get("/ogc/conformance")  # same address, no key: over its budget
    assert bad == [401] * 5 + [429] * 3
    assert after.status_code == 429


# --- /metrics ---------------------------------------------------------------------------------


def _sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text, 0 when absent."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split(" ")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_metrics_count_requests_ingest_and_snaps(store_url: str) -> None:
    wipe_reports(store_url)
    async with serving(store_url, rate_limit_public=0, rate_limit_per_key=0) as app:
        admin = await asyncio.to_thread(make_key, current_store(app), "admin")
        async with client_for(app, Authorization=f"Bearer {admin}") as client:
            body = report_body()
            assert (await client.post("/v1/reports", json=body)).status_code == 201
            assert (await client.post("/v1/reports", json=body)).status_code == 200
            conflict = {**body, "people_count": 9}
            assert (await client.post("/v1/reports", json=conflict)).status_code == 409
            invalid = report_body(people_count=-1)
            assert (await client.post("/v1/reports", json=invalid)).status_code == 422
            assert (await client.get(f"/v1/reports/{body['id']}")).status_code == 200
            response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    for outcome in ("created", "duplicate", "conflict", "invalid"):
        assert _sample(text, "crossings_reports_ingested_total", outcome=outcome) == 1, outcome
    assert _sample(text, "crossings_snap_distance_meters_count") == 1
    assert _sample(text, "crossings_http_requests_total", route="/v1/reports/{report_id}",
                   method="GET", status="200", role="admin") == 1  # fmt: skip
    assert _sample(text, "crossings_http_requests_total", route="/v1/reports", method="POST",
                   status="201", role="admin") == 1  # fmt: skip
    assert _sample(text, "crossings_http_request_duration_seconds_count",
                   route="/v1/reports", method="POST") == 4  # fmt: skip
    assert "crossings_release_lag_seconds" in text
    assert "crossings_db_errors_total" in text or "crossings_db_errors" in text
    # Never a path with an id or a position in a label
    assert body["id"] not in text


async def test_metrics_need_an_admin_key_or_an_allowed_address(store_url: str) -> None:
    async with serving(store_url, metrics_allow="192.0.2.0/24, 2001:db8::/32") as app:
        keys = {r: await asyncio.to_thread(make_key, current_store(app), r) for r in ("analyst", "admin")}  # fmt: skip
        async with client_for(app, peer="192.0.2.10") as scraper:
            assert (await scraper.get("/metrics")).status_code == 200
        async with client_for(app, peer="198.51.100.1") as stranger:
            assert (await stranger.get("/metrics")).status_code == 401
            analyst = await stranger.get("/metrics", headers={"Authorization": f"Bearer {keys['analyst']}"})  # fmt: skip
            assert analyst.status_code == 403
            admin = await stranger.get("/metrics", headers={"Authorization": f"Bearer {keys['admin']}"})  # fmt: skip
            assert admin.status_code == 200
        # An allowed address behind an untrusted peer does not count: the peer is the client.
        async with client_for(app, peer="198.51.100.1") as spoofer:
            spoofed = await spoofer.get("/metrics", headers={"X-Forwarded-For": "192.0.2.10"})
            assert spoofed.status_code == 401


async def test_rate_limit_refusals_are_counted(store_url: str) -> None:
    async with serving(store_url, rate_limit_public=2, metrics_allow="192.0.2.1/32") as app:
        async with client_for(app, peer="198.51.100.9") as client:
            statuses = [(await client.get("/ogc/conformance")).status_code for _ in range(5)]
        async with client_for(app, peer="192.0.2.1") as scraper:
            text = (await scraper.get("/metrics")).text
    assert statuses == [200, 200, 429, 429, 429]
    assert _sample(text, "crossings_rate_limited_total", bucket="addr") == 3


# --- Start-up and readiness --------------------------------------------------------------------


@pytest.mark.postgis
async def test_start_up_waits_for_a_database_that_is_not_there_yet(postgis_url: str) -> None:
    """The database is reached through a proxy that does not listen yet: the app starts anyway,
    answers /healthz, says why /readyz is 503, and becomes ready when the database appears."""
    parts = urlsplit(postgis_url)
    proxy = CuttableProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    await proxy.start()
    await proxy.cut()  # its port is known, and nothing listens there now
    url = urlunsplit(parts._replace(netloc=f"{parts.username}@127.0.0.1:{proxy.port}"))
    async with (
        serving(url, startup_wait_s=0.5, db_retry_max_s=0.5) as app,
        client_for(app) as client,
    ):
        assert (await client.get("/healthz")).status_code == 200
        waiting = await client.get("/readyz")
        assert waiting.status_code == 503
        assert "waiting for the database" in waiting.json()["detail"]
        assert (await client.get("/v1/segments")).status_code == 503
        await proxy.start()
        for _ in range(100):
            if (await client.get("/readyz")).status_code == 200:
                break
            await asyncio.sleep(0.1)
        assert (await client.get("/readyz")).status_code == 200
        assert (await client.get("/v1/segments")).status_code == 200
    await proxy.cut()


# --- Statement timeouts and the batch cost cap (PostGIS: SQLite has no statement timeout) -------


@pytest.mark.postgis
async def test_a_statement_timeout_is_a_504_of_its_own_without_retry_after(
    postgis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Another session holds the reports table locked: the insert waits past the statement
    timeout (300 ms) while the database itself answers: 504, not 503 'unreachable'."""
    wipe_reports(postgis_url)
    async with serving(postgis_url, db_statement_timeout_ms=300, rate_limit_per_key=0) as app:
        admin = await asyncio.to_thread(make_key, current_store(app), "admin")
        dsn = libpq_url(postgis_url)
        async with (
            await psycopg.AsyncConnection.connect(dsn) as locker,
            client_for(app, Authorization=f"Bearer {admin}") as client,
        ):
            await locker.execute("LOCK TABLE reports IN ACCESS EXCLUSIVE MODE")
            with caplog.at_level(logging.WARNING, logger="crossings"):
                response = await client.post("/v1/reports", json=report_body(notes="secret note"))
            ready = await client.get("/readyz")  # the database is up all along
            await locker.rollback()
    assert response.status_code == 504
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == "/problems/statement-timeout"
    assert "retry-after" not in response.headers
    assert ready.status_code == 200
    lines = [r.getMessage() for r in caplog.records if "StatementTimeout" in r.getMessage()]
    assert len(lines) == 1
    assert "add_reports" in lines[0] and "QueryCanceled" in lines[0]
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "INSERT" not in logged and "SELECT" not in logged and "secret note" not in logged
    assert "\n" not in lines[0]


@pytest.mark.postgis
async def test_a_batch_that_cannot_finish_in_time_is_refused_before_any_work(
    postgis_url: str,
) -> None:
    wipe_reports(postgis_url)
    async with serving(
        postgis_url, db_statement_timeout_ms=1_000, batch_item_cost_ms=2.0, rate_limit_per_key=0
    ) as app:
        admin = await asyncio.to_thread(make_key, current_store(app), "admin")
        async with client_for(app, Authorization=f"Bearer {admin}") as client:
            refused = await client.post("/v1/reports/batch", json=[report_body() for _ in range(251)])  # fmt: skip
            listed = await client.get("/v1/reports")
            accepted = await client.post("/v1/reports/batch", json=[report_body() for _ in range(250)])  # fmt: skip
    assert refused.status_code == 413
    assert "at most 250" in refused.json()["detail"]
    assert listed.json()["features"] == []  # nothing of the refused batch was stored
    assert accepted.status_code == 200
    assert accepted.json()["summary"]["created"] == 250


async def test_sqlite_batches_have_no_cost_cap(sqlite_url: str) -> None:
    wipe_reports(sqlite_url)
    async with serving(
        sqlite_url, db_statement_timeout_ms=1_000, batch_item_cost_ms=2.0, rate_limit_per_key=0
    ) as app:
        admin = await asyncio.to_thread(make_key, current_store(app), "admin")
        async with client_for(app, Authorization=f"Bearer {admin}") as client:
            response = await client.post("/v1/reports/batch", json=[report_body() for _ in range(300)])  # fmt: skip
    assert response.json()["summary"]["created"] == 300


# --- Who cuts the public release: CROSSINGS_RELEASE_CUTTER (docs/operations.md) -------------


async def _release_lag(app: FastAPI) -> float:
    admin = await asyncio.to_thread(make_key, current_store(app), "admin")
    async with client_for(app, Authorization=f"Bearer {admin}") as client:
        response = await client.get("/metrics")
    assert response.status_code == 200
    return _sample(response.text, "crossings_release_lag_seconds")


async def test_only_a_server_with_the_release_cutter_on_cuts_the_release(fresh_url: str) -> None:
    """A server with the cutter off watches the release's lag and never cuts, however overdue
    the cut; one with it on cuts the overdue release on its own."""
    overrides: dict[str, Any] = {"release_refresh_s": 1.0, "public_delay_h": 24}
    async with serving(fresh_url, release_cutter=False, **overrides) as app:
        store = current_store(app)
        # A cut two days old: a new day has come of age since, so a cut is due.
        stale = await asyncio.to_thread(
            cut_release, store, now=datetime.now(UTC) - timedelta(days=2), delay_h=24
        )
        # The keeper has run since the stale cut when it reports that cut's lag (about 3 days).
        for _ in range(100):
            if await _release_lag(app) > 2 * 86_400:
                break
            await asyncio.sleep(0.2)
        else:
            pytest.fail("the release keeper never reported the release's lag")
        info = await asyncio.to_thread(store.release_info)
        assert info is not None and info.release_id == stale.release_id

    async with serving(fresh_url, release_cutter=True, **overrides) as app:
        store = current_store(app)
        want = release_through(datetime.now(UTC), 24)
        for _ in range(100):
            info = await asyncio.to_thread(store.release_info)
            assert info is not None
            if info.release_id != stale.release_id:
                break
            await asyncio.sleep(0.2)
        else:
            pytest.fail("a server with the cutter on did not cut the overdue release")
        assert info.through == want
        assert 0 < await _release_lag(app) < 2 * 86_400


# --- The folder's backlog on /metrics (docs/operations.md) -------------------------------------


async def test_metrics_show_what_the_folder_has_still_to_do(fresh_url: str) -> None:
    """PostGIS: reports acknowledged while no process folds are the backlog, until folded and
    linked; SQLite counts and links in ingest's own transaction and has no backlog to show."""
    async with serving(fresh_url, rollup_folder="off", rate_limit_per_key=0) as app:
        store = current_store(app)
        admin = await asyncio.to_thread(make_key, store, "admin")
        async with client_for(app, Authorization=f"Bearer {admin}") as client:
            for _ in range(3):
                assert (await client.post("/v1/reports", json=report_body())).status_code == 201

            async def backlog() -> tuple[float, float, str]:
                text = (await client.get("/metrics")).text
                rollups = _sample(text, "crossings_fold_backlog_reports", queue="rollups")
                links = _sample(text, "crossings_fold_backlog_reports", queue="links")
                return rollups, links, text

            if fresh_url.startswith("sqlite"):
                await asyncio.sleep(lifecycle.BACKLOG_METRICS_EVERY_S + 1)
                *_, text = await backlog()
                assert "crossings_fold_backlog_reports{" not in text
                return
            for want in ((3.0, 3.0), (0.0, 0.0)):
                for _ in range(100):
                    rollups, links, _ = await backlog()
                    if (rollups, links) == want:
                        break
                    await asyncio.sleep(0.2)
                else:
                    pytest.fail(f"backlog {rollups, links}, wanted {want}")
                await asyncio.to_thread(store.fold_rollups)
                await asyncio.to_thread(store.settle_links)
