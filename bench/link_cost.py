"""What linking costs ingest in the stores (issue #20): seconds per report, both stores.

Run from the repository root: ``python -m bench.link_cost [--reports N] [--seed S]``. Prints one
JSON object.

The reports are bench/links.py's (the benchmark's realistic reports on the Canada-US border, 20%
of groups reported again by a second monitor), submitted through ``submit_batch`` in arrival
order, in batches of ``--batch`` consecutive arrivals (one store call per key within a batch, as
each monitor's key posts its own).

- **SQLite** links in ingest's transaction: the time inside ``Linker.link`` against the rest of
  ``submit_batch`` (snapping, validation, insert, rollups), in the same run.
- **PostGIS** links after ingest (a trigger queues each snapped report; the folder's thread
  links it): ingest is timed on two fresh databases side by side, with the queueing trigger and
  with it disabled (what the acknowledgement pays), and then ``settle_links`` is timed (the
  background's work per report). The folder thread is off (``fold_interval_s=0``) so that it
  competes with nothing measured.

Surge detection is off in every run (``surges=False``): on a backfill such as this it costs far
more than everything else (docs/surges.md), and it is not what is measured here.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import psycopg

from bench.harness import fresh_postgis_database, libpq_url
from bench.links import EPOCH, Reports, make_reports
from bench.synthetic import DIRECTIONS, KINDS
from service.domain.link_model import EstimatedModel
from service.domain.reports import ReportDraft
from service.settings import Settings
from service.storage import open_store
from service.storage.base import Store
from service.storage.postgis.migrations import upgrade
from service.usecases.link_model import estimate_link_model, rescore_links
from service.usecases.segments import ensure_segments
from service.usecases.submit_reports import submit_batch


def arrivals(r: Reports, batch: int) -> Iterator[list[tuple[str, list[ReportDraft]]]]:
    """Batches of consecutive arrivals, each as (key, its drafts) parts."""
    order = np.argsort(r.received, kind="stable")
    for start in range(0, len(order), batch):
        parts: dict[str, list[ReportDraft]] = {}
        for i in order[start : start + batch]:
            draft = ReportDraft(
                id=uuid.UUID(int=int(i) + 1),
                observed_at=EPOCH + timedelta(seconds=float(r.t[i])),
                lon=float(r.lon[i]),
                lat=float(r.lat[i]),
                people_count=int(r.people[i]),
                kind=KINDS[r.kind[i]],
                direction=None if r.direction[i] < 0 else DIRECTIONS[r.direction[i]],
                accuracy_m=10.0,
                notes=None,
                device_id=None if r.device[i] < 0 else f"dev-{r.device[i]:05d}",
            )
            parts.setdefault(f"key-{r.key[i]}", []).append(draft)
        yield list(parts.items())


def ingest(store: Store, url: str, r: Reports, batch: int) -> float:
    """Seconds spent submitting every report."""
    index = ensure_segments(store, None)
    settings = Settings(database_url=url, surges=False)
    now = EPOCH + timedelta(days=1)
    spent = 0.0
    for parts in arrivals(r, batch):
        for key, drafts in parts:
            start = time.perf_counter()
            submit_batch(store, index, drafts, settings=settings, now=now, posted_by=key)
            spent += time.perf_counter() - start
    return spent


def timed_link(store: Any) -> Callable[[], float]:
    """Wrap the store's Linker.link with a clock; returns a reader of the seconds spent in it."""
    linker = store.linker
    inner = linker.link
    spent = [0.0]

    def link(*args: Any, **kwargs: Any) -> int:
        start = time.perf_counter()
        try:
            return int(inner(*args, **kwargs))
        finally:
            spent[0] += time.perf_counter() - start

    linker.link = link
    return lambda: spent[0]


def links_of(store: Store) -> int:
    from service.domain.links import LinkQuery

    total, query = 0, LinkQuery(limit=1000)
    while True:
        page = store.list_links(query)
        total += len(page.links)
        if page.next_key is None:
            return total
        query = LinkQuery(limit=1000, after=page.next_key)


def store_pairs(store: Store) -> list[tuple[int, int]]:
    """Every stored link as the two reports' bench indexes (ids are UUID(int=index + 1))."""
    from service.domain.links import LinkQuery

    out, query = [], LinkQuery(limit=1000)
    while True:
        page = store.list_links(query)
        out += [(k.a.int - 1, k.b.int - 1) for k in page.links]
        if page.next_key is None:
            return out
        query = LinkQuery(limit=1000, after=page.next_key)


