"""OGC API - Features item pages: crossings against TiPG on the same PostGIS data, with the page
built by PostgreSQL alone as the floor.

Run from the repository root (TiPG and py-spy: ``.venv/bin/pip install -e '.[bench]'``)::

    .venv/bin/python -m bench.features                  # 1,000,000 reports (~5 minutes)
    .venv/bin/python -m bench.features --quick          # 100,000 reports, 50 requests per case
    .venv/bin/python -m bench.features --keep-db        # keep the loaded database, then reuse it:
    .venv/bin/python -m bench.features --db crossings_bench_1a2b3c4d
    .venv/bin/python -m bench.features --crossings-path /v1/reports   # the service's own listing
    .venv/bin/python -m bench.features --source /tmp/before   # serve another copy of service/

Data: a fresh database ``crossings_bench_<random>``, migrated with ``crossings db upgrade``, the
bundled segments loaded with ``crossings segments load``, and ``--reports`` realistic, really
snapped reports written by COPY (see bench/dataset.py); dropped at the end unless ``--keep-db``.

Servers, one at a time, each a single uvicorn worker: ``crossings serve``, and TiPG
(``uvicorn tipg.main:app``) on the same database, configured by environment: collection
``public.reports``, geometry ``geom``, datetime ``observed_at``, id ``id``, and the properties
crossings returns (without ``content_hash``, a bytea TiPG can only show as null). Each round starts
each server afresh and, case by case, warms it up on that case and sends the case's share of the
requests; the two servers take turns going first, and a round of the SQL floor follows (the page
as one JSON text from ``json_build_object``/``json_agg``, through psycopg, never prepared: always
a custom plan).

Fairness (harness.fairness_notes): this load generator is pinned to one core, the server
under test to the other, and so are the PostgreSQL backends serving our database (pinned again
before every measured round, which catches pools that grew); parallel query is switched off for the
database (``max_parallel_workers_per_gather = 0``), as its workers would escape the pinning.
Requests ask for ``Accept-Encoding: identity``: TiPG would otherwise gzip on its event loop and
crossings does not compress. CPU time per request is read from /proc for the server, PostgreSQL
and this process.

The framework floor: in each round, after the cases, each server also answers its cheapest route
(crossings: the OGC landing page with the analyst key, so through authentication; TiPG: its
landing page) ``--floor-requests`` times over all rounds. No items page can be served faster than
that, so it shows whether a ratio to TiPG on its fastest case is reachable at all.

Each case checks that crossings, TiPG and the SQL floor return the same number of features for the
same query (and the same reports, where a page holds every match), and that every answer of a
server to one query is the same; any difference is listed under ``mismatches``. Prints one JSON
object, writes bench/results/<--output>.json, then the tables.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg

from bench.dataset import (
    benchmark_database,
    parse_benchmark_args,
    set_parallel_query,
)
from bench.feature_cases import Answer, Case, Query, build_cases, raw_page_statement, read_answer
from bench.features_report import table
from bench.figures import percentile, spread
from bench.harness import (
    PostgresCpu,
    Run,
    RunContext,
    Server,
    add_source_argument,
    analyst_headers,
    benchmark_parser,
    libpq_url,
    pg_settings,
    running_server,
    running_tipg,
    scratch_dir,
    service_facts,
    tipg_facts,
)
from bench.load import Phase, Probes, Sender, Sent, ratios
from bench.synthetic import Border

SEED = 20_261_128
OGC_PATH = "/ogc/collections/reports/items"
V1_PATH = "/v1/reports"
TIPG_PATH = "/collections/public.reports/items"
HEADERS = {"accept": "application/geo+json", "accept-encoding": "identity"}
WARMUP_SMALL, WARMUP_BIG = 10, 2
PG_SETTINGS = (
    "server_version", "data_directory", "shared_buffers", "work_mem", "effective_cache_size",
    "random_page_cost", "jit", "max_parallel_workers_per_gather", "plan_cache_mode",
)  # fmt: skip
# crossings' properties, as TiPG can give them (it has no way to turn snap_geom into two numbers).
TIPG_PROPERTIES = [
    "id", "observed_at", "received_at", "people_count", "direction", "kind", "accuracy_m",
    "notes", "device_id", "snap_status", "segment_id", "snap_distance_m", "chainage_km", "side",
]  # fmt: skip
TARGETS = ("crossings", "tipg")
WHO = (*TARGETS, "raw_sql")
# The framework floor: each server's cheapest route through the same stack (uvicorn, the
# framework, for crossings the analyst key's authentication too), sent in the same rounds. No
# items page can be answered faster than this, so it says how far a ratio to TiPG can go at all.
FLOOR_PATHS = {"crossings": "/ogc?f=json", "tipg": "/?f=json"}
FLOOR = "framework_floor"
FLOOR_WARMUP = 50


# --- the servers -----------------------------------------------------------------------------


def start_server(target: str, ctx: Context) -> contextlib.AbstractContextManager[Server]:
    if target == "tipg":
        return running_tipg(
            ctx.url,
            properties=TIPG_PROPERTIES,
            scratch=ctx.scratch,
            cores=ctx.server_cores,
            log_level=ctx.args.server_log_level,
        )
    return running_server(
        ctx.url, log_path=ctx.scratch / "crossings.log", cores=ctx.server_cores,
        log_level=ctx.args.server_log_level, source=ctx.args.source,
    )  # fmt: skip


def choose_crossings_path(server: Server, args: argparse.Namespace, notes: list[str]) -> str:
    """The items path to use: --crossings-path, or the OGC one, or (while the OGC route does not
    exist yet and no path was asked for) the service's own /v1/reports, noted loudly."""
    import httpx

    path = args.crossings_path or OGC_PATH
    response = httpx.get(f"{server.base_url}{path}?limit=1", headers=HEADERS, timeout=30.0)
    if response.status_code == 404 and args.crossings_path is None:
        notes.append(f"crossings: {OGC_PATH} answered 404, so {V1_PATH} was measured instead")
        print(f"note: {OGC_PATH} answered 404; measuring {V1_PATH}", file=sys.stderr)
        return V1_PATH
    if response.status_code != 200:
        raise RuntimeError(
            f"GET {path}?limit=1 answered {response.status_code}: {response.text[:500]}"
        )
    return path


