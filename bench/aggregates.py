"""Aggregates (issue #6): crossings' /v1/aggregates and a segment's time series, read from the
day/month rollups, against the raw GROUP BY over the reports table that gives the same numbers.

Run from the repository root::

    .venv/bin/python -m bench.aggregates                  # 1,000,000 reports
    .venv/bin/python -m bench.aggregates --quick          # 100,000 reports, fewer requests
    .venv/bin/python -m bench.aggregates --keep-db        # keep the loaded database, then reuse it:
    .venv/bin/python -m bench.aggregates --db crossings_bench_1a2b3c4d

Data: as bench/features.py (bench/dataset.py: ``--reports`` realistic, snapped reports written by
COPY into a fresh ``crossings_bench_<random>``, rollups counted after with ``crossings db
rebuild-rollups``, dropped at the end unless ``--keep-db``).

Cases (each one query, asked again and again; see ``build_cases``):

- ``segment_month``: ``group_by=segment&bucket=month``, all time, UTC;
- ``segment_month_st_johns``: the same in America/St_Johns (UTC-3:30/-2:30): local months start
  at 03:30 or 02:30 UTC, so every bucket also counts a few hours of reports at each end;
- ``segment_days``: the busiest segment's daily series over the year to the start of the run
  (``/v1/segments/{id}/timeseries?bucket=day``), partial days at both ends;
- ``region_week_bbox``: ``group_by=region&bucket=week&tz=America/Toronto`` in a 4 x 2 degree box
  around Roxham Road; the service sums cell_days for the grid cells wholly inside the box and
  counts the reports of the cells its edges cross, and of the hours between UTC and local
  midnight at each week's ends.

Targets: ``api`` (``crossings serve``, one uvicorn worker, asked without a key: small counts
suppressed, as the public sees them), ``api_analyst`` (the same with an analyst key made for the
run: nothing suppressed), and ``raw_sql`` (the GROUP BY over ``reports`` that gives the same grouping, through psycopg from this
process, never prepared, rows fetched into Python). Each round starts each server afresh and, case
by case, warms it up and sends the case's share of the requests; targets take turns going first.
Fairness as in bench/features.py (harness.fairness_notes): load generator on one core, the
server and the PostgreSQL backends of the database on the other (re-pinned before every measured
round), parallel query off for the database. CPU per request from /proc.

Checks (outside the clock): every cell of ``api_analyst`` equals the raw GROUP BY's (reports
and people; zero cells the time series fills in must be zero there too); every figure ``api``
publishes equals it and every other is marked suppressed; each target answers the same every
time. Prints one JSON object, writes bench/results/<--output>.json, then the tables.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import orjson
import psycopg
from psycopg import sql

from bench.dataset import (
    benchmark_database,
    parse_benchmark_args,
    set_parallel_query,
)
from bench.figures import ms_of_us, print_checks_and_notes, print_table, spread
from bench.harness import (
    PostgresCpu,
    Run,
    RunContext,
    add_request_arguments,
    analyst_headers,
    benchmark_parser,
    libpq_url,
    pg_settings,
    running_server,
    scratch_dir,
    service_facts,
)
from bench.load import Phase, Probes, Sender, Sent, ratios
from bench.synthetic import HOT_SPOTS
from service.settings import Settings
from service.storage.postgis.rollups import ROLLUP_TABLES

SEED = 20_261_128
HEADERS = {"accept": "application/json", "accept-encoding": "identity"}
TARGETS = ("api", "api_analyst", "raw_sql")
LABEL = {"api": "API, public", "api_analyst": "API, analyst", "raw_sql": "raw GROUP BY"}
SUPPRESS_BELOW = int(Settings.model_fields["public_min_count"].default)
AIM_OVER_RAW = 10.0  # the aim: at least 10x the raw GROUP BY's rate
WARMUP_API, WARMUP_RAW = 3, 1
BOX_AROUND = "roxham_road"
BOX_HALF_DEG = (2.0, 1.0)  # lon, lat: a 4 x 2 degree box
PG_SETTINGS = (
    "server_version", "shared_buffers", "work_mem", "effective_cache_size", "random_page_cost",
    "jit", "max_parallel_workers_per_gather",
)  # fmt: skip

# The raw GROUP BYs: key columns, the period, then reports and people. A report beyond reach has
# no segment (nor region): it forms its own group, as in the service.
_SNAP = "CASE WHEN r.segment_id IS NULL THEN 'beyond_max_distance' ELSE 'snapped' END"
RAW_SEGMENT_MONTHS = f"""
SELECT r.segment_id, {_SNAP}, date_trunc('month', r.observed_at, %(tz)s),
       count(*), sum(r.people_count)
