"""PostGIS keeps its rollups off ingest's critical path (migration 0012): a report waits in
rollup_pending until a fold counts it in. These tests hold the promises that makes:

- every read (aggregates by month and day and in a box, tile clusters, the "too many points"
  test, segment counts) answers the same with reports pending, after a fold, and after a recount
  of the rollups from the reports;
- a fold killed midway (its process killed inside the transaction) loses nothing and counts
  nothing twice, and neither does a writer killed between its commit and a fold;
- the folder in a process of its own (`crossings fold`; `crossings serve`'s supervised child
  with CROSSINGS_ROLLUP_FOLDER=process) folds what servers acknowledged; killed between the
  reports' commit and their fold it is restarted and counts each once; SIGTERM lets a fold under
  way finish;
- concurrent writers (threads on two stores, as two server processes; and 16 HTTP clients on a
  real server with two workers) with replays, conflicts and deletes: no deadlock, no lost count,
  and the rollups equal a recount from the reports.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from service.domain.grid import GRID_LEVEL, grid_cell
from service.domain.reports import ReportDraft
from service.domain.segments import SegmentIndex
from service.domain.tiles import TileFilter, TileQuery, tile_address
from service.settings import Settings
from service.storage.postgis.rollups import PENDING, ROLLUP_TABLES, live
from service.storage.postgis.store import PostgisStore
from service.usecases.aggregates import AggregateRequest, aggregate
from service.usecases.segments import ensure_segments
from service.usecases.submit_reports import submit_batch
from tests.conftest import fresh_postgis_database, libpq_url
from tests.factories import report_body, scattered_drafts
from tests.live import auth, free_port, live_key, run_cli, running_server

NOW = datetime(2026, 6, 1, tzinfo=UTC)
# Near the border (snapped) and one place far from it (beyond reach).
PLACES = [(-73.45, 45.01), (-122.75, 49.0), (-97.2, 49.0), (-106.5, 31.77), (-95.0, 30.0)]
BOX = (-73.9, 44.7, -73.0, 45.3)  # around Roxham Road: whole level-12 cells and edge strips


def _drafts(n: int, seed: int) -> list[ReportDraft]:
    return scattered_drafts(
        n, seed, places=PLACES, spread=(0.1, 0.06),
        observed_at=lambda rng: NOW - timedelta(seconds=rng.randrange(120 * 86_400)),
    )  # fmt: skip


def _settings(url: str) -> Settings:
    return Settings(database_url=url)


@pytest.fixture
def database() -> Iterator[tuple[str, SegmentIndex]]:
    """A fresh migrated database with the bundled border, and the border's index."""
    with fresh_postgis_database() as url:
        store = PostgisStore.open(_settings(url).store_options)
        try:
            index = ensure_segments(store, None)
        finally:
            store.close()
        yield url, index


def _store(url: str, *, interval_ms: int = 0, batch: int = 5_000) -> PostgisStore:
    """A store whose folder runs every ``interval_ms`` (0: never; folds only when asked)."""
    return PostgisStore.open(
        Settings(
            database_url=url, rollup_fold_interval_ms=interval_ms, rollup_fold_batch=batch
        ).store_options
    )


REQUESTS = [
    AggregateRequest(group_by=("segment", "kind"), bucket="month"),
    AggregateRequest(group_by=("side", "direction", "kind"), bucket="day"),
    AggregateRequest(group_by=("border",), bucket="month"),
    AggregateRequest(group_by=("kind",), bucket="day", bbox=BOX),
]


