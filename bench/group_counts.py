"""What counting groups (issue #20: ``groups`` and ``people_est``) costs analysts' aggregates.

Run from the repository root::

    python -m bench.group_counts build --reports 20000 --db crossings_linkrel_gc   # load + link
    python -m bench.group_counts time --db crossings_linkrel_gc --rounds 5         # time cases
    python -m bench.group_counts drop --db crossings_linkrel_gc

``build`` makes a PostGIS database (or, with ``--sqlite PATH``, an SQLite file) and submits
bench/links.py's reports (the benchmark's realistic reports on the Canada-US border, 20% of
groups reported again by a second monitor) through ``submit_batch`` in arrival order, one call
per key per 500 arrivals (bench/link_cost.py), then links what is pending (``settle_links``).
``time`` asks ``usecases.aggregates.aggregate`` each case ``--repeat`` times and prints, per case,
the median wall time, the least client CPU time and (PostGIS) the least execution time of its
counting statement (EXPLAIN ANALYZE), as JSON.

The script uses only what both the code before groups and the code with them offer, so the same
file times either: to compare, build one database with each code (a copy of the earlier tree run
with PYTHONPATH pointing at it) and alternate ``time`` runs (docs/linking.md, "Cost").
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

from bench.harness import ADMIN_URL, postgis_url
from bench.link_cost import ingest
from bench.links import make_reports
from service.settings import Settings
from service.storage import open_store
from service.storage.postgis.migrations import upgrade
from service.usecases.aggregates import AggregateRequest, aggregate
from service.usecases.segments import ensure_segments


def _url(args: argparse.Namespace) -> str:
    if args.sqlite:
        return f"sqlite:///{args.sqlite}"
    return postgis_url(ADMIN_URL, args.db)


def build(args: argparse.Namespace) -> None:
    if not args.sqlite:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{args.db}"')
        with psycopg.connect(ADMIN_URL.rsplit("/", 1)[0] + f"/{args.db}", autocommit=True) as c:
            c.execute("CREATE EXTENSION IF NOT EXISTS postgis")
        upgrade(_url(args))
    url = _url(args)
    store = open_store(Settings(database_url=url, rollup_fold_interval_ms=0, surges=False))
    try:
        reports = make_reports(args.reports, seed=args.seed, dup_rate=0.2, hard_rate=0.0)
        ingest(store, url, reports, 500)
        store.settle_links()
        print(json.dumps({"url": url, "reports": len(reports)}))
    finally:
        store.close()


def cases(observed: tuple[datetime, datetime], busiest: str) -> dict[str, AggregateRequest]:
    first, last = observed
    year_start = last - timedelta(days=365)
    return {
        "segment_month": AggregateRequest(group_by=("segment",), bucket="month"),
        "segment_month_st_johns": AggregateRequest(
            group_by=("segment",), bucket="month", zone=ZoneInfo("America/St_Johns")
        ),
        "segment_days": AggregateRequest(
            bucket="day",
            start=max(first, year_start) + timedelta(hours=5, minutes=17),
            end=last,
            segment_ids=frozenset({busiest}),
        ),
        "region_week_bbox": AggregateRequest(
            group_by=("region",),
            bucket="week",
            zone=ZoneInfo("America/Toronto"),
            bbox=(-75.5, 44.0, -71.5, 46.0),
        ),
    }


def _statement_of(store: Any, index: Any, request: AggregateRequest) -> tuple[str, Any]:
    """The counting statement (and its parameters) that ``aggregate`` sends for ``request``
    (PostGIS), caught on its way to psycopg."""
    caught: dict[str, Any] = {}
    real = psycopg.Cursor.execute

    def execute(self: Any, query: Any, params: Any = None, **kwargs: Any) -> Any:
        if isinstance(query, str) and "sum(sign * reports)" in query:
            caught["sql"], caught["params"] = query, params
        return real(self, query, params, **kwargs)

    psycopg.Cursor.execute = execute  # type: ignore[method-assign]
    try:
        aggregate(store, index, request)
    finally:
        psycopg.Cursor.execute = real  # type: ignore[method-assign]
    return caught["sql"], caught["params"]


def time_cases(args: argparse.Namespace) -> None:
    """Per case: the median wall time of ``aggregate``, the least client CPU time of it, and
    (PostGIS) the least EXPLAIN ANALYZE execution time of its counting statement, over
    ``--repeat`` runs each (least: the machine's load only ever adds)."""
    url = _url(args)
    store = open_store(Settings(database_url=url, rollup_fold_interval_ms=0, surges=False))
    try:
        store.fold_rollups()  # what the folder thread does: the rollups hold every report
        index = ensure_segments(store, None)
        observed = store.observed_range()
        assert observed is not None
        whole = aggregate(store, index, AggregateRequest(group_by=("segment",)))
        busiest = max(whole.rows, key=lambda row: row.figure.reports or 0).group[0]
        assert busiest is not None
        chosen = cases(observed, busiest)
        out: dict[str, Any] = {"url": url, "at": datetime.now(UTC).isoformat(), "cases": {}}
        for name, request in chosen.items():
            aggregate(store, index, request)  # warm
            wall, cpu = [], []
            for _ in range(args.repeat):
                start, start_cpu = time.perf_counter(), time.process_time()
                aggregate(store, index, request)
                cpu.append((time.process_time() - start_cpu) * 1000)
                wall.append((time.perf_counter() - start) * 1000)
            case = {
                "wall_ms_median": round(statistics.median(wall), 2),
                "client_cpu_ms_min": round(min(cpu), 2),
            }
            if not args.sqlite:
                sql, params = _statement_of(store, index, request)
                with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as c:
                    times = []
                    for _ in range(args.repeat):
                        plan = c.execute("EXPLAIN (ANALYZE, TIMING OFF) " + sql, params)
                        line = next(r[0] for r in plan if r[0].startswith("Execution Time"))
                        times.append(float(line.split()[2]))
                case["statement_ms_min"] = min(times)
            out["cases"][name] = case
        print(json.dumps(out))
    finally:
        store.close()


def drop(args: argparse.Namespace) -> None:
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{args.db}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("action", choices=["build", "time", "drop"])
    parser.add_argument("--db", default="crossings_bench_group_counts")
    parser.add_argument("--sqlite", default=None, help="an SQLite file instead of PostGIS")
    parser.add_argument("--reports", type=int, default=20_000, help="base reports (groups)")
    parser.add_argument("--seed", type=int, default=20261207)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    {"build": build, "time": time_cases, "drop": drop}[args.action](args)


if __name__ == "__main__":
    main()