# --- measuring -------------------------------------------------------------------------------


@dataclass
class Measured:
    """One server (or the SQL floor) on one case: rounds, sizes, and what each query answered."""

    phase: Phase
    sizes: list[int] = field(default_factory=list)
    answers: dict[str, set[Answer]] = field(default_factory=lambda: defaultdict(set))
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    content_types: set[str] = field(default_factory=set)


@dataclass
class Context(RunContext):
    cases: list[Case]
    crossings_path: str | None = None
    measured: dict[tuple[str, str], Measured] = field(default_factory=dict)
    pinned_backends: list[int] = field(default_factory=list)

    def of(self, who: str, case: Case) -> Measured:
        key = (who, case.name)
        if key not in self.measured:
            self.measured[key] = Measured(Phase(f"{who} {case.name}"))
        return self.measured[key]

    def of_floor(self, who: str) -> Measured:
        key = (who, FLOOR)
        if key not in self.measured:
            self.measured[key] = Measured(Phase(f"{who} {FLOOR}"))
        return self.measured[key]

    def urls(self, target: str, queries: list[Query]) -> list[str]:
        if target == "tipg":
            return [q.url(TIPG_PATH, ogc=True) for q in queries]
        path = self.crossings_path or OGC_PATH
        return [q.url(path, ogc=not path.startswith("/v1/")) for q in queries]


def record(measured: Measured, sent: list[Sent], by_url: dict[str, Query]) -> None:
    """Read every answer outside the clock, then keep only failed bodies (10,000-feature pages
    are megabytes each)."""
    for s in sent:
        measured.sizes.append(len(s.body))
        query = by_url[s.url]
        measured.latencies[query.label].append(s.seconds)
        if s.status == 200:
            measured.answers[query.label].add(read_answer(s.body, limit=query.limit))
    measured.phase.sent += [
        s if s.status >= 300 else Sent(s.status, s.seconds, b"", s.url) for s in sent
    ]


