"""Ingest throughput over real HTTP, against PostGIS and the embedded SQLite store, next to the raw
limit of each database (PostgreSQL COPY; SQLite executemany) for the very same rows.

Run from the repository root::

    .venv/bin/python -m bench.ingest                      # full size, both stores (~2 minutes)
    .venv/bin/python -m bench.ingest --quick --store postgis
    .venv/bin/python -m bench.ingest --profile            # also py-spy the server (pip install -e '.[bench]')
    .venv/bin/python -m bench.ingest --source /tmp/other  # serve another copy of service/
    .venv/bin/python -m bench.ingest --store postgis --onto crossings_bench_1a2b3c4d  # onto 1M

For each store: a fresh database (PostGIS: ``crossings_bench_<random>``, migrated with ``crossings db
upgrade``; SQLite: a file in a temporary directory, created by the server), a real ``crossings
serve`` process with one uvicorn worker, and httpx over a socket. Phases, after a warm-up:

1. ``batch``: ``--batch-reports`` through ``POST /v1/reports/batch`` in batches of ``--batch-size``,
   one request at a time (``--batch-clients N`` sends N at once). After each of its rounds, a round
   of the raw limit (``bench.raw_limits``) on the rows that round stored, read back exactly as the
   service stored them: binary ``COPY`` into an empty copy of ``reports`` (PostGIS), or
   ``executemany`` + the R*Tree insert into an empty file with the same schema (SQLite).
   Interleaving lets drift of the machine hit both alike; the ratio is given overall and per pair
   of rounds.
2. ``single``: ``--single-reports`` through ``POST /v1/reports``, one client, one keep-alive
   connection, one request at a time.
3. ``single_xN``: as many again from ``--concurrency`` clients at once (0 skips it).

Each phase runs in ``--rounds`` rounds; rates are reported overall and as the median and range of
the rounds. The load generator (this process) is pinned to one core and the server to the other;
PostgreSQL is not pinned. CPU time per report is read from /proc for the server process, for
PostgreSQL (see ``bench.harness.PostgresCpu``) and for this process. With ``--profile``, py-spy
samples the server during phases 1 and 2 and the run ends with where its CPU went.

Prints one JSON object, writes it to bench/results/<--output>.json, then prints the tables. The
databases, the server and the temporary directory are removed at the end, also on failure and
on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import psycopg

from bench.figures import RESULTS_DIR, machine_facts, print_table
from bench.harness import (
    ADMIN_URL,
    PostgresCpu,
    Server,
    add_source_argument,
    core_plan,
    finish,
    fresh_postgis_database,
    handle_stop_signals,
    key_headers,
    libpq_url,
    pg_settings,
    pin_process,
    postgis_url,
    run_cli,
    running_server,
    scratch_dir,
    service_facts,
)
from bench.load import Phase, Probes, RawSender, Sender, Sent, ratios, split
from bench.pyspy import Profiler, Rule, breakdown
from bench.raw_limits import (
    PostgisCopy,
    PostgisInsert,
    RawLimit,
    SqliteExecutemany,
    copy_target,
)
from bench.synthetic import Border, report_bodies

SEED = 20_240_611
WARMUP_BATCHES = 5
WARMUP_SINGLES = 200
PG_SETTINGS = (
    "fsync",
    "synchronous_commit",
    "shared_buffers",
    "wal_level",
    "max_wal_size",
    "autovacuum",
    "server_version",
    "data_directory",
)


def batch_outcomes(sent: Sequence[Sent]) -> dict[str, int]:
    """The per-item outcomes the batch responses report (created, duplicate, conflict, invalid)."""
    totals: Counter[str] = Counter()
    for s in sent:
        if s.status == 200:
            totals.update(orjson.loads(s.body)["summary"])
    return dict(totals)


# --- the HTTP phases -------------------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    """Request bodies, encoded before any clock starts so the client does little while measured."""

    warmup_batches: list[bytes]
    warmup_ids: list[str]
    warmup_singles: list[bytes]
    warmup_concurrent: list[bytes]
    warmup_concurrent_ids: list[str]
    batches: list[bytes]
    batch_ids: list[list[str]]
    singles: list[bytes]
    concurrent: list[bytes]
    concurrent_ids: list[str]

    @classmethod
    def build(cls, args: argparse.Namespace, *, now: datetime) -> Workload:
        size = args.batch_size
        n_conc = args.single_reports if args.concurrency else 0
        warm_batch, warm_single = WARMUP_BATCHES * size, WARMUP_SINGLES
        warm_conc = WARMUP_SINGLES if args.concurrency else 0
        counts = [warm_batch, warm_single, warm_conc, args.batch_reports, args.single_reports]
        bodies = report_bodies(sum(counts) + n_conc, seed=args.seed, now=now, border=Border.load())
        parts = []
        for n in counts:
            parts.append(bodies[:n])
            bodies = bodies[n:]
        w_batch, w_single, w_conc, batch, single = parts
        chunks = [batch[i : i + size] for i in range(0, len(batch), size)]
        return cls(
            warmup_batches=[
                orjson.dumps(w_batch[i : i + size]) for i in range(0, warm_batch, size)
            ],
            warmup_ids=[b["id"] for b in w_batch],
            warmup_singles=[orjson.dumps(b) for b in w_single],
            warmup_concurrent=[orjson.dumps(b) for b in w_conc],
            warmup_concurrent_ids=[b["id"] for b in w_conc],
            batches=[orjson.dumps(c) for c in chunks],
            batch_ids=[[b["id"] for b in c] for c in chunks],
            singles=[orjson.dumps(b) for b in single],
            concurrent=[orjson.dumps(b) for b in bodies],
            concurrent_ids=[b["id"] for b in bodies],
        )


class FoldWatch:
    """PostGIS: how long after a round the rollups hold every report it stored and the linker has
    linked them (rollup_pending, migration 0011, and link_pending, migration 0015, empty again):
    the queue a round leaves behind would otherwise be worked off during the next round. Code
    without those tables is always caught up."""

    QUEUES = ("rollup_pending", "link_pending")

    def __init__(self, conn: psycopg.Connection[Any] | None) -> None:
        self.conn = conn
        self.lags: dict[str, list[float]] = {}
        self.queues: list[str] = []
        if conn is not None:
            self.queues = [
                q for q in self.QUEUES
                if conn.execute("SELECT to_regclass(%s) IS NOT NULL", (q,)).fetchone() == (True,)
            ]  # fmt: skip
            conn.commit()
        self.present = bool(self.queues)

    def wait(self, phase: str, timeout_s: float = 600.0) -> None:
        if self.conn is None or not self.present:
            return
        busy = " OR ".join(f"EXISTS (SELECT 1 FROM {q})" for q in self.queues)
        start = time.perf_counter()
        while True:
            row = self.conn.execute(f"SELECT {busy}").fetchone()
            self.conn.commit()
            if not row or not row[0] or time.perf_counter() - start > timeout_s:
                break
            time.sleep(0.01)
        self.lags.setdefault(phase, []).append(time.perf_counter() - start)

    def summary(self, phase: Phase) -> dict[str, Any]:
        """The phase's rate counting the time until every report it stored was folded in."""
        lags = self.lags.get(phase.name)
        if not lags:
            return {}
        items = sum(phase.items_per_round)
        seconds = sum(phase.seconds_per_round) + sum(lags)
        return {
            "fold_lag_s": {"total": round(sum(lags), 3), "max": round(max(lags), 3)},
            "reports_per_s_folded": round(items / seconds, 1),
        }


