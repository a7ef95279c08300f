"""Surge detection in the transaction that counts reports, on SQLite (issue #19, schema step 8):
ingest and deletion count their reports into the day rollups in their own write transaction, and
detect in it too (see postgis/surges.py for the same on PostGIS)."""

from __future__ import annotations

import json
import sqlite3
from collections import defaultdict
from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta

import orjson

from service.domain.alerts import Alert, AlertQuery, AlertState, every_alert
from service.domain.surges.series import KEEP_DAYS, SeriesState, state_from_dict, state_to_dict
from service.domain.surges.watch import (
    SeriesChange,
    Watch,
    advance_open,
    close_orphans,
    detect_days,
    replay_all,
    series_key_of,
    series_key_text,
    transitions,
)
from service.storage.sqlite import alerts
from service.storage.sqlite.rows import from_micros, to_micros
from service.storage.surge_cache import SeriesCache, new_token

_DAYS = """
    SELECT period, segment_id, kind, sum(reports), sum(people) FROM count_days
    WHERE period IN (SELECT value FROM json_each(?)) AND segment_id <> '' GROUP BY 1, 2, 3
"""
_STATES = "SELECT series, state FROM surge_series WHERE series IN (SELECT value FROM json_each(?))"
_SINCE = """
    SELECT period, segment_id, kind, sum(reports), sum(people) FROM count_days
    WHERE period >= ? AND segment_id <> '' GROUP BY 1, 2, 3
"""
_SAVE = (
    "INSERT INTO surge_series (series, state, updated_at) VALUES (?, ?, ?)"
    " ON CONFLICT (series) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at"
)

_TOKEN = "SELECT token FROM surge_token"
_NEW_TOKEN = "UPDATE surge_token SET token = ?"

_OPEN = AlertQuery(state=AlertState.OPEN, limit=1000)


def detect(
    conn: sqlite3.Connection,
    touched: Mapping[date, set[tuple[str, str]]],
    watch: Watch,
    *,
    cache: SeriesCache,
    now: datetime | None = None,
) -> list[Alert]:
    """Observe each touched day's whole count in every series it touched; store the states and
    the alerts (in the caller's write transaction); the alerts that changed. The states come
    from ``cache`` while the stored token is its own (surge_cache.py), else from the file."""
    now = now or datetime.now(UTC)
    token = conn.execute(_TOKEN).fetchone()
    cache.check(None if token is None else int(token[0]))

    def day_rows(days: list[date]) -> dict[date, list[tuple[str, str, int, int]]]:
        starts = json.dumps([to_micros(datetime.combine(day, time(), tzinfo=UTC)) for day in days])
        out: dict[date, list[tuple[str, str, int, int]]] = defaultdict(list)
        for period, segment_id, kind, n, people in conn.execute(_DAYS, (starts,)):
            out[from_micros(period).date()].append((segment_id, kind, int(n), int(people)))
        return out

    def states(keys: set[str]) -> dict[str, SeriesState]:
        found, missing = cache.known(keys)
        if missing:
            rows = conn.execute(_STATES, (json.dumps(list(missing)),)).fetchall()
            read = {series: state_from_dict(orjson.loads(state)) for series, state in rows}
            cache.read(missing, read)
            found.update(read)
        return found

    changes = detect_days(touched, watch, day_rows=day_rows, states=states)
    if changes:
        token = cache.wrote({series_key_text(c.key): c.state for c in changes})
        _save(conn, changes, now, token=token)
    return alerts.record_alerts(conn, transitions(changes, at=now), now=now)


def advance(conn: sqlite3.Connection, watch: Watch, through: date, *, now: datetime) -> list[Alert]:
    """Close the quiet days up to ``through`` of the series with an open episode (their
    episodes may close); the alerts that changed."""
    rows = conn.execute("SELECT series, state FROM surge_series").fetchall()
    states = {series_key_of(series): state_from_dict(json.loads(state)) for series, state in rows}
    changes = advance_open(states, through, watch.params)
    if changes:
        _save(conn, changes, now, token=new_token())
    return alerts.record_alerts(conn, transitions(changes, at=now), now=now)


def rebuild(conn: sqlite3.Connection, watch: Watch, today: date, *, now: datetime) -> list[Alert]:
    """Every series replayed from the day counts of the days its state keeps (after a border
    change: its series are not the old ones); alerts whose episode is gone are closed."""
    first = today - timedelta(days=KEEP_DAYS - 1)
    days: dict[date, list[tuple[str, str, int, int]]] = defaultdict(list)
    start = to_micros(datetime.combine(first, time(), tzinfo=UTC))
    for period, segment_id, kind, n, people in conn.execute(_SINCE, (start,)):
        days[from_micros(period).date()].append((segment_id, kind, int(n), int(people)))
    changes = replay_all(days, watch, first_day=first, last_day=today)
    conn.execute("DELETE FROM surge_series")
    _save(conn, changes, now, token=new_token())
    opened = every_alert(lambda query: alerts.list_alerts(conn, query=query), _OPEN)
    closing = close_orphans(opened, changes, day=today, at=now)
    return alerts.record_alerts(conn, transitions(changes, at=now) + closing, now=now)


def _save(
    conn: sqlite3.Connection, changes: list[SeriesChange], at: datetime, *, token: int
) -> None:
    """Store the changed states and the surge token that vouches for them: the writer's
    cache's (detect), or a token no cache holds (advance, rebuild)."""
    conn.execute(_NEW_TOKEN, (token,))
    conn.executemany(
        _SAVE,
        [
            (series_key_text(c.key), orjson.dumps(state_to_dict(c.state)).decode(), to_micros(at))
            for c in changes
        ],
    )
