"""Reads from a streaming replica (CROSSINGS_READ_DATABASE_URL), on a real primary and hot standby
made for this module (tests/pgcluster.py): lag-tolerant reads go to the replica, a caller's own
writes read back at once, and a lagging or lost replica gives way to the primary."""

from __future__ import annotations

import contextlib
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from service.api.lifecycle import current_store
from service.app import create_app
from service.settings import Settings
from service.storage.postgis.migrations import upgrade
from service.storage.postgis.rollups import ROLLUP_TABLES
from service.storage.postgis.store import PostgisStore
from tests.conftest import IN_CI, make_key
from tests.factories import report_body
from tests.pgcluster import Replicated, pg_bin, replicated_cluster

pytestmark = pytest.mark.postgis


@pytest.fixture(scope="module")
def cluster() -> Iterator[Replicated]:
    if pg_bin() is None:
        if IN_CI:
            pytest.fail("the replica tests need PostgreSQL's binaries under CI=true")
        pytest.skip("no PostgreSQL binaries in /usr/lib/postgresql")
    with replicated_cluster() as made:
        upgrade(made.primary.url(made.dbname))
        yield made


@pytest.fixture(autouse=True)
def replaying(cluster: Replicated) -> Iterator[None]:
    """Each test starts from no reports and a running replica that replays; and leaves it so."""
    cluster.primary.sql(f"TRUNCATE reports, {', '.join(ROLLUP_TABLES)}", cluster.dbname)
    cluster.wait_replayed()
    yield
    try:
        cluster.replica.sql("SELECT pg_wal_replay_resume()")
    except Exception:
        cluster.replica.start()
    cluster.wait_replayed()