def run_http_phases(
    database_url: str,
    base_url: str,
    work: Workload,
    probes: Probes,
    *,
    raw: RawLimit,
    insert: PostgisInsert | None,
    folds: FoldWatch,
    args: argparse.Namespace,
    profile: Profiler,
) -> dict[str, Any]:
    """Warm up, then run the batch phase, each of its rounds followed by a round of the raw limit
    on the rows it stored (so that drift of the machine hits both alike), then the single and
    concurrent phases (the latter's rounds each followed by a round of bare single-row INSERTs
    over as many connections, PostGIS). After every round of the service, the rollups are let
    catch up (outside the clock, and before the raw round, which would otherwise compete with
    the folding); the time that takes is reported as well. Returns the phases' summaries."""
    results: dict[str, Any] = {}
    # Reports are posted as a field app does: with a reporter key.
    headers = key_headers(database_url, "reporter")
    sender = Sender(base_url, headers=headers)
    # Single reports: a client lighter than the server (see RawSender), unless --client httpx.
    singles = sender if args.client == "httpx" else RawSender(base_url, headers=headers)
    try:
        warm = sender.send("/v1/reports/batch", work.warmup_batches, clients=args.batch_clients)
        warm += sender.send("/v1/reports", work.warmup_singles)
        if work.concurrent:
            warm += sender.send("/v1/reports", work.warmup_concurrent, clients=args.concurrency)
        if bad := [s for s in warm if s.status >= 300]:
            raise RuntimeError(f"warm-up failed: {bad[0].status} {bad[0].body[:500]!r}")
        folds.wait("warm-up")
        raw.warm_up(work.warmup_ids)
        if insert is not None and work.concurrent:
            insert.warm_up(work.warmup_concurrent_ids)

        if work.batches:
            batch = Phase("batch")
            # py-spy --gil sees nothing of the idle server while the raw rounds run.
            with profile.recording("batch"):
                for requests in split(range(len(work.batches)), args.rounds):
                    bodies = [work.batches[i] for i in requests]
                    ids = [report_id for i in requests for report_id in work.batch_ids[i]]
                    with batch.round(probes, len(ids)):
                        batch.sent += sender.send(
                            "/v1/reports/batch", bodies, clients=args.batch_clients
                        )
                    folds.wait(batch.name)
                    raw.round(ids)
            results["batch"] = (
                batch.summary()
                | {"clients": args.batch_clients, "outcomes": batch_outcomes(batch.sent)}
                | folds.summary(batch)
            )
            results[raw.name] = raw.summary()
            results[f"ratio_batch_to_{raw.name}"] = ratios(batch, raw.phase)

        if work.singles:
            single = Phase("single")
            with profile.recording("single"):
                for bodies in split(work.singles, args.rounds):
                    with single.round(probes, len(bodies)):
                        single.sent += singles.send("/v1/reports", bodies)
                    folds.wait(single.name)
            results["single"] = single.summary() | {"clients": 1} | folds.summary(single)

        if work.concurrent:
            conc = Phase(f"single_x{args.concurrency}")
            rounds = split(range(len(work.concurrent)), args.rounds)
            with profile.recording(conc.name):
                for positions in rounds:
                    bodies = [work.concurrent[i] for i in positions]
                    with conc.round(probes, len(bodies)):
                        conc.sent += singles.send("/v1/reports", bodies, clients=args.concurrency)
                    folds.wait(conc.name)
                    if insert is not None:
                        insert.round([work.concurrent_ids[i] for i in positions])
            results[conc.name] = (
                conc.summary() | {"clients": args.concurrency} | folds.summary(conc)
            )
            if insert is not None:
                results[insert.phase.name] = insert.summary()
                results[f"ratio_{conc.name}_to_{insert.phase.name}"] = ratios(conc, insert.phase)
    finally:
        sender.close()
        singles.close()
    return results


