"""Surge detection in the stores (issue #19), on both: what counting reports in does to the
series (incremental equals a replay of the day counts), a quiet spell closes an open episode,
a replay after a border change closes alerts whose series are gone, and concurrent writers
raise each episode once."""

from __future__ import annotations

import functools
import random
import tempfile
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from service.api.schemas.reports import parse_report
from service.domain.alerts import AlertQuery, AlertState
from service.domain.errors import Problem
from service.domain.reports import ReportDraft
from service.domain.segments import BorderSegment, SegmentIndex
from service.domain.surges import state_to_dict
from service.domain.surges.series import state_from_bytes
from service.resources import bundled_segments_path
from service.settings import Settings
from service.storage import open_store
from service.storage.base import Store
from service.usecases.segments import ensure_segments, read_segment_file, replace_border
from service.usecases.submit_reports import submit_batch
from tests.conftest import fresh_postgis_database
from tests.factories import ROXHAM_ROAD, report_body

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


def test_states_stored_as_json_before_0018_are_read_and_packed_when_written(
    opened: tuple[str, Store, SegmentIndex],
) -> None:
    # The states a store wrote before migration 0018 (SQLite: before the packed states) are JSON
    # text; the migration keeps them (as bytes on PostGIS) and detection reads them as they were.
    url, store, index = opened
    quiet, surge = _quiet_then_surge(days_ago=40)
    _submit(url, store, index, quiet + surge)
    raised = {a.id for a in _open(store)}
    assert raised
    packed = _states(url)
    _rewrite_as_json(url)
    store.close()
    store = open_store(Settings(database_url=url))  # nothing cached: reads the JSON
    try:
        assert _states(url) == packed
        assert {a.id for a in _open(store)} == raised
        changed = store.advance_surges(TODAY - timedelta(days=1))  # reads the open ones
        assert {a.id for a in changed} >= raised
        assert _open(store) == []
        assert all(raw[:1] == b"\x01" for raw in _raw_states(url).values() if raw[:1] != b"{")
        assert any(raw[:1] == b"\x01" for raw in _raw_states(url).values())
    finally:
        store.close()


def _raw_states(url: str) -> dict[str, bytes]:
    if url.startswith("sqlite"):
        import sqlite3

        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            rows = conn.execute("SELECT series, state FROM surge_series").fetchall()
    else:
        import psycopg

        with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://", 1)) as pg:
            rows = pg.execute("SELECT series, state FROM surge_series").fetchall()
    return {s: state.encode() if isinstance(state, str) else bytes(state) for s, state in rows}


def _rewrite_as_json(url: str) -> None:
    """Every stored state as the JSON text the stores wrote before migration 0018."""
    texts = {
        series: orjson.dumps(state_to_dict(state_from_bytes(raw))).decode()
        for series, raw in _raw_states(url).items()
    }
    if url.startswith("sqlite"):
        import sqlite3

        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            conn.executemany(
                "UPDATE surge_series SET state = ? WHERE series = ?",
                [(text, series) for series, text in texts.items()],
            )
    else:
        import psycopg

        with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://", 1)) as pg:
            for series, text in texts.items():
                pg.execute(
                    "UPDATE surge_series SET state = convert_to(%s, 'UTF8') WHERE series = %s",
                    (text, series),
                )
    assert all(raw[:1] == b"{" for raw in _raw_states(url).values())


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
    states = {
        series: state_to_dict(state_from_bytes(raw)) for series, raw in _raw_states(url).items()
    }
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


@functools.cache
def _near_roxham_road() -> tuple[BorderSegment, ...]:
    """The bundled segments within ~40 km of Roxham Road (several, in more than one region
    where the border has them): a small border that loads in a moment."""
    segments = read_segment_file(bundled_segments_path()).segments
    lon, lat = ROXHAM_ROAD
    near = [
        s
        for s in segments
        if min(abs(x - lon) + abs(y - lat) for x, y in s.coords) < 0.5  # degrees, roughly
    ]
    assert len(near) >= 3
    return tuple(near)


@contextmanager
def _empty_store_url(kind: str) -> Iterator[str]:
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            yield f"sqlite:///{folder}/surges.db"
    else:
        with fresh_postgis_database() as url:
            yield url