@contextlib.asynccontextmanager
async def served(
    cluster: Replicated, **overrides: Any
) -> AsyncIterator[tuple[httpx.AsyncClient, FastAPI, dict[str, str]]]:
    """A client of an app on the primary with the replica as its read database; keys by role."""
    settings = Settings(
        database_url=cluster.primary.url(cluster.dbname),
        read_database_url=cluster.replica.url(cluster.dbname),
        rate_limit_public=0,
        rate_limit_per_key=0,
        **overrides,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        keys = {role: make_key(current_store(app), role) for role in ("reporter", "admin")}
        cluster.wait_replayed()  # the border and the keys, on the replica too
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client, app, keys


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def _post(client: httpx.AsyncClient, key: str, count: int) -> list[str]:
    bodies = [report_body() for _ in range(count)]
    answer = await client.post("/v1/reports/batch", json=bodies, headers=_auth(key))
    assert answer.json()["summary"]["created"] == count
    return [body["id"] for body in bodies]


async def _total(client: httpx.AsyncClient, key: str) -> int:
    answer = await client.get("/v1/aggregates?group_by=segment&bucket=month", headers=_auth(key))
    assert answer.status_code == 200, answer.text
    return int(answer.json()["totals"]["all"]["reports"])


def _on_replica(cluster: Replicated, report_id: str) -> int:
    count = cluster.replica.sql(
        f"SELECT count(*) FROM reports WHERE id = '{report_id}'", cluster.dbname
    )
    assert isinstance(count, int), count
    return count


async def test_aggregates_are_read_from_the_replica(cluster: Replicated) -> None:
    async with served(cluster, read_max_lag_s=60) as (client, app, keys):
        await _post(client, keys["admin"], 3)
        cluster.wait_replayed()
        cluster.replica.sql("SELECT pg_wal_replay_pause()")
        await _post(client, keys["admin"], 2)  # on the primary only
        before = _replica(app).reads["replica"]
        assert await _total(client, keys["admin"]) == 3  # the replica's figure: lag tolerated
        assert _replica(app).reads["replica"] > before
        cluster.replica.sql("SELECT pg_wal_replay_resume()")
        cluster.wait_replayed()
        assert await _total(client, keys["admin"]) == 5


async def test_a_reporter_reads_back_its_own_report_while_the_replica_lags(
    cluster: Replicated,
) -> None:
    async with served(cluster, read_wait_ms=100) as (client, _, keys):
        cluster.replica.sql("SELECT pg_wal_replay_pause()")
        [report_id] = await _post(client, keys["reporter"], 1)
        assert _on_replica(cluster, report_id) == 0
        one = await client.get(f"/v1/reports/{report_id}", headers=_auth(keys["reporter"]))
        assert one.status_code == 200, one.text
        page = await client.get("/v1/reports", headers=_auth(keys["reporter"]))
        assert [f["id"] for f in page.json()["features"]] == [report_id]


async def test_a_report_posted_through_another_process_reads_back_while_the_replica_lags(
    cluster: Replicated,
) -> None:
    async with (
        served(cluster) as (one, _, keys),
        served(cluster) as (other, _, _),
    ):
        cluster.replica.sql("SELECT pg_wal_replay_pause()")
        [report_id] = await _post(one, keys["reporter"], 1)
        assert _on_replica(cluster, report_id) == 0
        read = await other.get(f"/v1/reports/{report_id}", headers=_auth(keys["reporter"]))
        assert read.status_code == 200, read.text
        missing = await other.get(f"/v1/reports/{uuid.uuid4()}", headers=_auth(keys["reporter"]))
        assert missing.status_code == 404


async def test_own_writes_are_read_from_the_replica_once_it_has_replayed_them(
    cluster: Replicated,
) -> None:
    async with served(cluster, read_wait_ms=2000) as (client, app, keys):
        before = _replica(app).reads["replica"]
        for _ in range(3):
            [report_id] = await _post(client, keys["reporter"], 1)
            one = await client.get(f"/v1/reports/{report_id}", headers=_auth(keys["reporter"]))
            assert one.status_code == 200, one.text
        assert _replica(app).reads["replica"] >= before + 3


async def test_a_replica_lagging_beyond_the_bound_is_not_read(cluster: Replicated) -> None:
    async with served(cluster, read_max_lag_s=0.5) as (client, _, keys):
        await _post(client, keys["admin"], 1)
        cluster.wait_replayed()
        cluster.replica.sql("SELECT pg_wal_replay_pause()")
        time.sleep(0.7)  # the last transaction the replica replayed is now older than the bound
        await _post(client, keys["admin"], 4)
        assert await _total(client, keys["admin"]) == 5


async def test_a_lost_replica_gives_way_to_the_primary_and_is_read_again_when_back(
    cluster: Replicated,
) -> None:
    async with served(cluster, read_retry_s=0.5) as (client, app, keys):
        await _post(client, keys["admin"], 2)
        cluster.replica.stop("immediate")
        [report_id] = await _post(client, keys["reporter"], 1)
        assert await _total(client, keys["admin"]) == 3
        one = await client.get(f"/v1/reports/{report_id}", headers=_auth(keys["reporter"]))
        assert one.status_code == 200, one.text
        page = await client.get("/v1/reports?limit=10", headers=_auth(keys["admin"]))
        assert len(page.json()["features"]) == 3
        cluster.replica.start()
        cluster.wait_replayed()
        time.sleep(0.6)
        before = _replica(app).reads["replica"]
        assert await _total(client, keys["admin"]) == 3
        assert _replica(app).reads["replica"] > before


async def test_a_page_read_on_the_replica_is_audited_on_the_primary(cluster: Replicated) -> None:
    async with served(cluster) as (client, app, keys):
        await _post(client, keys["admin"], 1)
        since = datetime.now(UTC)
        before = _replica(app).reads["replica"]
        page = await client.get("/v1/reports?limit=5", headers=_auth(keys["admin"]))
        assert len(page.json()["features"]) == 1
        assert _replica(app).reads["replica"] == before + 1
        entries = current_store(app).list_audit(since)
        assert [(e.action, e.detail["path"]) for e in entries] == [("reports.read", "/v1/reports")]


def test_a_read_database_that_is_not_a_standby_is_not_read(cluster: Replicated) -> None:
    from service.domain.queries import ReportQuery
    from service.storage import open_store

    url = cluster.primary.url(cluster.dbname)
    store = open_store(Settings(database_url=url, read_database_url=url))
    try:
        assert store.query_reports(ReportQuery(limit=1)).reports == []
        assert store.replica.reads == {"replica": 0, "primary": 0}  # type: ignore[attr-defined]
        assert not store.replica.usable(store.engine)  # type: ignore[attr-defined]
    finally:
        store.close()


def test_the_cluster_is_a_real_streaming_pair(cluster: Replicated) -> None:
    assert cluster.replica.sql("SELECT pg_is_in_recovery()") is True
    assert cluster.primary.sql("SELECT count(*) FROM pg_stat_replication") == 1
    with pytest.raises(subprocess.CalledProcessError):
        subprocess.run(
            ["psql", cluster.replica.dsn(cluster.dbname), "-c", "CREATE TABLE t (i int)"],
            check=True,
            capture_output=True,
        )


def _replica(app: Any) -> Any:
    """The store's replica router (a PostGIS store read through a replica)."""
    store = current_store(app)
    assert isinstance(store, PostgisStore) and store.replica is not None
    return store.replica