FROM reports r
GROUP BY 1, 2, 3
"""
RAW_SEGMENT_DAYS = """
SELECT date_trunc('day', r.observed_at, 'UTC'), count(*), sum(r.people_count)
FROM reports r
WHERE r.segment_id = %(segment_id)s AND r.observed_at >= %(start)s AND r.observed_at < %(end)s
GROUP BY 1
"""
RAW_REGION_WEEKS_IN_BOX = f"""
SELECT s.properties->>'region_pair', {_SNAP}, date_trunc('week', r.observed_at, %(tz)s),
       count(*), sum(r.people_count)
FROM reports r LEFT JOIN segments s ON s.segment_id = r.segment_id
WHERE ST_Intersects(r.geom, ST_MakeEnvelope(%(w)s, %(s)s, %(e)s, %(n)s, 4326))
GROUP BY 1, 2, 3
"""

Key = tuple[Any, ...]  # the group's values, then the period's start (UTC)
Cell = tuple[int | None, int | None, bool]  # reports, people, suppressed


@dataclass(frozen=True, slots=True)
class Case:
    name: str
    description: str
    url: str  # path and query of the API request
    keys: tuple[str, ...]  # row fields of the API that form the group, in the raw query's order
    raw_sql: str
    raw_params: dict[str, Any]


def build_cases(*, segment_id: str, now: datetime) -> list[Case]:
    lon, lat = HOT_SPOTS[BOX_AROUND]
    dx, dy = BOX_HALF_DEG
    box = {
        k: round(v, 4)
        for k, v in (("w", lon - dx), ("s", lat - dy), ("e", lon + dx), ("n", lat + dy))
    }
    start = now - timedelta(days=365)

    def stamp(t: datetime) -> str:
        return t.isoformat().replace("+00:00", "Z")

    def segment_months(tz: str) -> str:
        query = {"group_by": "segment", "bucket": "month"} | ({"tz": tz} if tz != "UTC" else {})
        return "/v1/aggregates?" + urlencode(query)

    return [
        Case(
            "segment_month", "group_by=segment&bucket=month, all time, UTC",
            segment_months("UTC"), ("segment_id", "snap_status"), RAW_SEGMENT_MONTHS,
            {"tz": "UTC"},
        ),
        Case(
            "segment_month_st_johns", "the same in tz=America/St_Johns (local months)",
            segment_months("America/St_Johns"), ("segment_id", "snap_status"),
            RAW_SEGMENT_MONTHS, {"tz": "America/St_Johns"},
        ),
        Case(
            "segment_days", f"{segment_id} (most reports) per UTC day, {stamp(start)} to "
            f"{stamp(now)}",
            f"/v1/segments/{segment_id}/timeseries?"
            + urlencode({"bucket": "day", "start": stamp(start), "end": stamp(now)}),
            (), RAW_SEGMENT_DAYS, {"segment_id": segment_id, "start": start, "end": now},
        ),
        Case(
            "region_week_bbox", f"group_by=region&bucket=week, tz=America/Toronto, all time, "
            f"bbox {box['w']:g},{box['s']:g},{box['e']:g},{box['n']:g} (around {BOX_AROUND})",
            "/v1/aggregates?" + urlencode({
                "group_by": "region", "bucket": "week", "tz": "America/Toronto",
                "bbox": f"{box['w']:g},{box['s']:g},{box['e']:g},{box['n']:g}",
            }),
            ("region", "snap_status"), RAW_REGION_WEEKS_IN_BOX, box | {"tz": "America/Toronto"},
        ),
    ]  # fmt: skip


def busiest_segment(conn: psycopg.Connection[Any]) -> str:
    (segment_id,) = conn.execute(
        "SELECT segment_id FROM reports WHERE segment_id IS NOT NULL"
        " GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1"
    ).fetchone()  # type: ignore[misc]
    return str(segment_id)


# --- reading answers -------------------------------------------------------------------------


def api_cells(body: bytes, keys: tuple[str, ...]) -> dict[Key, Cell]:
    cells = {}
    for row in orjson.loads(body)["rows"]:
        period = datetime.fromisoformat(row["period_start"]).astimezone(UTC)
        cells[(*(row[k] for k in keys), period)] = (
            row["reports"], row["people"], bool(row["suppressed"]),
        )  # fmt: skip
    return cells


def raw_cells(body: bytes) -> dict[Key, Cell]:
    """The raw GROUP BY's rows, as written by ``raw_round`` (JSON, periods in RFC 3339)."""
    cells = {}
    for *group, period, reports, people in orjson.loads(body):
        cells[(*group, datetime.fromisoformat(period).astimezone(UTC))] = (reports, people, False)
    return cells