# --- profiling -------------------------------------------------------------------------------

# Where the server's CPU goes, by the first rule a sampled stack matches (see bench/pyspy.py).
PROFILE_RULES: list[Rule] = [
    # The rollup folder's thread (store.py _fold_some): it holds the GIL the requests need.
    ("folder: surge detection", ["_fold_some", "detect (service/storage/postgis/surges"]),
    ("folder: linking (link_some)", ["_fold_some", "link_some"]),
    ("folder: the fold and the rest of its thread", ["_fold_some"]),
    ("folder: the rest of its thread (vacuum, waits)", ["Folder._run"]),
    ("store: pool pre-ping (SELECT 1 on every checkout)", ["do_ping"]),
    ("store: psycopg dumping the array parameters", ["ListDumper"]),
    ("store: content_hash (sha256)", ["content_hash", "add_reports (service/storage"]),
    ("store: building column arrays / rows", ["_arrays (service/storage"]),
    ("store: building column arrays / rows", ["report_row (service/storage"]),
    ("store: psycopg (execute, commit, results)", ["(psycopg/"]),
    ("store: SQLAlchemy (execute, transaction, pool)", ["(sqlalchemy/"]),
    ("store: other (bookkeeping, sqlite3 calls)", ["(service/storage/"]),
    ("snapping: snap_arrays (numpy, shapely, pyproj)", ["snap_arrays (service/domain"]),
    ("snapping: SnapResult objects", ["snap (service/domain/snapping"]),
    ("rules: SegmentIndex.countries, rebuilt per report", ["SegmentIndex.countries"]),
    ("rules: check_report_rules", ["check_report_rules"]),
    ("usecase: other (Report objects, outcomes)", ["submit_batch"]),
    ("parse: pydantic model_validate", ["parse_report", "model_validate"]),
    ("parse: position checks, ReportDraft", ["parse_report"]),
    ("JSON: orjson.loads of the body", ["parse_json"]),
    ("JSON: reading the body", ["read_json"]),
    ("response: per-item dicts (batch_item, report_feature)", ["batch_item"]),
    ("response: report_feature", ["report_feature"]),
    ("response: Location via url_for", ["url_for"]),
    ("response: orjson.dumps", ["render (service/api/responses"]),
    ("FastAPI: dependencies (sync ones hop to the threadpool)", ["solve_dependencies"]),
    ("threadpool hand-offs (anyio)", ["run_in_threadpool"]),
    ("threadpool hand-offs (anyio)", ["WorkerThread._report_result"]),
    ("threadpool hand-offs (anyio)", ["WorkerThread.run"]),
    ("uvicorn: HTTP parsing and socket I/O in C (uvloop, httptools)", ["^Runner.run (asyncio"]),
    ("uvicorn: HTTP protocol, Python side (headers, request cycle)", ["HttpToolsProtocol"]),
    ("FastAPI: telemetry check per request (os.environ lookups)", ["NativeTelemetry"]),
    ("framework: uvicorn, Starlette, FastAPI (middleware, routing)", ["run_asgi"]),
]


