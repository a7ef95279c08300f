"""The costliest request each role can make (issue #13: bounded work; aim analyst <= 2 s at a
million reports, public <= 50 ms once the public release lands).

Run from the repository root::

    .venv/bin/python -m bench.costliest                  # 1,000,000 reports
    .venv/bin/python -m bench.costliest --quick          # 100,000 reports
    .venv/bin/python -m bench.costliest --keep-db        # keep the loaded database, then reuse it:
    .venv/bin/python -m bench.costliest --db crossings_bench_1a2b3c4d

Data: as bench/aggregates.py (bench/dataset.py: realistic, snapped reports over the past year,
written by COPY into a fresh ``crossings_bench_<random>``, rollups counted with ``crossings db
rebuild-rollups``; dropped at the end unless ``--keep-db``).

Cases: for each role, the requests that make the service work hardest while staying within its
caps (CROSSINGS_AGGREGATE_MAX_CELLS, _MAX_RANGE_DAYS, _MAX_PARTS, CROSSINGS_PUBLIC_MAX_CELLS,
page and batch sizes at their defaults): the largest aggregates tables (every segment by local day in a zone off UTC midnight,
every grouping key at once, a box), a full page of reports or OGC items (as CSV too), a tile at
the first point zoom over the busiest place. And the requests that the caps refuse (``bucket=week``
from 1836 in Asia/Kathmandu, a 123 s request before work was bounded), to show that a refusal costs
nothing. Each case is asked once to warm up, then ``--repeat`` times; its time is the median
wall time seen by the client, with the server's CPU (the uvicorn process) and PostgreSQL's (the
database's backends) per request from /proc.

The public's cases are answers of the public release (service/usecases/public_release.py), cut
by this run before the server starts (``crossings release cut``); see ``public_cases``. Small
public answers are kept per cut, so each public case is measured ``cached`` (one URL again and
again) and ``fresh`` (``start`` moved by a second inside the window's first period each time: the
same whole periods, computed afresh).

Fairness: the server and the database's backends on one core, this client on the other
(bench/harness.pin_for_database), parallel query off for the database unless
``--allow-parallel-query``; two cores shared with other work on this machine: see the load
average in the JSON. Prints one JSON object, writes bench/results/<--output>.json, then a table.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import httpx
import psycopg

from bench.dataset import (
    benchmark_database,
    parse_benchmark_args,
    segment_index,
    set_parallel_query,
)
from bench.figures import print_table
from bench.harness import (
    PostgresCpu,
    Run,
    benchmark_parser,
    cpu_seconds,
    key_headers,
    libpq_url,
    run_cli,
    running_server,
    scratch_dir,
    service_facts,
)
from bench.synthetic import HOT_SPOTS
from service.domain.aggregation import Unit
from service.domain.release import PublicWindow, ReleaseInfo, day_start, periods, public_window
from service.domain.segments import SegmentIndex
from service.settings import Settings

SEED = 20_261_207
AIM_S = {"analyst": 2.0, "admin": 2.0, "reporter": 2.0, "public": 0.050}
DEFAULTS = Settings.model_fields
MAX_CELLS = int(DEFAULTS["public_max_cells"].default)
KINDS: tuple[str, ...] = tuple(DEFAULTS["report_kinds"].default)
# No cut while measuring (the server cuts hourly, and when a day comes of age).
SERVER_ENV = {"CROSSINGS_RELEASE_REFRESH_S": "86400"}
CAPS = ("aggregate_max_cells", "aggregate_max_range_days", "aggregate_max_parts",
        "page_max_items", "tile_max_points")  # fmt: skip


@dataclass(frozen=True, slots=True)
class Case:
    role: str  # public (no key), reporter, analyst, admin
    name: str
    path: str  # path and query
    expect: int = 200  # 400: a request the caps refuse
    about: str = ""  # what the answer holds
    # The k-th request of the same work under another URL (the public: answers are kept per
    # cut, so a repeated URL measures the kept answer; the fresh one the work).
    fresh: Callable[[int], str] | None = None


def _q(path: str, **params: Any) -> str:
    return f"{path}?{urlencode(params)}"


def analyst_cases(now: datetime, segment_id: str, index: SegmentIndex) -> list[Case]:
    def ago(days: int) -> str:
        return (now - timedelta(days=days)).replace(hour=0, minute=0, second=0).isoformat()

    # The longest windows the default cap on cells (100,000) allows for each grouping: every
    # segment (and beyond reach) x as many local days as fit (two to spare: local days overlap
    # the UTC window's ends); 7,328 (segment, side, kind) x 12 months; 29,312 (every key) x 3
    # quarters; 156 (region, kind) x 368 days.
    year_ago = ago(365)
    days = int(DEFAULTS["aggregate_max_cells"].default) // (len(index.segments) + 1) - 2
    end = now.isoformat()
    lon, lat = HOT_SPOTS["roxham_road"]
    box = f"{lon - 2},{lat - 1},{lon + 2},{lat + 1}"
    z = int(DEFAULTS["tile_points_min_zoom"].default)
    x, y = _tile(lon, lat, z)
    agg = "/v1/aggregates"
    return [
        Case("analyst", "segment_by_local_day_kathmandu",
             _q(agg, group_by="segment", bucket="day", tz="Asia/Kathmandu", start=ago(days),
                end=end)),
        Case("analyst", "segment_by_local_day_kathmandu_fill_csv",
             _q(agg, group_by="segment", bucket="day", tz="Asia/Kathmandu", start=ago(days),
                end=end, fill="true", f="csv")),
        Case("analyst", "segment_side_kind_by_local_month",
             _q(agg, group_by="segment,side,kind", bucket="month", tz="America/St_Johns",
                start=ago(300), end=end)),
        Case("analyst", "all_keys_by_local_quarter",
             _q(agg, group_by="segment,kind,direction,side", bucket="quarter",
                tz="Asia/Kathmandu", start=ago(150), end=end)),
        Case("analyst", "box_region_kind_by_local_day",
             _q(agg, group_by="region,kind", bucket="day", tz="Asia/Kathmandu",
                bbox=box, start=year_ago, end=end)),
        Case("analyst", "week_since_1970_kathmandu",
             _q(agg, bucket="week", tz="Asia/Kathmandu", start="1970-01-01T00:00:00Z")),
        Case("analyst", "segment_timeseries_local_day",
             _q(f"/v1/segments/{segment_id}/timeseries", bucket="day", tz="Asia/Kathmandu",
                start=year_ago, end=end)),
        Case("analyst", "reports_page_10000",
             _q("/v1/reports", limit=DEFAULTS["page_max_items"].default)),
        Case("analyst", "ogc_items_page_10000_csv",
             _q("/ogc/collections/reports/items", limit=DEFAULTS["page_max_items"].default,
                f="csv")),
        Case("analyst", "ogc_items_box_page_10000",
             _q("/ogc/collections/reports/items", limit=DEFAULTS["page_max_items"].default,
                bbox=box)),
        Case("analyst", "tile_first_point_zoom_roxham", f"/v1/tiles/{z}/{x}/{y}.mvt"),
        Case("analyst", "refused_week_since_1836_kathmandu",
             _q(agg, bucket="week", tz="Asia/Kathmandu", start="1836-01-01T00:00:00Z"), 400),
        Case("analyst", "refused_segment_by_local_day_over_a_year",
             _q(agg, group_by="segment", bucket="day", tz="Asia/Kathmandu", start=year_ago,
                end=end), 400),
        Case("analyst", "refused_segment_kind_direction_side_by_day",
             _q(agg, group_by="segment,kind,direction,side", bucket="day", start=year_ago,
                end=end), 400),
    ]  # fmt: skip


def reporter_cases(now: datetime) -> list[Case]:
    """A reporter reads its own reports only (none here: the data came in without a key) and
    what the public reads; its costliest are the pages of its own reports."""
    limit = DEFAULTS["page_max_items"].default
    return [
        Case("reporter", "own_reports_page_10000", _q("/v1/reports", limit=limit)),
        Case("reporter", "own_ogc_items_page_10000",
             _q("/ogc/collections/reports/items", limit=limit, f="csv")),
    ]  # fmt: skip


def public_cases(info: ReleaseInfo, index: SegmentIndex, segment_id: str) -> list[Case]:
    """The costliest answers of the public release (no key): the most cells the public cap
    (CROSSINGS_PUBLIC_MAX_CELLS: periods x possible groups) allows, every period of each listed
    group (``fill=true``), as JSON and CSV; every segment at once (the choropleth, a tile over
    the whole border); and one request over the cap (refused). Each is asked ``fresh``: ``start``
    moves by a second inside the window's first period on every request (the same whole periods
    are counted, but the server has not kept that answer), which is what an attacker who defeats
    the kept answers pays; and ``cached`` once (the same URL again: a dashboard)."""
    segments = len(index.segments) + 1  # and the reports beyond reach
    countries = {c for s in index.segments for c in (s.left_country, s.right_country)}
    kinds, directions = len(KINDS), len(countries) + 1
    agg = "/v1/aggregates"

    def window(unit: Unit, start: date | None = None) -> PublicWindow:
        return public_window(unit, None if start is None else day_start(start), None, info)

    def longest(unit: Unit, groups: int) -> PublicWindow:
        """The longest window of ``unit`` periods ending at the release's last one, under the
        cap for ``groups`` possible groups."""
        whole = window(unit)
        n = min(len(periods(unit, whole)), MAX_CELLS // groups)
        return window(unit, periods(unit, whole)[-n])

    def aggregates(name: str, unit: Unit | None, keys: str, groups: int, **extra: str) -> Case:
        w = longest(unit or "day", groups) if unit else window("day")
        params = {"group_by": keys, **({"bucket": unit, "fill": "true"} if unit else {}), **extra}
        cells = groups * (len(periods(unit, w)) if unit else 1)
        return Case(
            "public", name, _q(agg, **params, start=stamp(w.start)),
            about=f"{cells:,} possible cells ({w.start} to {w.end}), cap {MAX_CELLS:,}",
            fresh=lambda k: _q(agg, **params, start=stamp(w.start, seconds=k)),
        )  # fmt: skip

    day = longest("day", segments)
    over = window("day", day.start - timedelta(days=1))  # one more day than the cap allows
    lon, lat = HOT_SPOTS["roxham_road"]
    z6 = "/".join(map(str, (6, *_tile(lon, lat, 6))))
    since = window("day").start
    return [
        aggregates("segment_by_day_fill", "day", "segment", segments),
        aggregates("segment_by_day_fill_csv", "day", "segment", segments, f="csv"),
        aggregates("segment_by_month_fill_all_time", "month", "segment", segments),
        aggregates("segment_kind_by_week_fill", "week", "segment,kind", segments * kinds),
        aggregates("segment_kind_direction_all_time", None, "segment,kind,direction",
                   segments * kinds * directions),
        aggregates("region_kind_direction_side_by_month_fill", "month",
                   "region,kind,direction,side",
                   (len({s.properties.get("region_pair") or s.section for s in index.segments})
                    + 1) * kinds * directions * directions),
        Case("public", "segments_choropleth", "/v1/aggregates/segments.geojson",
             about=f"{len(index.segments)} segments, all time",
             fresh=lambda k: _q("/v1/aggregates/segments.geojson",
                                start=stamp(since, seconds=k))),
        Case("public", "segment_timeseries_by_day",
             _q(f"/v1/segments/{segment_id}/timeseries", bucket="day"),
             about="the busiest segment, every day of the release",
             fresh=lambda k: _q(f"/v1/segments/{segment_id}/timeseries", bucket="day",
                                start=stamp(since, seconds=k))),
        Case("public", "tile_z6_roxham", f"/v1/tiles/{z6}.mvt", about="release figures",
             fresh=lambda k: _q(f"/v1/tiles/{z6}.mvt", start=stamp(since, seconds=k))),
        Case("public", "tile_z0_whole_border", "/v1/tiles/0/0/0.mvt",
             about="every segment in one tile",
             fresh=lambda k: _q("/v1/tiles/0/0/0.mvt", start=stamp(since, seconds=k))),
        Case("public", "refused_segment_by_day_one_day_over_the_cap",
             _q(agg, group_by="segment", bucket="day", start=stamp(over.start)), 400),
        Case("public", "refused_local_zone",
             _q(agg, group_by="segment", bucket="day", tz="Asia/Kathmandu"), 400),
    ]  # fmt: skip


def stamp(d: date, *, seconds: int = 0) -> str:
    """A UTC day's start (plus ``seconds``) in RFC 3339."""
    return (day_start(d) + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def cut_release(url: str) -> ReleaseInfo:
    """Cut the public release now (as ``crossings release cut`` does every hour) and read it."""
    run_cli(["release", "cut"], database_url=url)
    with psycopg.connect(libpq_url(url)) as conn:
        row = conn.execute(
            "SELECT release_id, cut_at, through, first_day FROM release_info"
        ).fetchone()
    assert row is not None
    return ReleaseInfo(int(row[0]), row[1], row[2], row[3])


def _tile(lon: float, lat: float, z: int) -> tuple[int, int]:
    import math

    n = 2**z
    x = int((lon + 180) / 360 * n)
    y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)
    return x, y