def differences(got: dict[Key, Cell], truth: dict[Key, Cell], *, published_only: bool) -> list[str]:
    """Cells where ``got`` is not the truth: a cell either lacks counts as zero; with
    ``published_only``, a suppressed cell of ``got`` is fine where the truth is not zero."""
    out = []
    for key in sorted(got.keys() | truth.keys(), key=repr):
        g = got.get(key, (0, 0, False))
        t = truth.get(key, (0, 0, False))
        if published_only and g[2] and t[0] != 0:
            continue
        if g[:2] != t[:2] or g[2]:
            out.append(f"{key}: got {g}, raw GROUP BY {t[:2]}")
    return out


# --- measuring -------------------------------------------------------------------------------


@dataclass
class Measured:
    """One target on one case: its rounds, answer sizes, digests and the first answer's cells."""

    phase: Phase
    sizes: list[int] = field(default_factory=list)
    digests: set[str] = field(default_factory=set)
    cells: dict[Key, Cell] | None = None
    suppress_below: int | None = None  # as the first answer of the API says

    def record(self, sent: list[Sent], case: Case, *, is_api: bool) -> None:
        for s in sent:
            if s.status != 200:
                continue
            self.sizes.append(len(s.body))
            self.digests.add(hashlib.sha256(s.body).hexdigest())
            if self.cells is None and is_api:
                self.cells = api_cells(s.body, case.keys)
                self.suppress_below = orjson.loads(s.body)["suppress_below"]
            elif self.cells is None:
                self.cells = raw_cells(s.body)
        self.phase.sent += [s if s.status >= 300 else Sent(s.status, s.seconds, b"") for s in sent]


@dataclass
class Context(RunContext):
    cases: list[Case]
    analyst_headers: dict[str, str]
    measured: dict[tuple[str, str], Measured] = field(default_factory=dict)
    pinned_backends: list[int] = field(default_factory=list)

    def of(self, target: str, case: Case) -> Measured:
        key = (target, case.name)
        if key not in self.measured:
            self.measured[key] = Measured(Phase(f"{target} {case.name}"))
        return self.measured[key]

    def ran(self, case: Case) -> dict[str, Measured]:
        """The targets measured on ``case``, in TARGETS order."""
        return {t: m for t in TARGETS if (m := self.measured.get((t, case.name))) is not None}

    def per_round(self, target: str) -> int:
        total: int = self.args.raw_requests if target == "raw_sql" else self.args.requests
        rounds: int = self.args.rounds
        return max(1, round(total / rounds))

    def pin(self) -> None:
        self.pinned_backends.append(self.postgres.pin_backends(self.server_cores))


def server_round(target: str, ctx: Context) -> None:
    headers = HEADERS | (ctx.analyst_headers if target == "api_analyst" else {})
    with running_server(
        ctx.url, log_path=ctx.scratch / f"{target}.log", cores=ctx.server_cores,
        log_level=ctx.args.server_log_level,
    ) as server:  # fmt: skip
        probes = Probes(server.pid, ctx.postgres)
        sender = Sender(server.base_url, headers=headers, warm_path="/healthz")
        try:
            for case in ctx.cases:
                sent = sender.get([case.url] * WARMUP_API)
                if bad := [s for s in sent if s.status != 200]:
                    raise RuntimeError(f"{target} warm-up: {bad[0].status} {case.url} {bad[0].body[:300]!r}")  # fmt: skip
                measured = ctx.of(target, case)
                urls = [case.url] * ctx.per_round(target)
                ctx.pin()
                with measured.phase.round(probes, len(urls)):
                    sent = sender.get(urls)
                measured.record(sent, case, is_api=True)
        finally:
            sender.close()


def raw_round(ctx: Context, conn: psycopg.Connection[Any]) -> None:
    probes = Probes(None, ctx.postgres)
    for case in ctx.cases:
        for _ in range(WARMUP_RAW):
            conn.execute(case.raw_sql, case.raw_params).fetchall()
        measured = ctx.of("raw_sql", case)
        n = ctx.per_round("raw_sql")
        ctx.pin()
        results = []
        with measured.phase.round(probes, n):
            for _ in range(n):
                start = time.perf_counter()
                rows = conn.execute(case.raw_sql, case.raw_params).fetchall()
                results.append((time.perf_counter() - start, rows))
        # Encoded after the clock, to be read as the servers' answers are (in a set order: a hash
        # aggregate's order may change between runs).
        sent = [Sent(200, s, orjson.dumps(sorted(rows, key=repr))) for s, rows in results]
        measured.record(sent, case, is_api=False)


