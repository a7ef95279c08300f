"""What only the SQLite store has: a file reopened, processes racing to write one file, the two
plans of a box (R*Tree or time order) at float32 edges, a closed store. The contract both stores
keep is test_store_contract.py."""

from __future__ import annotations

import math
import multiprocessing
import random
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any
from unittest import mock
from uuid import UUID

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.domain.errors import StoreUnavailable
from service.domain.reports import (
    IngestOutcome,
    Report,
)
from service.storage.sqlite import SqliteStore
from service.storage.sqlite import reports as report_queries
from tests.conftest import all_reports
from tests.factories import T0, make_report


def url_for(path: Path) -> str:
    return f"sqlite:///{path}"


# --- the file ---------------------------------------------------------------------------------


def test_reports_survive_reopening(tmp_path: Path) -> None:
    reports = [make_report(observed_at=T0 + timedelta(seconds=i)) for i in range(5)]
    first = SqliteStore.open(url_for(tmp_path / "crossings.db"))
    first.add_reports(reports)
    first.close()
    second = SqliteStore.open(url_for(tmp_path / "crossings.db"))
    try:
        assert all_reports(second) == reports
        assert all_reports(second, bbox=(25.0, 40.0, 27.0, 42.0)) == reports
        assert second.add_reports(reports[:1])[0].outcome is IngestOutcome.DUPLICATE
    finally:
        second.close()


# --- the two plans of a box ---------------------------------------------------------------------


def float32_neighbours(value: float) -> list[float]:
    """``value``, the doubles either side of it, and the float32 grid points around it."""
    nearest = np.float32(value)
    grid = [float(np.nextafter(nearest, np.float32(end))) for end in (-np.inf, np.inf)]
    around = [math.nextafter(value, -math.inf), value, math.nextafter(value, math.inf)]
    return [v for v in [*around, float(nearest), *grid] if -180.0 <= v <= 180.0]


@st.composite
def boxes_and_points(
    draw: st.DrawFn,
) -> tuple[tuple[float, float, float, float], list[tuple[float, float]]]:
    lons = sorted(draw(st.floats(-180.0, 180.0)) for _ in range(2))
    lats = sorted(draw(st.floats(-90.0, 90.0)) for _ in range(2))
    lon_edges = [v for edge in lons for v in float32_neighbours(edge)]
    lat_edges = [v for edge in lats for v in float32_neighbours(edge) if -90.0 <= v <= 90.0]
    lon = st.one_of(st.sampled_from(lon_edges), st.floats(-180.0, 180.0))
    lat = st.one_of(st.sampled_from(lat_edges), st.floats(-90.0, 90.0))
    points = draw(st.lists(st.tuples(lon, lat), max_size=40))
    return (lons[0], lats[0], lons[1], lats[1]), points


@pytest.mark.parametrize("rtree_max_rows", [report_queries.RTREE_MAX_ROWS, 0])
@settings(max_examples=60, deadline=None)
@given(case=boxes_and_points())
def test_bbox_matches_a_brute_force_filter_at_float32_edges(
    rtree_max_rows: int,
    case: tuple[tuple[float, float, float, float], list[tuple[float, float]]],
) -> None:
    """Both plans (through the R*Tree, or walking time order) give exactly the inclusive box."""
    bbox, points = case
    min_lon, min_lat, max_lon, max_lat = bbox
    reports = [make_report(lon=lon, lat=lat) for lon, lat in points]
    expected = {
        r.id
        for r in reports
        if min_lon <= r.draft.lon <= max_lon and min_lat <= r.draft.lat <= max_lat
    }
    with (
        tempfile.TemporaryDirectory() as tmp,
        mock.patch.object(report_queries, "RTREE_MAX_ROWS", rtree_max_rows),
    ):
        store = SqliteStore.open(url_for(Path(tmp) / "bbox.db"))
        try:
            store.add_reports(reports)
            found = {r.id for r in all_reports(store, bbox=bbox)}
        finally:
            store.close()
    assert found == expected


# --- life cycle -----------------------------------------------------------------------------


def test_closed_store_is_unavailable(tmp_path: Path) -> None:
    closed = SqliteStore.open(url_for(tmp_path / "crossings.db"))
    closed.close()
    with pytest.raises(StoreUnavailable):
        closed.ping()
    with pytest.raises(StoreUnavailable):
        closed.add_reports([make_report()])


# --- processes racing on one file -----------------------------------------------------------


WRITER_IDS = 400


def shared_report(number: int) -> Report:
    """The same report in every process, so that writers replay each other's submissions."""
    return make_report(
        id=UUID(int=number + 1),
        observed_at=T0 + timedelta(seconds=number),
        lon=26.0 + number / 1000,
        received_at=T0,
    )


def write_shared_reports(
    url: str, seed: int, start: Any, results: multiprocessing.Queue[dict[str, int]]
) -> None:
    """Submit every shared report twice, in a shuffled order, in batches; report the outcomes."""
    start.wait()
    try:
        store = SqliteStore.open(url)
    except BaseException:
        results.put({"failed": 1})
        raise
    try:
        order = list(range(WRITER_IDS)) * 2
        random.Random(seed).shuffle(order)
        counts = dict.fromkeys(IngestOutcome, 0)
        for begin in range(0, len(order), 40):
            batch = [shared_report(n) for n in order[begin : begin + 40]]
            for submitted, result in zip(batch, store.add_reports(batch), strict=True):
                counts[result.outcome] += 1
                assert result.report == submitted
        results.put({str(outcome): count for outcome, count in counts.items()})
    except BaseException:
        results.put({"failed": 1})
        raise
    finally:
        store.close()


def test_processes_writing_the_same_ids_store_each_once(tmp_path: Path) -> None:
    """Several processes open one new file at once and race to write the same ids."""
    url = url_for(tmp_path / "shared.db")
    context = multiprocessing.get_context("spawn")
    writers = 3
    start = context.Barrier(writers)
    results: multiprocessing.Queue[dict[str, int]] = context.Queue()
    processes = [
        context.Process(target=write_shared_reports, args=(url, seed, start, results))
        for seed in range(writers)
    ]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(timeout=30)
        assert process.exitcode == 0
    results.close()
    results.join_thread()

    assert not any("failed" in o for o in outcomes), "a writer failed: see its traceback above"
    assert sum(o["created"] for o in outcomes) == WRITER_IDS
    assert sum(o["conflict"] for o in outcomes) == 0
    assert sum(sum(o.values()) for o in outcomes) == writers * 2 * WRITER_IDS
    store = SqliteStore.open(url)
    try:
        assert all_reports(store) == [shared_report(n) for n in range(WRITER_IDS)]
    finally:
        store.close()
