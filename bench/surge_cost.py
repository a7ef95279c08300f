"""What surge detection costs ingest (issue #19: aim <= 10% of ingest's time): the same realistic
reports stored twice side by side, detection on in one store and off in the other, on PostGIS and
SQLite, in alternating rounds (so that the machine's drift hits both alike).

Reports arrive as a live service gets them (in the order observed, a share of them days late);
each round submits a batch through the ingest use case (parse, snap, store) and, on PostGIS,
folds it into the rollups (where detection runs); the time of both is ingest's work for those
reports. The ratio on/off is what detection adds. In process, no HTTP: the server's framework
costs the same either way and would only dilute the ratio.

Run from the repository root::

    .venv/bin/python -m bench.surge_cost [--reports 50000] [--batch 500] [--stores postgis sqlite]
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.figures import machine_facts, print_table, write_results
from bench.harness import ADMIN_URL, fresh_postgis_database
from bench.synthetic import report_bodies
from service.api.schemas.reports import parse_report
from service.domain.errors import Problem
from service.domain.reports import ReportDraft
from service.settings import Settings
from service.storage import open_store
from service.storage.base import Store
from service.usecases.segments import ensure_segments
from service.usecases.submit_reports import submit_batch

SEED = 20_261_207


@contextmanager
def _store_url(kind: str, scratch: Path, name: str) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{scratch / name}.db"
        return
    from service.storage.postgis.migrations import upgrade

    with fresh_postgis_database(ADMIN_URL) as url:
        upgrade(url)
        yield url


def _drafts(bodies: list[dict[str, Any]]) -> list[ReportDraft]:
    out = []
    for body in bodies:
        draft = parse_report(body)
        assert not isinstance(draft, Problem), draft
        out.append(draft)
    return out


def arrival_order(
    drafts: list[ReportDraft], *, late_fraction: float, seed: int
) -> list[ReportDraft]:
    """As a live service receives them: in the order observed, but ``late_fraction`` of them
    (phones offline for a spell) arriving 1 to 10 days after they were observed."""
    rng = random.Random(seed)
    keyed = []
    for draft in drafts:
        at = draft.observed_at.timestamp()
        if rng.random() < late_fraction:
            at += rng.uniform(1, 10) * 86_400
        keyed.append((at, draft))
    return [draft for _, draft in sorted(keyed, key=lambda pair: pair[0])]


def within_days(drafts: list[ReportDraft], days: float) -> list[ReportDraft]:
    """The same reports observed over the last ``days`` instead of a year (their ages scaled):
    a service as busy as ``len(drafts) / days`` reports a day."""
    now = datetime.now(UTC)
    return [
        dataclasses.replace(d, observed_at=now - (now - d.observed_at) * (days / 365.0))
        for d in drafts
    ]


def run(kind: str, reports: int, batch: int, late_fraction: float, days: float) -> dict[str, Any]:
    drafts = arrival_order(
        within_days(_drafts(report_bodies(reports, seed=SEED)), days),
        late_fraction=late_fraction,
        seed=SEED,
    )
    batches = [drafts[i : i + batch] for i in range(0, len(drafts), batch)]
    seconds: dict[str, list[float]] = {"on": [], "off": []}
    with ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        opened: dict[str, tuple[Store, Any, Settings]] = {}
        for mode in ("on", "off"):
            url = stack.enter_context(_store_url(kind, scratch, mode))
            settings = Settings(database_url=url, surges=mode == "on")
            store = open_store(settings.store_options)
            stack.callback(store.close)
            opened[mode] = (store, ensure_segments(store, None), settings)
        for number, chunk in enumerate(batches):
            order = ("on", "off") if number % 2 == 0 else ("off", "on")
            for mode in order:
                store, index, settings = opened[mode]
                started = time.perf_counter()
                submit_batch(store, index, chunk, settings=settings, now=datetime.now(UTC))
                store.fold_rollups()
                seconds[mode].append(time.perf_counter() - started)
        alerts = {mode: len(opened[mode][0].list_alerts(_all_alerts()).alerts) for mode in opened}
    on, off = sum(seconds["on"]), sum(seconds["off"])
    per_batch = [a / b for a, b in zip(seconds["on"], seconds["off"], strict=True)]
    return {
        "store": kind,
        "reports": reports,
        "batch": batch,
        "late_fraction": late_fraction,
        "days": days,
        "reports_a_day": round(reports / days),
        "seconds_on": round(on, 3),
        "seconds_off": round(off, 3),
        "us_per_report_on": round(on / reports * 1e6, 1),
        "us_per_report_off": round(off / reports * 1e6, 1),
        "added_fraction": round(on / off - 1, 4),
        "median_batch_ratio": round(statistics.median(per_batch), 4),
        "alerts_raised": alerts,
    }


def _all_alerts() -> Any:
    from service.domain.alerts import AlertQuery

    return AlertQuery(limit=10_000)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.surge_cost", description=__doc__)
    parser.add_argument("--reports", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--stores", nargs="+", default=["postgis", "sqlite"])
    parser.add_argument(
        "--late", type=float, default=0.05, help="share of reports arriving 1-10 days late"
    )
    parser.add_argument(
        "--days",
        type=float,
        default=60.0,
        help="observed over this many days (reports/days a day: default 50,000 over 60 days,"
        " about 830 a day, 300,000 a year)",
    )
    args = parser.parse_args(argv)
    results = []
    for kind in args.stores:
        print(f"{kind} ...", file=sys.stderr)
        results.append(run(kind, args.reports, args.batch, args.late, args.days))
    machine = machine_facts(client_cores=None, server_cores=None)
    out = {"benchmark": "surge_cost", "machine": machine, "results": results}
    write_results("surge_cost", out)
    print_table(
        ["store", "reports", "a day", "µs/report on", "µs/report off", "added", "median on/off"],
        [
            [r["store"], r["reports"], r["reports_a_day"], r["us_per_report_on"],
             r["us_per_report_off"],
             f"{r['added_fraction']:+.1%}", r["median_batch_ratio"]]
            for r in results
        ],
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