def run(ctx: Context) -> None:
    set_parallel_query(ctx.url, allowed=ctx.args.allow_parallel_query)
    with psycopg.connect(libpq_url(ctx.url), autocommit=True, prepare_threshold=None) as conn:
        # The raw queries run without JIT, as the service's sessions do: with it, compiling the
        # box's GROUP BY took longer than running it (1,170 against 296 ms).
        conn.execute("SET jit = off")
        # bench/dataset.py vacuums reports before the rollups are counted; autovacuum would
        # vacuum and analyze these within minutes on a live database (which lets a box read
        # cell_days by an index-only scan), so measure them in that state.
        conn.execute(f"VACUUM ANALYZE {', '.join(ROLLUP_TABLES)}, segments")
        for round_no in range(ctx.args.rounds):
            first = round_no % len(TARGETS)
            for target in TARGETS[first:] + TARGETS[:first]:
                if target not in ctx.args.targets:
                    continue
                print(f"round {round_no + 1}/{ctx.args.rounds}: {target} ...", file=sys.stderr)
                if target == "raw_sql":
                    raw_round(ctx, conn)
                else:
                    server_round(target, ctx)


# --- results ---------------------------------------------------------------------------------


def case_result(ctx: Context, case: Case) -> dict[str, Any]:
    out: dict[str, Any] = {
        "description": case.description,
        "url": case.url,
        "raw_sql": " ".join(case.raw_sql.split()),
        "raw_params": {k: str(v) for k, v in case.raw_params.items()},
    }
    phases = {}
    for target, m in ctx.ran(case).items():
        phases[target] = m.phase
        cells = m.cells or {}
        out[target] = m.phase.summary(unit="requests", per="request") | {
            "bytes_per_response": spread(m.sizes, digits=0) if m.sizes else None,
            "distinct_answers": len(m.digests),
            "cells": len(cells),
            "nonzero_cells": sum(1 for c in cells.values() if c[0] != 0),
            "suppressed_cells": sum(1 for c in cells.values() if c[2]),
            "suppress_below": m.suppress_below,
        }
    out["aims"] = {}
    for target in ("api", "api_analyst"):
        if target in phases and "raw_sql" in phases:
            ratio = ratios(phases[target], phases["raw_sql"])
            out[f"ratio_{target}_to_raw_sql"] = ratio
            out["aims"][f"{target}_at_least_{AIM_OVER_RAW:g}x_raw"] = (
                ratio["overall"] >= AIM_OVER_RAW
            )
    out["identical"], out["checks"] = check(ctx, case)
    return out


def check(ctx: Context, case: Case) -> tuple[bool | None, list[str]]:
    """(whether the analyst's answer held exactly the raw GROUP BY's numbers, if both ran; every
    problem found)."""
    problems = []
    cells = {}
    for target, m in ctx.ran(case).items():
        if len(m.digests) > 1:
            problems.append(f"{target} answered differently across requests ({len(m.digests)})")
        if m.cells is not None:
            cells[target] = m.cells
    truth = cells.get("raw_sql")
    identical = None
    if truth is not None:
        for target, published_only in (("api_analyst", False), ("api", True)):
            if target not in cells:
                continue
            wrong = differences(cells[target], truth, published_only=published_only)
            if target == "api_analyst":
                identical = not wrong
            problems += [f"{target}: {len(wrong)} cells differ, e.g. {w}" for w in wrong[:3]]
    return identical, [f"{case.name}: {p}" for p in problems]


def describe(ctx: Context, facts: dict[str, Any], bench_run: Run) -> dict[str, Any]:
    with psycopg.connect(libpq_url(ctx.url)) as conn:
        settings = pg_settings(conn, PG_SETTINGS)
        rows = {
            table: conn.execute(
                sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
            ).fetchone()[0]  # type: ignore[index]
            for table in ("reports", *ROLLUP_TABLES)
        }
    params = (
        "reports", "requests", "raw_requests", "rounds", "seed", "quick", "targets",
        "allow_parallel_query",
    )  # fmt: skip
    return bench_run.header("aggregates", params, facts | {"rows": rows}) | {
        "crossings": service_facts(None),
        "request_headers": HEADERS,
        "database": {"settings": settings},
        "machine": bench_run.machine(ctx.pinned_backends),
    }


