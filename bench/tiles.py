"""Vector tiles: crossings' /v1/tiles against TiPG on the same PostGIS data, with the bare
``ST_AsMVT`` query as the PostGIS limit.

Run from the repository root (TiPG and py-spy: ``.venv/bin/pip install -e '.[bench]'``)::

    .venv/bin/python -m bench.tiles                  # 1,000,000 reports (~15 minutes)
    .venv/bin/python -m bench.tiles --quick          # 100,000 reports, 60 requests per zoom
    .venv/bin/python -m bench.tiles --keep-db        # keep the loaded database, then reuse it:
    .venv/bin/python -m bench.tiles --db crossings_bench_1a2b3c4d
    .venv/bin/python -m bench.tiles --profile        # py-spy on crossings (slows it: not for figures)

Data: as bench/features.py (bench/dataset.py: ``--reports`` realistic, snapped reports written by
COPY into a fresh ``crossings_bench_<random>``, tile rollups counted after, dropped at the end
unless ``--keep-db``).

Tiles: ``--tiles`` per zoom (z4, z8, z12), those of reports drawn at random (see
bench/tile_cases.py), the same list for every target; ``--requests`` per zoom, target and mode over
all rounds, cycling through the list (``--bare-low-zoom-requests`` for the bare query below z8,
whose tiles take seconds each).

Targets, per zoom:

- crossings: ``GET /v1/tiles/{z}/{x}/{y}.mvt`` from ``crossings serve`` (one uvicorn worker),
  ``uncached`` (plain requests) and ``revalidation`` (the same requests with ``If-None-Match``
  set to the first ETag seen for the tile: 304 expected);
- TiPG: ``GET /collections/public.reports/tiles/WebMercatorQuad/{z}/{x}/{y}`` (one uvicorn
  worker), its properties set to those of crossings' point features; revalidation too if it sends
  ETags (1.6.1 does not);
- bare SQL: one ``ST_AsMVT`` over every report in the buffered tile, with the same properties, one
  feature each, through psycopg from this process, never prepared (always a custom plan).

Each round starts each server afresh and, zoom by zoom, warms it up and sends that zoom's share;
the targets take turns going first. Fairness as in bench/features.py (harness.fairness_notes):
load generator on one core, the server and the PostgreSQL backends of the database on the other
(re-pinned before every measured round), parallel query off for the database, ``Accept-Encoding:
identity``. CPU per request from /proc for the server, PostgreSQL and this process.

Checks (outside the clock): every tile is decoded; crossings' cluster counts (and people) must add
up to the reports whose position lies in the tile, counted by SQL with the exact Web Mercator
bounds; how many reports each target's tile stands for, against that truth; ETags strong and
stable, answers the same every time. Prints one JSON object, writes bench/results/<--output>.json,
then the tables.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Sequence
from typing import Any

import httpx
import psycopg

from bench.dataset import (
    benchmark_database,
    parse_benchmark_args,
    set_parallel_query,
)
from bench.figures import RESULTS_DIR
from bench.harness import (
    PostgresCpu,
    Run,
    Server,
    add_request_arguments,
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
from bench.load import Probes, Sent
from bench.pyspy import Profiler, Rule, breakdown
from bench.tile_cases import (
    Tile,
    bare_statement,
    choose_tiles,
    truth,
)
from bench.tiles_report import Context, table, tile_results

SEED = 20_261_128
ZOOMS = (4, 8, 12)
CROSSINGS_TILE = "/v1/tiles/{z}/{x}/{y}.mvt"
TIPG_TILE = "/collections/public.reports/tiles/WebMercatorQuad/{z}/{x}/{y}"
HEADERS = {"accept-encoding": "identity"}
# What crossings' point features carry (service/domain/tiles.point_properties); TiPG's tiles and
# the bare query carry the same columns.
POINT_PROPERTIES = (
    "id", "observed_at", "kind", "people_count", "snap_status", "direction", "segment_id", "side",
)  # fmt: skip
SERVERS = ("crossings", "tipg")
TARGETS = (*SERVERS, "bare_sql")
WARMUP = 5
PG_SETTINGS = (
    "server_version", "shared_buffers", "work_mem", "effective_cache_size", "random_page_cost",
    "jit", "max_parallel_workers_per_gather", "plan_cache_mode",
)  # fmt: skip


# --- what was seen ---------------------------------------------------------------------------


def tile_url(target: str, tile: Tile) -> str:
    template = TIPG_TILE if target == "tipg" else CROSSINGS_TILE
    return template.format(z=tile.z, x=tile.x, y=tile.y)


def record(
    ctx: Context,
    target: str,
    *,
    key: tuple[int, str] | None,
    tiles: Sequence[Tile],
    sent: Sequence[Sent],
    headers: Sequence[httpx.Headers | None],
) -> None:
    """Note every answer (its tile decoded the first time), then keep only failed bodies. With
    ``key`` (zoom, mode), the answers also go to that phase; revalidations are not "seen"."""
    for tile, s, h in zip(tiles, sent, headers, strict=True):
        if key is None or key[1] == "uncached":
            seen = ctx.seen_of(target, tile)
            seen.add(s, h)
            if key is not None:
                seen.seconds.append(s.seconds)
    if key is None:
        return
    measured = ctx.of(target, *key)
    measured.sizes += [len(s.body) for s in sent]
    measured.phase.sent += [
        s if s.status >= 300 and s.status != 304 else Sent(s.status, s.seconds, b"", s.url)
        for s in sent
    ]


# --- the servers -----------------------------------------------------------------------------


def start_server(target: str, ctx: Context) -> contextlib.AbstractContextManager[Server]:
    if target == "tipg":
        return running_tipg(
            ctx.url,
            properties=POINT_PROPERTIES,
            scratch=ctx.scratch,
            cores=ctx.server_cores,
            log_level=ctx.args.server_log_level,
        )
    return running_server(
        ctx.url, log_path=ctx.scratch / "crossings.log", cores=ctx.server_cores,
        log_level=ctx.args.server_log_level,
    )  # fmt: skip


def fetch(
    client: httpx.Client, urls: Sequence[str], *, etags: Sequence[str] | None = None
) -> tuple[list[Sent], list[httpx.Headers | None]]:
    """GET each URL in turn on one keep-alive connection (with ``If-None-Match: etags[i]``)."""
    sent: list[Sent] = []
    headers: list[httpx.Headers | None] = []
    for i, url in enumerate(urls):
        extra = {"if-none-match": etags[i]} if etags else None
        start = time.perf_counter()
        response = client.get(url, headers=extra)
        sent.append(Sent(response.status_code, time.perf_counter() - start, response.content, url))
        headers.append(response.headers)
    return sent, headers


def server_round(target: str, ctx: Context, *, round_no: int) -> None:
    """Start the server; for each zoom, warm up, measure its share of this round uncached, then
    revalidating if the server gave ETags; stop it."""
    with (
        start_server(target, ctx) as server,
        httpx.Client(base_url=server.base_url, headers=HEADERS, timeout=300.0) as client,
    ):
        probes = Probes(server.pid, ctx.postgres)
        ctx.profiler.pid = server.pid if target == "crossings" else None
        for z in ctx.args.zooms:
            tiles = ctx.round_tiles(target, z, round_no)
            urls = [tile_url(target, t) for t in tiles]
            warm = tiles[:WARMUP]
            sent, headers = fetch(client, urls[:WARMUP])
            if bad := [s for s in sent if s.status not in (200, 204)]:
                b = bad[0]
                raise RuntimeError(f"{target} warm-up: {b.status} {b.url} {b.body[:300]!r}")
            record(ctx, target, key=None, tiles=warm, sent=sent, headers=headers)

            measured = ctx.of(target, z, "uncached")
            ctx.pin()
            profiling = round_no == ctx.args.rounds - 1 and target == "crossings"
            with (
                ctx.profiler.recording(f"z{z}") if profiling else contextlib.nullcontext(),
                measured.phase.round(probes, len(urls)),
            ):
                sent, headers = fetch(client, urls)
            record(ctx, target, key=(z, "uncached"), tiles=tiles, sent=sent, headers=headers)

            etags = [(ctx.seen_of(target, t).etags or [""])[0] for t in tiles]
            if not all(etags):
                continue
            measured = ctx.of(target, z, "revalidation")
            ctx.pin()
            with measured.phase.round(probes, len(urls)):
                sent, headers = fetch(client, urls, etags=etags)
            record(ctx, target, key=(z, "revalidation"), tiles=tiles, sent=sent, headers=headers)


def bare_round(ctx: Context, conn: psycopg.Connection[Any], *, round_no: int) -> None:
    """The PostGIS limit: each zoom's share of tiles, one query after another, from here."""
    probes = Probes(None, ctx.postgres)
    for z in ctx.args.zooms:
        tiles = ctx.round_tiles("bare_sql", z, round_no)
        statements = [bare_statement(t, POINT_PROPERTIES) for t in tiles]
        warm = 2 if z < 8 else WARMUP  # low-zoom bare tiles take seconds each
        for statement, params in statements[:warm]:
            conn.execute(statement, params, binary=True).fetchone()
        measured = ctx.of("bare_sql", z, "uncached")
        ctx.pin()
        sent = []
        with measured.phase.round(probes, len(tiles)):
            for tile, (statement, params) in zip(tiles, statements, strict=True):
                start = time.perf_counter()
                (body,) = conn.execute(statement, params, binary=True).fetchone()  # type: ignore[misc]
                sent.append(Sent(200, time.perf_counter() - start, bytes(body or b""), tile.path))
        record(
            ctx, "bare_sql", key=(z, "uncached"), tiles=tiles, sent=sent, headers=[None] * len(sent)
        )