def profile_breakdowns(profile: Profiler, results: dict[str, Any], *, rate: int) -> dict[str, Any]:
    out = {}
    for phase, path in profile.files.items():
        summary = results[phase]
        cpu = summary["cpu_us_per_report"]["server"]
        out[phase] = breakdown(
            path, PROFILE_RULES, rate=rate, items=summary["reports"], cpu_us_per_item=cpu
        )
    return out


# --- one store -------------------------------------------------------------------------------


def run_postgis(
    args: argparse.Namespace, work: Workload, *, server_cores: set[int] | None, scratch: Path
) -> dict[str, Any]:
    profile = Profiler(args.profile, RESULTS_DIR, f"{args.output}-postgis", rate=args.profile_rate)
    with fresh_postgis_database(args.admin_url, template=args.onto) as url:
        run_cli(["db", "upgrade"], database_url=url, source=args.source)
        with psycopg.connect(libpq_url(url)) as conn:
            facts = pg_settings(conn, PG_SETTINGS)
            postgres = PostgresCpu(facts.pop("data_directory"), conn.info.dbname)
            with running_server(
                url, log_path=scratch / "server-postgis.log", cores=server_cores,
                log_level=args.server_log_level, source=args.source, workers=args.workers,
                env=server_settings(args),
            ) as server, psycopg.connect(libpq_url(url), autocommit=True) as watch:  # fmt: skip
                profile.pid = server.pid
                raw = PostgisCopy(conn, Probes(None, postgres), with_rows=bool(args.onto))
                insert = (
                    PostgisInsert(conn, Probes(None, postgres), connections=args.concurrency)
                    if args.concurrency
                    else None
                )
                results = _run_against(
                    url, server, work, Probes(server.pid, postgres), raw, args, profile,
                    insert=insert, folds=FoldWatch(watch),
                )  # fmt: skip
        results["database"] = {"url": url.rsplit("@", 1)[-1], "settings": facts}
    if profile.files:
        results["profiles"] = profile_breakdowns(profile, results, rate=args.profile_rate)
    return results