def server_round(target: str, ctx: Context, round_no: int, notes: list[str]) -> None:
    """Start the server; for each case, warm up then measure its share of this round; stop it.

    Each case is warmed up just before it is measured, so that work one case leaves behind (a
    full garbage collection after 10,000-item pages, say) lands in that case's own warm-up rather
    than in the next case's figures."""
    args = ctx.args
    with start_server(target, ctx) as server:
        if target == "crossings" and ctx.crossings_path is None:
            ctx.crossings_path = choose_crossings_path(server, args, notes)
        probes = Probes(server.pid, ctx.postgres)
        sender = Sender(server.base_url, headers=HEADERS, warm_path="/healthz")
        try:
            for case in ctx.cases:
                measured = ctx.of(target, case)
                warm_up(target, case, ctx, sender, measured)
                queries = case.round_queries(round_no, args.rounds)
                urls = ctx.urls(target, queries)
                ctx.pinned_backends.append(ctx.postgres.pin_backends(ctx.server_cores))
                with measured.phase.round(probes, len(urls)):
                    sent = sender.get(urls, clients=args.clients)
                record(measured, sent, dict(zip(urls, queries, strict=True)))
            if not args.no_floor:
                floor_round(target, ctx, sender, probes)
        finally:
            sender.close()


def floor_round(target: str, ctx: Context, sender: Sender, probes: Probes) -> None:
    """This round's share of requests to the server's cheapest route (FLOOR_PATHS)."""
    path = FLOOR_PATHS[target]
    warm = sender.get([path] * FLOOR_WARMUP, clients=ctx.args.clients)
    if bad := [s for s in warm if s.status != 200]:
        raise RuntimeError(f"{target} floor: {bad[0].status} {path} {bad[0].body[:300]!r}")
    requests = max(1, round(ctx.args.floor_requests / ctx.args.rounds))
    phase = ctx.of_floor(target).phase
    with phase.round(probes, requests):
        sent = sender.get([path] * requests, clients=ctx.args.clients)
    phase.sent += [Sent(s.status, s.seconds, b"" if s.status < 300 else s.body) for s in sent]


def warm_up(target: str, case: Case, ctx: Context, sender: Sender, measured: Measured) -> None:
    """Every query of the case, and enough runs to settle connections and plans."""
    warm = case.warmup_queries(WARMUP_SMALL if case.limit <= 100 else WARMUP_BIG)
    sent = sender.get(ctx.urls(target, warm), clients=ctx.args.clients)
    if bad := [s for s in sent if s.status >= 300]:
        raise RuntimeError(f"{target} warm-up: {bad[0].status} {bad[0].url} {bad[0].body[:300]!r}")
    response = sender.client.get(ctx.urls(target, warm[:1])[0])
    measured.content_types.add(response.headers.get("content-type", ""))


def raw_round(ctx: Context, conn: psycopg.Connection[Any], round_no: int) -> None:
    """The SQL floor: each case's queries, one after another, from this process."""
    probes = Probes(None, ctx.postgres)
    for case in ctx.cases:
        queries = case.round_queries(round_no, ctx.args.rounds)
        statements = [raw_page_statement(q) for q in queries]
        for statement, params in statements[:3]:  # warm-up
            conn.execute(statement, params).fetchone()
        measured = ctx.of("raw_sql", case)
        ctx.pinned_backends.append(ctx.postgres.pin_backends(ctx.server_cores))
        sent = []
        with measured.phase.round(probes, len(queries)):
            for query, (statement, params) in zip(queries, statements, strict=True):
                start = time.perf_counter()
                (text,) = conn.execute(statement, params).fetchone()  # type: ignore[misc]
                sent.append(Sent(200, time.perf_counter() - start, text.encode(), query.label))
        record(measured, sent, {q.label: q for q in queries})


