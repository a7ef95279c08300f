"""Back up and restore with pg_dump and pg_restore, as docs/deployment.md tells an operator: a
populated database dumped, restored into a new one, and the service reading the same reports,
aggregates and keys from it."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine

from service.api.lifecycle import current_store
from service.app import create_app
from service.settings import Settings
from service.storage.postgis.migrations import pending
from tests.conftest import fresh_postgis_database, libpq_url, make_key
from tests.factories import report_body
from tests.pgcluster import pg_bin

pytestmark = pytest.mark.postgis

PLACES = [(-73.5172, 45.0071), (-97.2263, 49.0004), (-106.45, 31.76), (-75.0, 40.0)]


@contextlib.asynccontextmanager
async def serving(url: str) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    app = create_app(Settings(database_url=url, rate_limit_public=0, rate_limit_per_key=0))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client, app


async def _views(client: httpx.AsyncClient, key: str, report_id: str) -> dict[str, Any]:
    auth = {"Authorization": f"Bearer {key}"}
    paths = {
        "page": "/v1/reports?limit=1000",
        "one": f"/v1/reports/{report_id}",
        "aggregates": "/v1/aggregates?group_by=segment&bucket=day",
        "kinds": "/v1/aggregates?group_by=kind&bucket=month",
    }
    views = {}
    for name, path in paths.items():
        answer = await client.get(path, headers=auth)
        assert answer.status_code == 200, (path, answer.text)
        views[name] = answer.json()
    return views


def _tool(name: str) -> str:
    binaries = pg_bin()
    return str(binaries / name) if binaries else name


async def test_a_restored_dump_serves_the_same_reports_aggregates_and_keys(
    tmp_path: Path,
) -> None:
    start = datetime.now(UTC) - timedelta(days=20)
    bodies = [
        report_body(
            lon=PLACES[i % 4][0],
            lat=PLACES[i % 4][1],
            observed_at=(start + timedelta(hours=7 * i)).isoformat(),
            kind=("crossing", "attempt", "assistance")[i % 3],
            people_count=1 + i % 6,
        )
        for i in range(60)
    ]
    dump = tmp_path / "crossings.dump"
    with fresh_postgis_database() as source:
        async with serving(source) as (client, app):
            key = make_key(current_store(app), "admin")
            answer = await client.post(
                "/v1/reports/batch", json=bodies, headers={"Authorization": f"Bearer {key}"}
            )
            assert answer.json()["summary"]["created"] == len(bodies)
            before = await _views(client, key, bodies[7]["id"])
        subprocess.run(
            [_tool("pg_dump"), "--format=custom", f"--file={dump}", libpq_url(source)],
            check=True, capture_output=True,
        )  # fmt: skip
    # The source is gone; the dump is all there is.
    with fresh_postgis_database(revision=None) as url:  # empty: the dump brings PostGIS
        subprocess.run(
            [_tool("pg_restore"), "--no-owner", "--exit-on-error", f"--dbname={libpq_url(url)}",
             str(dump)],
            check=True, capture_output=True,
        )  # fmt: skip
        engine = create_engine(url)
        try:
            assert not pending(engine, url)  # `crossings serve` starts on it as it is
        finally:
            engine.dispose()
        async with serving(url) as (client, _):
            after = await _views(client, key, bodies[7]["id"])
    assert len(before["page"]["features"]) == len(bodies)
    assert before["aggregates"]["totals"]["all"]["reports"] == len(bodies)
    assert after == before