def server_settings(args: argparse.Namespace) -> dict[str, str]:
    """The server's settings beyond the defaults: ``--no-surges`` turns surge detection (which
    runs in the rollup fold) off, to tell its cost from the rest of the write path's; each
    ``--setting CROSSINGS_NAME=value`` sets one more."""
    settings = dict(item.split("=", 1) for item in args.setting)
    if bad := [name for name in settings if not name.startswith("CROSSINGS_")]:
        raise SystemExit(f"--setting takes CROSSINGS_NAME=value, not {bad[0]}")
    return settings | ({"CROSSINGS_SURGES": "false"} if args.no_surges else {})


def run_sqlite(
    args: argparse.Namespace, work: Workload, *, server_cores: set[int] | None, scratch: Path
) -> dict[str, Any]:
    profile = Profiler(args.profile, RESULTS_DIR, f"{args.output}-sqlite", rate=args.profile_rate)
    db_path = scratch / "bench.db"
    with running_server(
        f"sqlite:///{db_path}", log_path=scratch / "server-sqlite.log", cores=server_cores,
        log_level=args.server_log_level, source=args.source, workers=args.workers,
        env=server_settings(args),
    ) as server:  # fmt: skip
        profile.pid = server.pid
        raw = SqliteExecutemany(db_path, scratch / "executemany.db", Probes(None, None))
        try:
            results = _run_against(
                f"sqlite:///{db_path}", server, work, Probes(server.pid, None), raw, args, profile
            )
        finally:
            raw.close()
    results["database"] = {"url": "sqlite:///<tmp>/bench.db", "sqlite": sqlite3.sqlite_version}
    if profile.files:
        results["profiles"] = profile_breakdowns(profile, results, rate=args.profile_rate)
    return results


def _run_against(
    database_url: str,
    server: Server,
    work: Workload,
    probes: Probes,
    raw: RawLimit,
    args: argparse.Namespace,
    profile: Profiler,
    *,
    insert: PostgisInsert | None = None,
    folds: FoldWatch | None = None,
) -> dict[str, Any]:
    try:
        results = run_http_phases(
            database_url, server.base_url, work, probes, raw=raw, args=args, profile=profile,
            insert=insert, folds=folds or FoldWatch(None),
        )  # fmt: skip
    except Exception:
        print(server.log_tail(), file=sys.stderr)
        raise
    results["server_log"] = _last_lines(server.log_tail(200))
    return results


def _last_lines(tail: str) -> list[str]:
    """The end of the server's log, without INFO lines (the CLI logs alembic's at INFO whatever
    the level): at the default level, only warnings and errors."""
    return [line for line in tail.splitlines() if line.strip() and not line.startswith("INFO")][
        -20:
    ]


# --- output ----------------------------------------------------------------------------------


def table(result: dict[str, Any]) -> None:
    headers = [
        "store", "phase", "clients", "reports", "reports/s", "round median", "round range",
        "p50 ms", "p99 ms", "server us/rep", "pg us/rep", "client us/rep", "non-2xx",
        "/s until folded",
    ]  # fmt: skip
    rows = []
    for store, phases in result["stores"].items():
        for name, phase in _phases(phases):
            unit = "reports" if "reports" in phase else "rows"
            rounds = phase[f"round_{unit}_per_s"]
            latency = phase.get("latency_ms", {})
            cpu = phase["cpu_us_per_report"]
            rows.append(
                [
                    store, name, phase.get("clients"), phase[unit], phase[f"{unit}_per_s"],
                    rounds["median"], f"{rounds['min']:,.0f}-{rounds['max']:,.0f}",
                    latency.get("p50"), latency.get("p99"), cpu["server"], cpu["postgres"],
                    cpu["client"], phase.get("non_2xx"), phase.get("reports_per_s_folded"),
                ]
            )  # fmt: skip
    print()
    print_table(headers, rows)
    for store, phases in result["stores"].items():
        for key in [k for k in phases if k.startswith("ratio_")]:
            if key in phases:
                r = phases[key]
                print(
                    f"{store}: {key.replace('_', ' ')} = {r['overall']:.1%} overall; per round "
                    f"median {r['rounds']['median']:.1%} ({r['rounds']['min']:.1%}-"
                    f"{r['rounds']['max']:.1%})"
                )
    if len(result["stores"]) > 1:
        side_by_side(result["stores"])
    for store, phases in result["stores"].items():
        for phase, prof in phases.get("profiles", {}).items():
            profile_table(f"{store} {phase}", prof)
    for note in result["notes"]:
        print(f"note: {note}")