def table(result: dict[str, Any]) -> None:
    detail = []
    for name, case in result["cases"].items():
        for target in TARGETS:
            s = case.get(target)
            if s is None:
                continue
            rounds, latency, cpu = s["round_requests_per_s"], s["latency_ms"], s["cpu_us_per_request"]  # fmt: skip
            size = s["bytes_per_response"]
            detail.append([
                name, LABEL[target], s["requests_per_s"],
                f"{rounds['min']:,.1f}-{rounds['max']:,.1f}", latency["p50"], latency["p99"],
                None if size is None else round(size["median"] / 1024, 1),
                ms_of_us(cpu["server"]), ms_of_us(cpu["postgres"]), ms_of_us(cpu["client"]),
                s["non_2xx"],
            ])  # fmt: skip
    print()
    print_table(
        ["case", "target", "req/s", "round range", "p50 ms", "p99 ms", "KB/resp", "srv ms/req",
         "pg ms/req", "client ms/req", "non-2xx"],
        detail,
    )  # fmt: skip
    summary = []
    for name, case in result["cases"].items():
        api, bare = case.get("ratio_api_to_raw_sql"), case.get("ratio_api_analyst_to_raw_sql")
        summary.append([
            name,
            api and api["overall"],
            api and f"{api['rounds']['min']:.1f}-{api['rounds']['max']:.1f}",
            None if api is None else ("yes" if api["overall"] >= AIM_OVER_RAW else "NO"),
            bare and bare["overall"],
            case.get("raw_sql", {}).get("nonzero_cells"),
            case.get("api", {}).get("suppressed_cells"),
            {True: "yes", False: "NO", None: "-"}[case["identical"]],
        ])  # fmt: skip
    print()
    print_table(
        ["case", "x raw", "x raw by round", f"aim {AIM_OVER_RAW:g}x", "x raw analyst",
         "cells", "suppressed", "identical"],
        summary,
    )  # fmt: skip
    print()
    print_checks_and_notes(result)


# --- main ------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = benchmark_parser(
        "aggregates", __doc__, quick="100,000 reports; 40 and 12 requests per case"
    )
    add_request_arguments(
        parser, requests=120, per="case and server", rounds=4,
        raw_requests=24, raw_per="case of the raw GROUP BY",
    )  # fmt: skip
    # The public (no key) reads the public release since issue #13: whole UTC periods, whole
    # segments, rounded figures, so these cases (a local zone, a box) are not its questions and
    # its figures are not the raw GROUP BY's. bench/public_release.py measures it; ``api`` stays
    # selectable here for comparisons with older results.
    parser.add_argument("--targets", nargs="+", choices=TARGETS, default=["api_analyst", "raw_sql"])
    quick = {"reports": 100_000, "requests": 40, "raw_requests": 12}
    return parse_benchmark_args(parser, argv, seed=SEED, output="aggregates", quick=quick)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    bench_run = Run.start(
        args,
        about=[
            "each case asks one query again and again (warm cache); crossings keeps no answers, "
            "so every request counts afresh",
            f"api: no key, so small counts are suppressed (CROSSINGS_SUPPRESS_BELOW default, "
            f"{SUPPRESS_BELOW}); api_analyst: an analyst key, so none is (the identical-numbers "
            "check); rate limits off (bench/harness.server_env)",
            "raw GROUP BY: psycopg from this process, never prepared, rows fetched into Python "
            "(encoding them for the checks is outside the clock); with few requests its p99 is "
            "about its maximum",
            "region_week_bbox: whole cells of the box from cell_days, the reports of its edge "
            "cells and of the hours between UTC and local midnight from the reports",
            "raw GROUP BYs run with jit = off, as the service's sessions do (faster for them)",
        ],
    )
    with (
        scratch_dir("crossings_aggregates_") as scratch,
        benchmark_database(args, bench_run.notes) as (url, facts),
    ):
        with psycopg.connect(libpq_url(url)) as conn:
            segment_id = busiest_segment(conn)
        now = datetime.now(UTC).replace(microsecond=0)
        cases = build_cases(segment_id=segment_id, now=now)
        postgres = PostgresCpu.of_database(url)
        analyst = analyst_headers(url)
        ctx = Context(args, url, scratch, bench_run.server_cores, postgres, cases, analyst)
        run(ctx)
        result = describe(ctx, facts, bench_run)
    result["cases"] = {c.name: case_result(ctx, c) for c in cases}
    result["checks"] = [p for c in result["cases"].values() for p in c["checks"]]
    return bench_run.finish(result, table)


if __name__ == "__main__":
    sys.exit(main())