def busiest_segment(url: str) -> str:
    with psycopg.connect(libpq_url(url)) as conn:
        row = conn.execute(
            "SELECT segment_id FROM reports WHERE segment_id IS NOT NULL"
            " GROUP BY 1 ORDER BY count(*) DESC LIMIT 1"
        ).fetchone()
    assert row is not None
    return str(row[0])


def measure(
    client: httpx.Client,
    case: Case,
    headers: dict[str, str],
    *,
    repeat: int,
    server_pid: int,
    postgres: PostgresCpu,
    fresh: bool = False,
) -> dict[str, Any]:
    """``repeat`` requests of ``case`` after one warm-up: the same URL every time, or (``fresh``)
    the case's k-th URL for the k-th request."""

    def once(path: str) -> tuple[float, int, int]:
        started = time.perf_counter()
        response = client.get(path, headers=headers)
        return time.perf_counter() - started, response.status_code, len(response.content)

    def path(k: int) -> str:
        return case.fresh(k) if fresh and case.fresh is not None else case.path

    _, status, size = once(path(0))  # warm-up
    walls = []
    cpu0, pg0 = cpu_seconds(server_pid), postgres.seconds()
    for k in range(1, repeat + 1):
        wall, status, size = once(path(k))
        walls.append(wall)
    cpu1, pg1 = cpu_seconds(server_pid), postgres.seconds()
    median = statistics.median(walls)
    return {
        "role": case.role,
        "case": case.name,
        "mode": "fresh" if fresh else "cached" if case.fresh is not None else "",
        "about": case.about,
        "path": case.path,
        "fresh_example": case.fresh(1) if fresh and case.fresh is not None else None,
        "status": status,
        "expected_status": case.expect,
        "bytes": size,
        "median_s": round(median, 4),
        "max_s": round(max(walls), 4),
        "server_cpu_s": round((cpu1 - cpu0) / repeat, 4),
        "postgres_cpu_s": None if pg0 is None or pg1 is None else round((pg1 - pg0) / repeat, 4),
        "aim_s": AIM_S[case.role] if case.expect == 200 else None,
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = benchmark_parser("costliest", __doc__, quick="100,000 reports, 3 per case")
    parser.add_argument("--repeat", type=int, default=5, help="measured requests per case")
    parser.add_argument("--roles", nargs="+", default=["public", "reporter", "analyst"])
    quick = {"reports": 100_000, "repeat": 3}
    return parse_benchmark_args(parser, argv, seed=SEED, output="costliest", quick=quick)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    bench_run = Run.start(
        args,
        about=[
            "median of --repeat requests after one warm-up; crossings keeps no answers, so each "
            "request does its work afresh; rate limits off (bench/harness.server_env)",
            "public cases: answers of the public release (cut by this run before the server "
            "starts; the server does not cut again during it); 'cached' repeats one URL (the "
            "server keeps small public answers per cut), 'fresh' moves start by a second inside "
            "the first period on every request (the same whole periods, computed afresh)",
        ],
    )
    results: list[dict[str, Any]] = []
    with (
        scratch_dir("crossings_costliest_") as scratch,
        benchmark_database(args, bench_run.notes) as (url, facts),
    ):
        set_parallel_query(url, allowed=args.allow_parallel_query)
        now = datetime.now(UTC).replace(microsecond=0)
        segment_id = busiest_segment(url)
        cases: list[Case] = []
        release: dict[str, Any] | None = None
        if "public" in args.roles:
            info = cut_release(url)
            release = {"release_id": info.release_id, "cut_at": info.cut_at.isoformat(),
                       "through": str(info.through), "first": str(info.first)}  # fmt: skip
            cases += public_cases(info, segment_index(), segment_id)
        if "reporter" in args.roles:
            cases += reporter_cases(now)
        if "analyst" in args.roles:
            cases += analyst_cases(now, segment_id, segment_index())
        headers = {
            role: {} if role == "public" else key_headers(url, role)
            for role in {c.role for c in cases}
        }
        postgres = PostgresCpu.of_database(url)
        with (
            running_server(
                url, log_path=scratch / "server.log", cores=bench_run.server_cores,
                log_level=args.server_log_level, env=SERVER_ENV,
            ) as server,
            httpx.Client(base_url=server.base_url, timeout=600) as client,
        ):  # fmt: skip
            postgres.pin_backends(bench_run.server_cores)
            for case in cases:
                for fresh in (False, True) if case.fresh is not None else (False,):
                    print(f"{case.role} {case.name} {'fresh' if fresh else ''}...", file=sys.stderr)
                    results.append(
                        measure(
                            client, case, headers[case.role], repeat=args.repeat,
                            server_pid=server.pid, postgres=postgres, fresh=fresh,
                        )
                    )  # fmt: skip
                    postgres.pin_backends(bench_run.server_cores)
    costliest = {}
    for role in dict.fromkeys(r["role"] for r in results):
        served = [r for r in results if r["role"] == role and r["expected_status"] == 200]
        if served:
            worst = max(served, key=lambda r: r["median_s"])
            costliest[role] = {
                "case": f"{worst['case']} {worst['mode']}".strip(),
                "median_s": worst["median_s"],
                "aim_s": AIM_S[role],
                "within_aim": worst["median_s"] <= AIM_S[role],
            }
    params = ("reports", "repeat", "quick", "roles", "seed")
    result = bench_run.header("costliest", params, facts) | {
        "release": release,
        "crossings": service_facts(None),
        "caps": {name: DEFAULTS[name].default for name in CAPS},
        "public_max_cells": MAX_CELLS,
        "machine": bench_run.machine(),
        "cases": results,
        "costliest": costliest,
        "checks": [
            f"{r['role']} {r['case']}: status {r['status']}, expected {r['expected_status']}"
            for r in results
            if r["status"] != r["expected_status"]
        ],
    }
    bench_run.finish(result, table)
    return 1 if result["checks"] else 0


def table(result: dict[str, Any]) -> None:
    print()
    print_table(
        ["role", "case", "mode", "status", "median s", "max s", "server CPU s", "PG CPU s", "KB"],
        [
            [r["role"], r["case"], r["mode"], r["status"], r["median_s"], r["max_s"],
             r["server_cpu_s"], r["postgres_cpu_s"], round(r["bytes"] / 1024, 1)]
            for r in result["cases"]
        ],
    )  # fmt: skip
    print()
    print_table(
        ["role", "costliest case", "median s", "aim s", "within"],
        [
            [k, v["case"], v["median_s"], v["aim_s"], v["within_aim"]]
            for k, v in result["costliest"].items()
        ],
    )


if __name__ == "__main__":
    sys.exit(main())