def _phases(phases: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (name, p)
        for name, p in phases.items()
        if isinstance(p, dict) and ("reports" in p or "rows" in p)
    ]


def side_by_side(stores: dict[str, Any]) -> None:
    names = list(stores)
    phases = [n for n, _ in _phases(stores[names[0]]) if all(n in stores[s] for s in names)]
    headers = ["phase"] + [f"{s} {what}" for s in names for what in ("/s", "p50 ms", "p99 ms")]
    rows = []
    for phase in phases:
        row: list[Any] = [phase]
        for s in names:
            p = stores[s][phase]
            row += [p["reports_per_s"], p["latency_ms"]["p50"], p["latency_ms"]["p99"]]
        rows.append(row)
    print()
    print_table(headers, rows)


def profile_table(title: str, prof: dict[str, Any]) -> None:
    print(
        f"\n{title}: server CPU by py-spy --gil samples, {prof['sampled_us_per_item']} us/report "
        f"sampled of {prof['measured_us_per_item']} measured"
    )
    print_table(
        ["category", "share", "us/report"],
        [[c["category"], f"{c['share']:.1%}", c["us_per_item"]] for c in prof["categories"]],
    )


def describe_run(
    args: argparse.Namespace,
    work: Workload,
    *,
    now: datetime,
    notes: list[str],
    client_cores: set[int] | None,
    server_cores: set[int] | None,
) -> dict[str, Any]:
    """The result's header: parameters, data, which service code ran, the machine."""
    params = (
        "store", "batch_reports", "single_reports", "batch_size", "batch_clients", "concurrency",
        "rounds", "seed", "quick", "profile", "onto", "workers", "client",
        "no_surges", "setting",
    )  # fmt: skip
    return {
        "benchmark": "ingest",
        "started_at": now.isoformat(),
        "params": {k: getattr(args, k) for k in params},
        "data": {
            "near": "CA-US border (data/border_segments.geojson), uniform by length, exponential "
            "offset mean 1.5 km; 40% within 2 km of 5 hot spots; observed over the past year",
            "warmup": {
                "batches": WARMUP_BATCHES,
                "singles": WARMUP_SINGLES,
                "concurrent_singles": WARMUP_SINGLES if args.concurrency else 0,
            },
            "batch_body_bytes_mean": _mean_len(work.batches),
            "single_body_bytes_mean": _mean_len(work.singles),
        },
        "service": service_facts(args.source),
        "machine": machine_facts(client_cores=client_cores, server_cores=server_cores),
        "stores": {},
        "notes": notes,
    }


def _mean_len(bodies: Sequence[bytes]) -> float | None:
    return round(float(np.mean([len(b) for b in bodies])), 1) if bodies else None