def _reads(store: PostgisStore, index: SegmentIndex) -> dict[str, Any]:
    """What every rollup reader answers, in a comparable form."""
    out: dict[str, Any] = {}
    for request in REQUESTS:
        result = aggregate(store, index, request)
        out[repr(request)] = sorted((repr(r.group), r.bucket, r.figure) for r in result.rows)
    for z in (3, 6, 9, 12):
        for lon, lat in PLACES:
            gx, gy = grid_cell(lon, lat)
            tile = tile_address(z, gx >> (GRID_LEVEL - z), gy >> (GRID_LEVEL - z))
            for kind in (None, "crossing"):
                flt = TileFilter(kind=kind)
                clusters = store.tile_reports(TileQuery(tile, flt, points=False, max_points=0))
                # Points or clusters: decided by the tile's count, from the rollup at z <= 15.
                probe = store.tile_reports(TileQuery(tile, flt, points=True, max_points=40))
                out[f"tile {z} {lon} {lat} {kind}"] = (
                    sorted(clusters.clusters or (), key=repr),
                    probe.points is not None and len(probe.points) > 0,
                    len(probe.clusters or ()),
                )
    ids = [s.segment_id for s in index.segments]
    out["segments"] = sorted(store.segment_counts(TileFilter(), ids).items())
    out["segments crossing"] = sorted(
        store.segment_counts(TileFilter(kind="crossing"), ids).items()
    )
    return out


def _rollup_tables(url: str) -> dict[str, list[tuple[Any, ...]]]:
    with psycopg.connect(libpq_url(url)) as conn:
        return {t: sorted(conn.execute(f"SELECT * FROM {t}").fetchall()) for t in ROLLUP_TABLES}


def _pending(url: str) -> int:
    return _queued(url, PENDING)


def _assert_rollups_equal_a_recount(url: str, store: PostgisStore) -> None:
    store.fold_rollups()
    assert _pending(url) == 0
    folded = _rollup_tables(url)
    store.rebuild_rollups()  # from the reports
    assert _rollup_tables(url) == folded


def test_reads_count_pending_reports_exactly_once(database: tuple[str, SegmentIndex]) -> None:
    url, index = database
    store = _store(url)
    try:
        drafts = _drafts(600, seed=1)
        submit_batch(store, index, drafts[:400], settings=_settings(url), now=NOW)
        store.fold_rollups()
        # Some folded, some pending, and replays of both (stored once, counted once).
        submit_batch(store, index, drafts[300:], settings=_settings(url), now=NOW)
        assert _pending(url) == 200
        pending = _reads(store, index)
        assert any(v for k, v in pending.items() if k.startswith("tile"))
        store.fold_rollups()
        assert _pending(url) == 0
        folded = _reads(store, index)
        store.rebuild_rollups()
        assert pending == folded == _reads(store, index)
        # A deleted report leaves every read, whether it was pending or folded.
        submit_batch(store, index, _drafts(50, seed=2), settings=_settings(url), now=NOW)
        for draft in drafts[::9] + _drafts(50, seed=2)[::5]:
            assert store.delete_report(draft.id)
        pending = _reads(store, index)
        _assert_rollups_equal_a_recount(url, store)
        assert pending == _reads(store, index)
    finally:
        store.close()


# A fold run by hand in another process, which stops inside its transaction.
_FOLD_AND_HANG = """
import sys, psycopg
from service.storage.postgis.rollups import FOLD
conn = psycopg.connect(sys.argv[1], application_name="fold-killed-midway")
conn.execute("SET client_connection_check_interval = 50")  # notice a dead client in pg_sleep
n = sum(row[3] for row in conn.execute(FOLD, {"n": 100_000}).fetchall())
print(n, flush=True)
conn.execute("SELECT pg_sleep(600)")
"""


def _wait_gone(url: str, application: str) -> None:
    deadline = time.monotonic() + 30
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        while conn.execute(
            "SELECT 1 FROM pg_stat_activity WHERE application_name = %s", [application]
        ).fetchone():
            assert time.monotonic() < deadline, f"{application} still connected"
            time.sleep(0.05)


def test_a_fold_killed_midway_loses_nothing_and_counts_nothing_twice(
    database: tuple[str, SegmentIndex],
) -> None:
    url, index = database
    store = _store(url)
    try:
        submit_batch(store, index, _drafts(300, seed=3), settings=_settings(url), now=NOW)
        store.fold_rollups()
        submit_batch(store, index, _drafts(300, seed=4), settings=_settings(url), now=NOW)
        before, tables = _reads(store, index), _rollup_tables(url)
        folder = subprocess.Popen(
            [sys.executable, "-c", _FOLD_AND_HANG, libpq_url(url)], stdout=subprocess.PIPE
        )
        try:
            assert folder.stdout is not None
            assert folder.stdout.readline().strip() == b"300"  # folded, not committed
            assert _reads(store, index) == before  # readers see it still pending
        finally:
            folder.send_signal(signal.SIGKILL)
            folder.wait()
            folder.stdout.close()  # type: ignore[union-attr]
        _wait_gone(url, "fold-killed-midway")
        assert _pending(url) == 300
        assert _rollup_tables(url) == tables
        assert _reads(store, index) == before
        _assert_rollups_equal_a_recount(url, store)
        assert _reads(store, index) == before
    finally:
        store.close()