def run(ctx: Context) -> None:
    set_parallel_query(ctx.url, allowed=ctx.args.allow_parallel_query)
    with psycopg.connect(libpq_url(ctx.url), autocommit=True, prepare_threshold=None) as conn:
        distinct = sorted({t for z in ctx.args.zooms for t in ctx.tiles[z]})
        print(f"counting the reports of {len(distinct)} tiles ...", file=sys.stderr)
        ctx.truths = {t: truth(conn, t) for t in distinct}
        for round_no in range(ctx.args.rounds):
            first = round_no % len(TARGETS)
            for target in TARGETS[first:] + TARGETS[:first]:
                if target not in ctx.args.targets:
                    continue
                print(f"round {round_no + 1}/{ctx.args.rounds}: {target} ...", file=sys.stderr)
                if target == "bare_sql":
                    bare_round(ctx, conn, round_no=round_no)
                else:
                    server_round(target, ctx, round_no=round_no)


# --- profiling -------------------------------------------------------------------------------

# Where crossings' CPU goes on a tile, by the first rule a sampled stack matches (bench/pyspy.py).
# py-spy samples the thread holding the GIL: time PostgreSQL spends on the statement, while
# psycopg waits with the GIL released, is not here (see the pg ms/req column for it).
PROFILE_RULES: list[Rule] = [
    ("store: psycopg (execute, fetch, commit)", ["(psycopg/"]),
    ("store: SQLAlchemy (connection, transaction, pool)", ["(sqlalchemy/"]),
    ("store: statement text and parameters", ["(service/storage/postgis/tiles.py"]),
    ("store: other", ["(service/storage/"]),
    ("usecase: mvt_tile", ["(service/usecases/tiles.py"]),
    ("response: ETag (blake2b of the tile)", ["etag_of"]),
    ("response: revalidated (headers, 304 or 200)", ["revalidated"]),
    ("route: tile address, filters, settings", ["(service/api/routes/tiles.py"]),
    ("FastAPI: dependencies", ["solve_dependencies"]),
    ("threadpool hand-offs (anyio)", ["run_in_threadpool"]),
    ("threadpool hand-offs (anyio)", ["WorkerThread"]),
    ("uvicorn: HTTP parsing and socket I/O in C (uvloop, httptools)", ["^Runner.run (asyncio"]),
    ("uvicorn, Starlette, FastAPI: the request cycle", ["run_asgi"]),
    ("uvicorn: HTTP protocol, Python side (headers, request cycle)", ["HttpToolsProtocol"]),
    ("asyncio event loop (callbacks, timers)", ["Runner.run (asyncio"]),
]