# --- main ------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.ingest", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--store", choices=("postgis", "sqlite", "both"), default="both")
    parser.add_argument("--batch-reports", type=int, default=100_000)
    parser.add_argument("--single-reports", type=int, default=20_000)
    parser.add_argument(
        "--workers", type=int, default=1,
        help="uvicorn workers (the server's CPU is then summed over them; with 2 they share "
        "the one server core unless --no-pin)",
    )  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument(
        "--concurrency",
        type=int,
        default=16,
        help="clients in the concurrent single phase (0: skip)",
    )
    parser.add_argument(
        "--batch-clients", type=int, default=1,
        help="concurrent clients in the batch phase (default 1: one request at a time)",
    )  # fmt: skip
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--client", choices=("raw", "httpx"), default="raw",
        help="load generator of the single phases: raw HTTP/1.1 on asyncio streams (default; "
        "~50 us a request) or httpx (1-3 ms a request: it was the bottleneck at 16 clients)",
    )  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="10,000 batch / 500 single reports")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--admin-url", default=ADMIN_URL, help="libpq URL that may CREATE DATABASE")
    parser.add_argument("--server-log-level", default="warning")
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to cores")
    parser.add_argument(
        "--profile", action="store_true",
        help="py-spy the server during the batch and single phases (pip install -e '.[bench]'); "
        "writes bench/results/ingest-<store>-<phase>.collapsed; figures are then not comparable",
    )  # fmt: skip
    parser.add_argument("--profile-rate", type=int, default=200)
    add_source_argument(parser, what="the server")
    parser.add_argument(
        "--onto",
        help="PostGIS: ingest into a copy of this database (e.g. one bench.features --keep-db "
        "loaded with 1,000,000 reports) instead of an empty one; the COPY limit then fills a "
        "copy of reports holding the same rows and indexes (bench.raw_limits.copy_target; made "
        "in each run unless the database already holds reports_copy: --prepare-onto)",
    )
    parser.add_argument(
        "--prepare-onto", action="store_true",
        help="with --onto DB: make DB's reports_copy (its rows and indexes, for the COPY limit "
        "of every later run onto DB) once, then exit",
    )  # fmt: skip
    parser.add_argument(
        "--no-surges", action="store_true",
        help="serve with CROSSINGS_SURGES=false (no surge detection in the rollup fold)",
    )  # fmt: skip
    parser.add_argument(
        "--setting", action="append", default=[], metavar="CROSSINGS_NAME=value",
        help="one more setting for the server (repeatable), e.g. "
        "CROSSINGS_ROLLUP_FOLD_INTERVAL_MS=2000",
    )  # fmt: skip
    parser.add_argument("--output", default="ingest", help="name of the JSON in bench/results")
    args = parser.parse_args(argv)
    if args.quick:
        args.batch_reports, args.single_reports = 10_000, 500
    return args


def prepare_onto(args: argparse.Namespace) -> int:
    """``--prepare-onto``: the COPY limit's table of ``--onto``'s database, made once there."""
    if not args.onto:
        raise SystemExit("--prepare-onto needs --onto DB")
    started = time.perf_counter()
    with psycopg.connect(libpq_url(postgis_url(args.admin_url, args.onto))) as conn:
        rows = copy_target(conn, with_rows=True)
    print(f"{args.onto}: reports_copy holds {rows:,} rows ({time.perf_counter() - started:.0f} s)")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.prepare_onto:
        return prepare_onto(args)
    handle_stop_signals()
    client_cores, server_cores, pin_note = (None, None, "not pinned (--no-pin)")
    if not args.no_pin:
        client_cores, server_cores, pin_note = core_plan()
    if client_cores:
        pin_process(os.getpid(), client_cores)
    now = datetime.now(UTC)
    started = time.perf_counter()
    work = Workload.build(args, now=now)
    stores = ("postgis", "sqlite") if args.store == "both" else (args.store,)
    notes = [
        pin_note,
        "CPU us/rep: CPU time per report of the server process (all threads), of PostgreSQL "
        "(the backends on the benchmark's database plus the WAL writer, checkpointer and "
        "background writer, which also serve any other database in use), and of this load "
        "generator; read from /proc in 10 ms ticks",
        f"load average at start {os.getloadavg()[0]:.2f} (other work on the machine skews figures)",
        f"server log level {args.server_log_level}"
        + (" (uvicorn's access log is off)" if args.server_log_level != "info" else ""),
    ]
    if args.profile:
        notes.append("PROFILED RUN: py-spy slows the server; do not compare these rates")
    result = describe_run(
        args, work, now=now, notes=notes, client_cores=client_cores, server_cores=server_cores
    )
    print(f"generated the workload in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    with scratch_dir("crossings_bench_") as scratch:
        for store in stores:
            print(f"running {store} ...", file=sys.stderr)
            run = run_postgis if store == "postgis" else run_sqlite
            result["stores"][store] = run(args, work, server_cores=server_cores, scratch=scratch)
    return finish(args.output, result, table)


if __name__ == "__main__":
    sys.exit(main())