# Ingest as a server does (a store with its folder on, but a long interval: the fold has not run
# yet), then wait to be killed.
_INGEST_AND_HANG = """
import sys, time
from datetime import datetime
from tests.storage.test_rollup_fold import NOW, _drafts, _settings, _store
from service.usecases.segments import ensure_segments
from service.usecases.submit_reports import submit_batch
store = _store(sys.argv[1], interval_ms=600_000)
index = ensure_segments(store, None)
outcomes = submit_batch(store, index, _drafts(400, seed=5), settings=_settings(sys.argv[1]), now=NOW)
print(sum(o.problem is None for o in outcomes), flush=True)
time.sleep(600)
"""


def test_a_writer_killed_before_its_reports_are_folded_loses_none(
    database: tuple[str, SegmentIndex],
) -> None:
    url, index = database
    writer = subprocess.Popen([sys.executable, "-c", _INGEST_AND_HANG, url], stdout=subprocess.PIPE)
    try:
        assert writer.stdout is not None
        assert writer.stdout.readline().strip() == b"400"  # acknowledged
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        writer.stdout.close()  # type: ignore[union-attr]
    assert _pending(url) == 400
    # The service back: its first ingest starts the folder, which counts the rest in.
    store = _store(url, interval_ms=20)
    try:
        before = _reads(store, index)
        submit_batch(store, index, _drafts(10, seed=6), settings=_settings(url), now=NOW)
        deadline = time.monotonic() + 30
        while _pending(url):
            assert time.monotonic() < deadline, "the folder did not fold what was pending"
            time.sleep(0.05)
        store.fold_rollups()
        store.rebuild_rollups()
        after = _reads(store, index)
        assert before != after  # the 10 new ones
        with psycopg.connect(libpq_url(url)) as conn:
            (n,) = conn.execute("SELECT count(*) FROM reports").fetchone()  # type: ignore[misc]
        assert n == 410
        _assert_rollups_equal_a_recount(url, store)
    finally:
        store.close()


def test_concurrent_writers_and_folders_lose_no_count(database: tuple[str, SegmentIndex]) -> None:
    """Eight threads on two stores (two processes' pools and folders, folding every 5 ms in
    small batches) send overlapping batches and single reports, with replays of each other's
    reports, conflicts, and deletes."""
    url, index = database
    stores = [_store(url, interval_ms=5, batch=37), _store(url, interval_ms=5, batch=53)]
    pool = _drafts(1_500, seed=7)
    errors: list[BaseException] = []
    deleted: set[uuid.UUID] = set()

    def writer(number: int) -> None:
        rng = random.Random(number)
        store = stores[number % 2]
        try:
            for _ in range(25):
                size = rng.choice((1, 1, 1, 20, 80))
                start = rng.randrange(len(pool) - size)
                batch = list(pool[start : start + size])
                if rng.random() < 0.2:  # the same id with other content: a conflict
                    d = batch[0]
                    batch.append(
                        ReportDraft(
                            d.id,
                            d.observed_at,
                            d.lon,
                            d.lat,
                            d.people_count + 1,
                            d.kind,
                            d.direction,
                            None,
                        )
                    )
                submit_batch(store, index, batch, settings=_settings(url), now=NOW)
                if number == 0 and rng.random() < 0.5:
                    victim = rng.choice(batch)
                    if store.delete_report(victim.id):
                        deleted.add(victim.id)
        except BaseException as error:  # reported by the test below
            errors.append(error)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        assert not any(t.is_alive() for t in threads), "a writer hung (deadlock?)"
        assert errors == []
        assert deleted
        live = _reads(stores[0], index)
        _assert_rollups_equal_a_recount(url, stores[0])
        assert _reads(stores[1], index) == live
    finally:
        for s in stores:
            s.close()