@contextlib.contextmanager
def fresh_url(kind: str) -> Iterator[str]:
    """A fresh SQLite file or migrated PostGIS database (dropped afterwards)."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            yield f"sqlite:///{Path(tmp) / 'links.db'}"
        return
    with fresh_postgis_database() as url:
        upgrade(url)
        yield url


def store_model(
    r: Reports, *, sample: int, seed: int, kind: str = "sqlite", batch: int = 500
) -> tuple[EstimatedModel | None, dict[str, Any]]:
    """The reports ingested into a fresh store of ``kind`` in arrival order (linked as ingest
    links them, with DEFAULT_U and no crowding; PostGIS: linked by ``settle_links``, then
    ANALYZEd so that the sample reads pages), then ``crossings links estimate``'s work: the
    estimate the store keeps, and the store's links before and after rescoring under it."""
    from bench.links import pair_figures

    _, counts = np.unique(r.truth, return_counts=True)
    true_pairs = int((counts * (counts - 1) // 2).sum())

    def figures(pairs: list[tuple[int, int]]) -> dict[str, float]:
        tp = sum(1 for a, b in pairs if r.truth[a] == r.truth[b])
        return pair_figures(tp, len(pairs), true_pairs)

    with fresh_url(kind) as url:
        store = open_store(Settings(database_url=url, surges=False, rollup_fold_interval_ms=0))
        try:
            ingest_s = ingest(store, url, r, batch)
            if kind != "sqlite":
                store.settle_links()
                with psycopg.connect(libpq_url(url), autocommit=True) as conn:
                    conn.execute("ANALYZE reports")
            before = figures(store_pairs(store))
            start = time.perf_counter()
            found = estimate_link_model(store, sample_size=sample, now=datetime.now(UTC), seed=seed)
            estimate_s = time.perf_counter() - start
            start = time.perf_counter()
            rescored = rescore_links(store)
            rescore_s = time.perf_counter() - start
            after = figures(store_pairs(store))
        finally:
            store.close()
    return found.model, {
        "store": kind,
        "ingest_s": round(ingest_s, 1),
        "sampled_reports": len(found.sample.reports),
        "pairs": found.sample.pairs,
        "estimate_s": round(estimate_s, 2),
        "rescored_links": rescored,
        "rescore_s": round(rescore_s, 2),
        "store_links_before_estimate": before,
        "store_links_after_rescoring": after,
    }


def sqlite_run(r: Reports, batch: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'links.db'}"
        store = open_store(Settings(database_url=url, surges=False))
        try:
            linking = timed_link(store)
            total = ingest(store, url, r, batch)
            n = len(r)
            return {
                "ingest_s_per_report": total / n,
                "linking_s_per_report": linking() / n,
                "linking_share_of_ingest_without_it": linking() / (total - linking()),
                "links": links_of(store),
            }
        finally:
            store.close()


def postgis_run(r: Reports, batch: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with fresh_postgis_database() as with_trigger, fresh_postgis_database() as without:
        for url in (with_trigger, without):
            upgrade(url)
        with psycopg.connect(libpq_url(without), autocommit=True) as conn:
            conn.execute("ALTER TABLE reports DISABLE TRIGGER reports_link_pending")
        options = Settings(
            database_url=with_trigger, rollup_fold_interval_ms=0, surges=False
        ).store_options
        for name, url in (("ingest_without_queue", without), ("ingest_with_queue", with_trigger)):
            store = open_store(Settings(database_url=url, rollup_fold_interval_ms=0, surges=False))
            try:
                out[f"{name}_s_per_report"] = ingest(store, url, r, batch) / len(r)
            finally:
                store.close()
        store = open_store(options)
        try:
            linking = timed_link(store)
            start = time.perf_counter()
            settled = store.settle_links()
            out["settle_s_per_report"] = (time.perf_counter() - start) / len(r)
            out["linking_s_per_report"] = linking() / len(r)
            out["reports_linked"] = settled
            out["links"] = links_of(store)
        finally:
            store.close()
    out["queue_share_of_ingest"] = (
        out["ingest_with_queue_s_per_report"] / out["ingest_without_queue_s_per_report"] - 1
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reports", type=int, default=20_000, help="base reports (groups)")
    parser.add_argument("--seed", type=int, default=20261207)
    parser.add_argument("--batch", type=int, default=500, help="arrivals per batch")
    parser.add_argument("--stores", default="sqlite,postgis")
    args = parser.parse_args()
    r = make_reports(args.reports, seed=args.seed, dup_rate=0.2, hard_rate=0.0)
    result: dict[str, Any] = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "base_reports": args.reports,
        "reports": len(r),
        "batch": args.batch,
        "seed": args.seed,
    }
    for name in args.stores.split(","):
        result[name] = (sqlite_run if name == "sqlite" else postgis_run)(r, args.batch)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
