"""Move reports between stores (a laptop's SQLite into the central PostGIS): export every report
in a stable order, import them exactly once by id, re-snapped to the target's border."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from itertools import islice

from service.domain.queries import ReportQuery
from service.domain.reports import IngestOutcome, Report
from service.domain.segments import SegmentIndex
from service.domain.snapping import snap
from service.storage.base import ReportStore

EXPORT_PAGE = 2_000
IMPORT_BATCH = 1_000


def export_reports(store: ReportStore, query: ReportQuery | None = None) -> Iterator[Report]:
    """Every report matching ``query``, page by page in (observed_at, id) order."""
    query = replace(query or ReportQuery(), limit=EXPORT_PAGE, after=None)
    while True:
        page = store.query_reports(query)
        yield from page.reports
        if page.next_key is None:
            return
        query = replace(query, after=page.next_key)


def import_reports(
    store: ReportStore,
    index: SegmentIndex,
    reports: Iterable[Report],
    *,
    max_distance_m: float,
    progress: Callable[[Counter[str]], None] | None = None,
) -> Counter[str]:
    """Store each report once, keeping its received_at; counts by outcome.

    Reports are snapped again to the target's border, so a store never mixes two versions of it.
    A report already there with the same content is a duplicate; with other content, a conflict
    (kept as it is in the target, and counted).
    """
    counts: Counter[str] = Counter()
    iterator = iter(reports)
    while batch := list(islice(iterator, IMPORT_BATCH)):
        snaps = snap(
            [r.draft.lon for r in batch],
            [r.draft.lat for r in batch],
            index,
            max_distance_m=max_distance_m,
        )
        fresh = [replace(r, snap=s) for r, s in zip(batch, snaps, strict=True)]
        for result in store.add_reports(fresh):
            counts[result.outcome.value] += 1
        if progress is not None:
            progress(counts)
    for outcome in IngestOutcome:
        counts.setdefault(outcome.value, 0)
    return counts