def _sent(http: httpx.Client, path: str, body: Any) -> httpx.Response:
    """As the field app sends: a 503 (the pool busy on a loaded machine) is sent again after its
    Retry-After, the same request."""
    for _ in range(20):
        response = http.post(path, json=body)
        if response.status_code != 503:
            break
        time.sleep(min(float(response.headers.get("retry-after", 1)), 2.0))
    return response


def test_two_workers_and_sixteen_clients_lose_no_count(
    database: tuple[str, SegmentIndex],
) -> None:
    url, index = database
    bodies = [
        report_body(id=str(d.id), lon=d.lon, lat=d.lat, people_count=d.people_count, kind=d.kind)
        for d in _drafts(480, seed=8)
    ]
    token = live_key(url, "reporter")
    statuses: list[int] = []
    lock = threading.Lock()
    with running_server(url, workers=2) as base:

        def client(number: int) -> None:
            with httpx.Client(base_url=base, headers=auth(token), timeout=60) as http:
                # Each client sends its share, and a replay of its neighbour's first reports.
                mine = bodies[number::16] + bodies[(number + 1) % 16 :: 16][:5]
                for body in mine:
                    response = _sent(http, "/v1/reports", body)
                    with lock:
                        statuses.append(response.status_code)

        threads = [threading.Thread(target=client, args=(n,)) for n in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        assert not any(t.is_alive() for t in threads)
    assert set(statuses) == {200, 201}  # created, and replays answered with the original
    assert statuses.count(201) == len(bodies)
    store = _store(url)
    try:
        live = _reads(store, index)
        _assert_rollups_equal_a_recount(url, store)
        assert _reads(store, index) == live
        with psycopg.connect(libpq_url(url)) as conn:
            (n,) = conn.execute("SELECT count(*) FROM reports").fetchone()  # type: ignore[misc]
        assert n == len(bodies)
    finally:
        store.close()


# A condition on each rollup's key, as its readers write them (tiles, numberMatched, aggregates).
_KEY_CONDITIONS = {
    "tile_cells": "level = 12 AND cx BETWEEN 1200 AND 1300 AND cy BETWEEN 1400 AND 1500",
    "segment_totals": "kind = 'crossing'",
    "count_days": "period = '2026-05-01'",
    "count_months": "period = '2026-05-01'",
    "count_segment_months": "period = '2026-05-01'",
    "cell_days": "cx BETWEEN 1200 AND 1300 AND period = '2026-05-01'",
}


def _filters_above_the_union(plan: dict[str, Any]) -> list[str]:
    """The filters of a plan's scans of the live subquery itself (alias ``live``): conditions
    applied after the union, to every row of the rollup."""
    found = []
    if plan.get("Node Type") == "Subquery Scan" and plan.get("Alias") == "live":
        found += [plan["Filter"]] if "Filter" in plan else []
    for child in plan.get("Plans", []):
        found += _filters_above_the_union(child)
    return found


def test_a_readers_conditions_reach_each_rollup_table(database: tuple[str, SegmentIndex]) -> None:
    """live(table) is a UNION ALL of the rollup and its pending reports: PostgreSQL pushes a
    reader's conditions into the branches only when both have the rollup's column types, and else
    reads the whole rollup for each read (every level of tile_cells: a numberMatched took 0.6 s at
    1M reports and grew with them, docs/performance.md)."""
    url, _ = database
    with psycopg.connect(libpq_url(url)) as conn:
        for table, condition in _KEY_CONDITIONS.items():
            ((plan,),) = conn.execute(
                f"EXPLAIN (FORMAT JSON) SELECT * FROM {live(table)} AS live WHERE {condition}"
            ).fetchall()
            assert _filters_above_the_union(plan[0]["Plan"]) == [], table


# --- the folder in a process of its own: `crossings fold`, and `crossings serve`'s child -------

# No drain (these servers stop at once), and info lines (the tests read what the child logs).
SERVER_ENV = {"CROSSINGS_DRAIN_S": "0", "CROSSINGS_LOG_LEVEL": "info"}


def _bodies(n: int, seed: int) -> list[dict[str, Any]]:
    return [
        report_body(id=str(d.id), lon=d.lon, lat=d.lat, people_count=d.people_count, kind=d.kind)
        for d in _drafts(n, seed=seed)
    ]


def _post(base: str, token: str, bodies: list[dict[str, Any]]) -> None:
    """Half one at a time, half as one batch: every report acknowledged."""
    half = len(bodies) // 2
    with httpx.Client(base_url=base, headers=auth(token), timeout=60) as http:
        for body in bodies[:half]:
            assert _sent(http, "/v1/reports", body).status_code == 201
        response = _sent(http, "/v1/reports/batch", bodies[half:])
        assert response.status_code == 200, response.text
        assert all(r["status"] == "created" for r in response.json()["results"]), response.text


def _queued(url: str, table: str) -> int:
    with psycopg.connect(libpq_url(url)) as conn:
        (n,) = conn.execute(f"SELECT count(*) FROM {table}").fetchone()  # type: ignore[misc]
        return int(n)


def _wait_folded(url: str, what: str) -> None:
    deadline = time.monotonic() + 120
    while _pending(url):
        assert time.monotonic() < deadline, f"{what} did not fold what was pending"
        time.sleep(0.1)


def _fold_processes(url: str) -> list[int]:
    """The `crossings fold` processes running against ``url`` (this user's, from /proc)."""
    mine = f"CROSSINGS_DATABASE_URL={url}".encode()
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            environ = (proc / "environ").read_bytes().split(b"\0")
            state = (proc / "stat").read_bytes().rsplit(b")", 1)[1].split()[0]
        except OSError:  # gone meanwhile, or another user's
            continue
        if b"fold" in argv and mine in environ and state != b"Z":
            found.append(int(proc.name))
    return found


def _fold_command(url: str, **env: str) -> subprocess.Popen[bytes]:
    environ = {**os.environ, "CROSSINGS_DATABASE_URL": url, "CROSSINGS_LOG_FORMAT": "text", **env}
    return subprocess.Popen(
        [sys.executable, "-m", "service.cli", "fold"],
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def _stop(process: subprocess.Popen[bytes], *, signal_it: bool = True) -> tuple[int, str]:
    """SIGTERM (unless ``signal_it`` is False: sent already), then what it exited with and
    printed."""
    if signal_it and process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        output, _ = process.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
    return process.returncode, output.decode(errors="replace")


def test_crossings_fold_folds_what_a_server_acknowledged(
    database: tuple[str, SegmentIndex], tmp_path: Path
) -> None:
    """A server with CROSSINGS_ROLLUP_FOLDER=off folds nothing; `crossings fold` beside it folds
    (and links) all it acknowledged, and stops at SIGTERM."""
    url, index = database
    token = live_key(url, "reporter")
    with running_server(
        url, log_to=tmp_path / "server.log", CROSSINGS_ROLLUP_FOLDER="off", extra_env=SERVER_ENV
    ) as base:
        _post(base, token, _bodies(200, seed=11))
        assert _fold_processes(url) == []  # off: no child either
        assert _pending(url) == 200
        store = _store(url)
        try:
            before = _reads(store, index)
            folder = _fold_command(url)
            try:
                _wait_folded(url, "crossings fold")
            finally:
                code, output = _stop(folder)
            assert code == 0, output
            assert "rollup folder started" in output and "SIGTERM: stopping" in output, output
            assert _queued(url, "link_pending") == 0  # linked in the same loop
            assert _reads(store, index) == before
            _assert_rollups_equal_a_recount(url, store)
        finally:
            store.close()


def test_a_server_in_process_mode_folds_in_its_child_and_restarts_it_after_a_kill(
    database: tuple[str, SegmentIndex], tmp_path: Path
) -> None:
    """CROSSINGS_ROLLUP_FOLDER=process: the fold runs in `crossings serve`'s child, not in the
    server (the child paused, acknowledged reports stay pending); the child killed (SIGKILL)
    between the reports' commit and their fold is restarted and folds them, each once; the
    child is gone once the server has stopped."""
    url, index = database
    token = live_key(url, "reporter")
    log = tmp_path / "server.log"
    with running_server(
        url, workers=2, log_to=log, CROSSINGS_ROLLUP_FOLDER="process", extra_env=SERVER_ENV
    ) as base:
        _post(base, token, _bodies(60, seed=12))
        _wait_folded(url, "the server's fold process")
        (child,) = _fold_processes(url)  # one for the server, not one per worker
        os.kill(child, signal.SIGSTOP)
        try:
            _post(base, token, _bodies(200, seed=13))
            time.sleep(1.0)  # ten fold intervals: a folder thread in a worker would have folded
            assert _pending(url) == 200
        finally:
            os.kill(child, signal.SIGKILL)  # ends it stopped or not; the server reaps it at once
        _wait_folded(url, "the restarted fold process")
        (restarted,) = _fold_processes(url)
        assert restarted != child
    # Stopped by the server after its own shutdown (or, had the harness killed the server after
    # its 15 s, on finding its parent gone): no folder outlives the server.
    deadline = time.monotonic() + 60
    while _fold_processes(url):
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.1)
    output = log.read_text()
    assert "rollup folder process exited with status -9: restarting" in output, output[-3000:]
    store = _store(url)
    try:
        live = _reads(store, index)
        assert _queued(url, "reports") == 260
        _assert_rollups_equal_a_recount(url, store)
        assert _reads(store, index) == live
    finally:
        store.close()


def test_sigterm_during_a_fold_lets_it_finish(database: tuple[str, SegmentIndex]) -> None:
    """`crossings fold` told to stop while a fold waits on a lock the test holds: it exits only
    after that fold has committed (nothing left pending), and the rollups equal a recount."""
    url, index = database
    store = _store(url)
    try:
        submit_batch(store, index, _drafts(300, seed=14), settings=_settings(url), now=NOW)
        assert _pending(url) == 300
        with (
            psycopg.connect(libpq_url(url)) as blocker,
            psycopg.connect(libpq_url(url), autocommit=True) as watcher,
        ):
            blocker.execute("LOCK TABLE segment_totals IN EXCLUSIVE MODE")  # the fold waits
            folder, signalled = _fold_command(url), False
            try:
                deadline = time.monotonic() + 60
                while not watcher.execute(
                    "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock'"
                ).fetchone():
                    assert time.monotonic() < deadline, "the fold did not start"
                    assert folder.poll() is None
                    time.sleep(0.05)
                folder.send_signal(signal.SIGTERM)
                signalled = True
                time.sleep(1.0)
                assert folder.poll() is None  # still in its fold
            finally:
                blocker.rollback()  # the lock released: the fold goes on
                code, output = _stop(folder, signal_it=not signalled)
        assert code == 0, output
        assert "SIGTERM: stopping" in output, output
        assert _pending(url) == 0  # the fold under way committed
        _assert_rollups_equal_a_recount(url, store)
    finally:
        store.close()


def test_crossings_fold_waits_for_an_absent_database_until_stopped() -> None:
    nowhere = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/crossings"
    folder = _fold_command(nowhere, CROSSINGS_DB_RETRY_MAX_S="1")
    # A child that went silent would hold readline for ever: killed, its output ends.
    silent = threading.Timer(120, folder.kill)
    silent.start()
    try:
        assert folder.stdout is not None
        for _ in range(40):  # it keeps trying, and says so
            line = folder.stdout.readline().decode()
            if "waiting for the database: the database is not reachable" in line:
                break
        else:
            raise AssertionError("no 'waiting for the database' line")
        assert folder.poll() is None
    finally:
        silent.cancel()
        code, output = _stop(folder)
    assert code == 0, output
    assert "SIGTERM while waiting for the database: stopped" in output, output


def test_crossings_fold_on_sqlite_exits_2_saying_why(tmp_path: Path) -> None:
    result = run_cli(f"sqlite:///{tmp_path / 'c.db'}", "fold", text=True)
    assert result.returncode == 2
    assert "SQLite store has no rollup folder" in result.stderr