def profile_breakdowns(ctx: Context) -> dict[str, Any]:
    """Per profiled zoom: each category's share of crossings' sampled CPU, in µs per request of
    the profiled round, next to the CPU per request /proc measured over all rounds."""
    out = {}
    for phase, path in ctx.profiler.files.items():
        z = int(phase.removeprefix("z"))
        summary = ctx.of("crossings", z, "uncached").phase.summary(unit="requests", per="request")
        out[phase] = breakdown(
            path,
            PROFILE_RULES,
            rate=ctx.args.profile_rate,
            items=len(ctx.round_tiles("crossings", z, ctx.args.rounds - 1)),
            cpu_us_per_item=summary["cpu_us_per_request"]["server"],
        )
    return out


# --- main ------------------------------------------------------------------------------------


def describe(ctx: Context, facts: dict[str, Any], bench_run: Run) -> dict[str, Any]:
    with psycopg.connect(libpq_url(ctx.url)) as conn:
        settings = pg_settings(conn, PG_SETTINGS)
    params = (
        "reports", "tiles", "requests", "bare_low_zoom_requests", "rounds", "zooms", "seed",
        "quick", "targets", "allow_parallel_query", "profile",
    )  # fmt: skip
    statement, _ = bare_statement(Tile(0, 0, 0), POINT_PROPERTIES)
    with psycopg.connect(libpq_url(ctx.url)) as conn:
        bare_sql = statement.as_string(conn)
    return bench_run.header("tiles", params, facts) | {
        "crossings": service_facts(None) | {"tile_path": CROSSINGS_TILE},
        "tipg": tipg_facts("tile_path", TIPG_TILE, properties=POINT_PROPERTIES),
        "bare_sql": " ".join(bare_sql.split()),
        "request_headers": HEADERS,
        "database": {"settings": settings},
        "machine": bench_run.machine(ctx.pinned_backends),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = benchmark_parser(
        "tiles", __doc__, quick="100,000 reports; 60 requests per zoom (12 bare z4)"
    )
    parser.add_argument("--tiles", type=int, default=200, help="tiles drawn per zoom")
    add_request_arguments(parser, requests=200, per="zoom, target and mode", rounds=4)
    parser.add_argument(
        "--bare-low-zoom-requests",
        type=int,
        default=40,
        help="requests of the bare query per zoom below 8 (its tiles take seconds)",
    )
    parser.add_argument("--zooms", type=int, nargs="+", default=list(ZOOMS))
    parser.add_argument("--targets", nargs="+", choices=TARGETS, default=list(TARGETS))
    parser.add_argument(
        "--profile",
        action="store_true",
        help="py-spy on crossings during its last round (pauses it to sample: slower figures)",
    )
    parser.add_argument("--profile-rate", type=int, default=200)
    quick = {"reports": 100_000, "requests": 60, "bare_low_zoom_requests": 12}
    return parse_benchmark_args(parser, argv, seed=SEED, output="tiles", quick=quick)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    bench_run = Run.start(
        args,
        about=[
            f"TiPG and the bare query carry crossings' point properties "
            f"({', '.join(POINT_PROPERTIES)}); TiPG keeps at most TIPG_MAX_FEATURES_PER_TILE "
            "(default 10,000) features per tile, the first by id, and buffers 256 units; the bare "
            "query keeps every report in the tile and its 64-unit buffer"
        ],
    )
    if "bare_sql" in args.targets and args.bare_low_zoom_requests < args.requests:
        bench_run.notes.append(
            f"below z8 the bare query answers only the first {args.bare_low_zoom_requests} tiles "
            f"of the list, not {args.requests} (its tiles take seconds): its rate there is over "
            "fewer tiles than the servers'"
        )
    if args.profile:
        bench_run.notes.append("--profile: py-spy paused crossings to sample it in its last round")
    profiler = Profiler(args.profile, RESULTS_DIR, f"{args.output}-crossings", args.profile_rate)
    with (
        scratch_dir("crossings_tiles_") as scratch,
        benchmark_database(args, bench_run.notes) as (url, facts),
    ):
        HEADERS.update(analyst_headers(url))  # the precise tiles; TiPG ignores it
        with psycopg.connect(libpq_url(url)) as conn:
            tiles = choose_tiles(conn, zooms=args.zooms, count=args.tiles, seed=args.seed)
        ctx = Context(
            args,
            url,
            scratch,
            bench_run.server_cores,
            PostgresCpu.of_database(url),
            tiles,
            profiler,
        )
        run(ctx)
        result = describe(ctx, facts, bench_run)
    result |= tile_results(ctx, targets=TARGETS)
    if ctx.profiler.files:
        result["profiles"] = profile_breakdowns(ctx)
    return bench_run.finish(result, table)


if __name__ == "__main__":
    sys.exit(main())