def run(ctx: Context, notes: list[str]) -> None:
    set_parallel_query(ctx.url, allowed=ctx.args.allow_parallel_query)
    with psycopg.connect(libpq_url(ctx.url), autocommit=True, prepare_threshold=None) as conn:
        for round_no in range(ctx.args.rounds):
            order = TARGETS if round_no % 2 == 0 else TARGETS[::-1]
            for target in order:
                if target in ctx.args.targets:
                    print(f"round {round_no + 1}/{ctx.args.rounds}: {target} ...", file=sys.stderr)
                    server_round(target, ctx, round_no, notes)
            if not ctx.args.no_raw:
                raw_round(ctx, conn, round_no)


# --- results ---------------------------------------------------------------------------------


def case_result(ctx: Context, case: Case) -> dict[str, Any]:
    out: dict[str, Any] = {
        "description": case.description,
        "limit": case.limit,
        "queries": [q.label for q in case.queries],
        "aim_crossings_over_tipg": case.aim,
    }
    phases = {}
    for who in WHO:
        m = ctx.measured.get((who, case.name))
        if m is None:
            continue
        phases[who] = m.phase
        out[who] = m.phase.summary(unit="requests", per="request") | {
            "bytes_per_response": spread(m.sizes, digits=0) if m.sizes else None,
            "content_types": sorted(m.content_types) or None,
        }
    if "crossings" in phases and "tipg" in phases:
        out["ratio_crossings_to_tipg"] = ratios(phases["crossings"], phases["tipg"])
    if "crossings" in phases and "raw_sql" in phases:
        out["ratio_crossings_to_raw_sql"] = ratios(phases["crossings"], phases["raw_sql"])
    out["answers"], out["mismatches"] = compare_answers(ctx, case)
    return out


def floor_result(ctx: Context) -> dict[str, Any]:
    """Each server on its cheapest route: the most requests a second its stack answers."""
    out: dict[str, Any] = {}
    for who in TARGETS:
        m = ctx.measured.get((who, FLOOR))
        if m is not None:
            out[who] = {"path": FLOOR_PATHS[who]} | m.phase.summary(unit="requests", per="request")
    return out


def compare_answers(ctx: Context, case: Case) -> tuple[dict[str, Any], list[str]]:
    """Per query and server: features returned, numberMatched, median latency; and every
    disagreement between servers, or between two answers of one server to the same query."""
    answers: dict[str, Any] = {}
    problems: list[str] = []
    for query in dict.fromkeys(case.queries):
        seen: dict[str, set[Answer]] = {}
        answers[query.label] = {}
        for who in WHO:
            m = ctx.measured.get((who, case.name))
            if m is None:
                continue
            got = seen[who] = m.answers.get(query.label, set())
            answers[query.label][who] = {
                "features": sorted({a.features for a in got}),
                "number_matched": sorted({n for a in got if (n := a.number_matched) is not None}),
                "p50_ms": round(percentile(m.latencies[query.label], 50) * 1000, 2),
            }
        problems += [f"{case.name} {query.label}: {p}" for p in _disagreements(seen)]
    return answers, problems


def _disagreements(seen: dict[str, set[Answer]]) -> list[str]:
    problems = []
    for who, got in seen.items():
        if len(got) > 1:
            problems.append(f"{who} answered differently across requests")
        problems += [f"{who}: {a.problem}" for a in got if a.problem]
        if any(a.number_returned not in (None, a.features) for a in got):
            problems.append(f"{who}: numberReturned != len(features)")
    firsts = {who: next(iter(got)) for who, got in seen.items() if got}
    counts = {who: a.features for who, a in firsts.items()}
    if len(set(counts.values())) > 1:
        problems.append(f"feature counts differ {counts}")
    matched = {who: a.number_matched for who, a in firsts.items() if a.number_matched is not None}
    if len(set(matched.values())) > 1:
        problems.append(f"numberMatched differs {matched}")
    id_sets = {who: a.ids for who, a in firsts.items() if a.ids is not None}
    if len(set(id_sets.values())) > 1:
        problems.append(f"different reports: {_id_diff(id_sets)}")
    total = max(matched.values(), default=None)
    for who in TARGETS:
        a = firsts.get(who)
        if a and total is not None and (total > a.features) != a.has_next:
            state = "present" if a.has_next else "missing"
            problems.append(f"{who}: next link {state} with {a.features} of {total} returned")
    return problems


