"""Surge detection in the stores (issue #19), on both: what counting reports in does to the
series (incremental equals a replay of the day counts), a quiet spell closes an open episode,
a replay after a border change closes alerts whose series are gone, and concurrent writers
raise each episode once."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from service.api.schemas.reports import parse_report
from service.domain.alerts import AlertQuery, AlertState
from service.domain.errors import Problem
from service.domain.reports import ReportDraft
from service.domain.segments import SegmentIndex
from service.settings import Settings
from service.storage import open_store
from service.storage.base import Store
from service.usecases.segments import ensure_segments, replace_border
from service.usecases.submit_reports import submit_batch
from tests.factories import report_body

TODAY = datetime.now(UTC).date()


@pytest.fixture
def opened(fresh_url: str) -> Iterator[tuple[str, Store, SegmentIndex]]:
    store = open_store(Settings(database_url=fresh_url))
    try:
        yield fresh_url, store, ensure_segments(store, None)
    finally:
        store.close()


def _at(day: date, hour: int = 12) -> str:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC).isoformat()


def _drafts(bodies: list[dict[str, Any]]) -> list[ReportDraft]:
    drafts = [parse_report(body) for body in bodies]
    assert not any(isinstance(d, Problem) for d in drafts)
    return drafts  # type: ignore[return-value]


def _submit(url: str, store: Store, index: SegmentIndex, bodies: list[dict[str, Any]]) -> None:
    submit_batch(
        store, index, _drafts(bodies), settings=Settings(database_url=url), now=datetime.now(UTC)
    )
    store.fold_rollups()  # PostGIS: what the maintainer thread would do within 100 ms


def _open(store: Store) -> list[Any]:
    return store.list_alerts(AlertQuery(state=AlertState.OPEN, limit=1000)).alerts


def _quiet_then_surge(days_ago: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    surge_day = TODAY - timedelta(days=days_ago)
    quiet = [report_body(observed_at=_at(surge_day - timedelta(days=d))) for d in range(56, 0, -1)]
    surge = [report_body(observed_at=_at(surge_day, 1 + i % 20)) for i in range(40)]
    return quiet, surge


def test_a_quiet_spell_closes_the_episode_a_surge_opened(
    opened: tuple[str, Store, SegmentIndex],
) -> None:
    url, store, index = opened
    quiet, surge = _quiet_then_surge(days_ago=40)
    _submit(url, store, index, quiet)
    assert _open(store) == []
    _submit(url, store, index, surge)
    raised = _open(store)
    assert raised and all(a.opened_day == TODAY - timedelta(days=40) for a in raised)
    # Nothing since: moving the series on through yesterday closes them.
    changed = store.advance_surges(TODAY - timedelta(days=1))
    assert {a.id for a in changed} >= {a.id for a in raised}
    assert _open(store) == []
    assert store.advance_surges(TODAY - timedelta(days=1)) == []  # done once


def test_incremental_detection_equals_a_replay_of_the_day_counts(
    opened: tuple[str, Store, SegmentIndex],
) -> None:
    url, store, index = opened
    quiet, surge = _quiet_then_surge(days_ago=10)
    # In arrival order unlike observation order: the surge first, then the history (late).
    _submit(url, store, index, surge[:20])
    _submit(url, store, index, quiet[::2])
    _submit(url, store, index, surge[20:] + quiet[1::2])
    incremental = _states(url)
    alerts_before = {(a.id, a.state) for a in _open(store)}
    store.rebuild_surges(TODAY)  # the same border: the replay must find the same states
    assert _states(url) == incremental
    assert {(a.id, a.state) for a in _open(store)} == alerts_before
    assert alerts_before  # the surge is there either way


def _states(url: str) -> dict[str, Any]:
    """Each series' state as detection reads it. The oldest held day is the anchor the horizon's
    re-runs start from: only its statistic counts (its own count and baseline are those of when
    it was computed, which history arriving later than the horizon does not redo)."""
    if url.startswith("sqlite"):
        import sqlite3

        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            rows = conn.execute("SELECT series, state FROM surge_series").fetchall()
    else:
        import psycopg

        with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://", 1)) as pg:
            rows = pg.execute("SELECT series, state FROM surge_series").fetchall()
    states = {series: json.loads(state) for series, state in rows}
    for state in states.values():
        anchor = state["days"][0]
        state["days"][0] = {k: anchor[k] for k in ("statistic", "episode")}
    return states


def test_concurrent_writers_raise_each_episode_once(
    opened: tuple[str, Store, SegmentIndex],
) -> None:
    url, store, index = opened
    quiet, surge = _quiet_then_surge(days_ago=5)
    _submit(url, store, index, quiet)
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda i: _submit(url, store, index, surge[i::4]), range(4)))
    raised = _open(store)
    keys = [(a.series, a.opened_day) for a in raised]
    assert raised and len(keys) == len(set(keys))
    assert all(a.opened_day == TODAY - timedelta(days=5) for a in raised)


def test_a_new_border_replays_the_series_and_closes_alerts_on_series_gone(
    opened: tuple[str, Store, SegmentIndex],
) -> None:
    url, store, index = opened
    quiet, surge = _quiet_then_surge(days_ago=3)
    _submit(url, store, index, quiet + surge)
    raised = _open(store)
    assert any(a.series.segment_id == "CA-US-0208" for a in raised)
    # The same border without Roxham Road's segment: its reports snap to a neighbour (or none),
    # so CA-US-0208's series are gone and its alerts close; the border's own series stays.
    kept = [s for s in index.segments if s.segment_id != "CA-US-0208"]
    replace_border(store, SegmentIndex(kept), max_distance_m=Settings().max_snap_distance_m)
    still = _open(store)
    assert not any(a.series.segment_id == "CA-US-0208" for a in still)
    closed = store.list_alerts(AlertQuery(state=AlertState.CLOSED, limit=1000)).alerts
    assert {a.id for a in raised if a.series.segment_id == "CA-US-0208"} <= {a.id for a in closed}
    border_wide = [a for a in still if a.series.section is None and a.series.segment_id is None]
    assert border_wide, "the border's series counts the same reports and stays raised"