@settings(
    max_examples=4,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],  # shrinking takes many minutes
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(order=st.randoms(use_true_random=False), chunks=st.integers(2, 9), deleting=st.booleans())
def test_detection_kept_in_memory_equals_reading_every_state_and_a_replay(
    store_url: str, order: random.Random, chunks: int, deleting: bool
) -> None:
    """Two store processes on one database, each keeping the series states in memory, take the
    reports of four weeks in a random order and chunks (and delete some): every alert (all its
    versions' figures) and every state are those of a store reading every state from the
    database at each step. Without deletions, they are also what a replay of the day counts
    (rebuild_surges) gives. (With them, not always: a series whose first report is deleted keeps
    its first day, where a replay starts the series at its first report left.)"""
    kind = "sqlite" if store_url.startswith("sqlite") else "postgis"
    surge_day = TODAY - timedelta(days=order.randint(1, 6))
    bodies = [
        report_body(observed_at=_at(TODAY - timedelta(days=d), order.randint(0, 23)), kind=k)
        for d in range(27, 0, -1)
        for k in ("crossing", "crossing", "attempt")[: order.randint(0, 3)]
    ] + [
        report_body(observed_at=_at(surge_day, 1 + i % 20), kind=("crossing", "attempt")[i % 2])
        for i in range(order.randint(20, 40))
    ]
    order.shuffle(bodies)
    cut = sorted(order.sample(range(1, len(bodies)), chunks - 1))
    steps: list[tuple[int, list[dict[str, Any]] | str]] = [
        (order.randrange(2), bodies[start:stop])
        for start, stop in zip([0, *cut], [*cut, len(bodies)], strict=True)
    ]
    if deleting:
        steps += [(order.randrange(2), b["id"]) for b in order.sample(bodies, len(bodies) // 8)]
    steps.append((order.randrange(2), []))  # a fold after the deletions
    index = SegmentIndex(list(_near_roxham_road()))
    with _empty_store_url(kind) as kept, _empty_store_url(kind) as cold:
        processes = [open_store(Settings(database_url=kept)) for _ in range(2)]
        try:
            replace_border(processes[0], index, max_distance_m=Settings().max_snap_distance_m)
            with _opened(cold) as store:
                replace_border(store, index, max_distance_m=Settings().max_snap_distance_m)
            for who, step in steps:
                _step(kept, processes[who], index, step)
                with _opened(cold) as store:  # a new process each time: every state read
                    _step(cold, store, index, step)
            states, alerts = _states(kept), _alerts(processes[0])
            assert states == _states(cold)
            with _opened(cold) as store:
                assert alerts == _alerts(store)
            if not deleting:
                figures = _open_figures(processes[0])
                processes[1].rebuild_surges(TODAY)
                assert _states(kept) == states
                assert _open_figures(processes[0]) == figures
        finally:
            for process in processes:
                process.close()


@contextmanager
def _opened(url: str) -> Iterator[Store]:
    store = open_store(Settings(database_url=url))
    try:
        yield store
    finally:
        store.close()


def _step(url: str, store: Store, index: SegmentIndex, step: list[dict[str, Any]] | str) -> None:
    if isinstance(step, str):
        assert store.delete_report(uuid.UUID(step))
    else:
        _submit(url, store, index, step)


def _alerts(store: Store) -> list[tuple[Any, ...]]:
    every = store.list_alerts(AlertQuery(limit=1000)).alerts
    return sorted((a.id, a.state, a.version, a.series, a.opened_day, a.figures) for a in every)


def _open_figures(store: Store) -> set[tuple[Any, ...]]:
    return {(a.id, a.series, a.opened_day, a.figures) for a in _open(store)}


@pytest.mark.postgis
def test_migration_0021_leaves_room_for_states_updated_in_place_and_downgrades_cleanly() -> None:
    """0021 sets surge_series' fillfactor to 50 (updates of a state can stay on its page); its
    downgrade resets it, and an upgrade sets it again."""
    import psycopg

    from alembic import command
    from service.storage.postgis.migrations import alembic_config, upgrade
    from tests.conftest import ADMIN_URL, _postgis_unavailable

    try:
        psycopg.connect(ADMIN_URL, connect_timeout=5).close()
    except psycopg.OperationalError as error:
        _postgis_unavailable(str(error).strip())

    def options(url: str) -> list[str] | None:
        with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://", 1)) as conn:
            row = conn.execute(
                "SELECT reloptions FROM pg_class WHERE relname = 'surge_series'"
            ).fetchone()
            assert row is not None
            return row[0]  # type: ignore[no-any-return]

    with fresh_postgis_database() as url:
        assert options(url) == ["fillfactor=50"]
        command.downgrade(alembic_config(url), "0020")
        assert options(url) is None
        upgrade(url, "head")
        assert options(url) == ["fillfactor=50"]