def _id_diff(id_sets: dict[str, frozenset[str]]) -> str:
    (a, ids_a), *others = id_sets.items()
    return ", ".join(
        f"{b}: {len(ids_b - ids_a)} not in {a}, {len(ids_a - ids_b)} missing" for b, ids_b in others
    )


def describe(ctx: Context, facts: dict[str, Any], bench_run: Run) -> dict[str, Any]:
    with psycopg.connect(libpq_url(ctx.url)) as conn:
        settings = pg_settings(conn, PG_SETTINGS)
    settings.pop("data_directory", None)
    params = (
        "reports", "rounds", "small_requests", "big_requests", "clients", "seed", "quick",
        "targets", "allow_parallel_query",
    )  # fmt: skip
    return bench_run.header("features", params, facts) | {
        "crossings": service_facts(ctx.args.source) | {"items_path": ctx.crossings_path},
        "tipg": tipg_facts("items_path", TIPG_PATH, properties=TIPG_PROPERTIES),
        "request_headers": HEADERS,
        "database": {"settings": settings},
        "machine": bench_run.machine(ctx.pinned_backends),
    }


# --- main ------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = benchmark_parser(
        "features", __doc__, quick="100,000 reports; 50 and 10 requests per case"
    )
    parser.add_argument(
        "--small-requests",
        type=int,
        default=200,
        help="per case of 100-item pages, over all rounds",
    )
    parser.add_argument(
        "--big-requests", type=int, default=30, help="per case of 10,000-item pages"
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--clients", type=int, default=1, help="concurrent clients (default: one request at a time)"
    )
    parser.add_argument(
        "--crossings-path",
        help=f"items path of crossings (default {OGC_PATH}; {V1_PATH} if that is 404)",
    )
    parser.add_argument("--targets", nargs="+", choices=TARGETS, default=list(TARGETS))
    parser.add_argument("--no-raw", action="store_true", help="skip the SQL floor")
    add_source_argument(parser, what="crossings")
    parser.add_argument(
        "--floor-requests",
        type=int,
        default=2_000,
        help="to each server's cheapest route (the framework floor), over all rounds",
    )
    parser.add_argument("--no-floor", action="store_true", help="skip the framework floor")
    quick = {"reports": 100_000, "small_requests": 50, "big_requests": 10, "floor_requests": 500}
    return parse_benchmark_args(parser, argv, seed=SEED, output="features", quick=quick)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    bench_run = Run.start(
        args,
        about=[
            "TiPG pages in its default order (by id) and counts every match (numberMatched) on "
            "every page; crossings pages by (observed_at, id); the SQL floor as crossings, with a "
            "bare geom && box test (float4 boxes: it admits points up to ~1 m outside the box; "
            "TiPG's ST_Intersects is exact)"
        ],
    )
    with (
        scratch_dir("crossings_features_") as scratch,
        benchmark_database(args, bench_run.notes) as (url, facts),
    ):
        postgres = PostgresCpu.of_database(url)
        now = datetime.fromisoformat(facts["now"])
        cases = build_cases(
            now=now,
            border=Border.load(),
            small_requests=args.small_requests,
            big_requests=args.big_requests,
        )
        HEADERS.update(analyst_headers(url))  # TiPG ignores it
        ctx = Context(args, url, scratch, bench_run.server_cores, postgres, cases)
        run(ctx, bench_run.notes)
        result = describe(ctx, facts, bench_run)
    measured = [c for c in cases if any((w, c.name) in ctx.measured for w in WHO)]
    result["cases"] = {c.name: case_result(ctx, c) for c in measured}
    result[FLOOR] = floor_result(ctx)
    result["mismatches"] = [p for c in result["cases"].values() for p in c["mismatches"]]
    return bench_run.finish(result, table)


if __name__ == "__main__":
    sys.exit(main())
