"""Surge detection in the transaction that counts reports, on SQLite (issue #19, schema step 8):
ingest and deletion count their reports into the day rollups in their own write transaction, and
detect in it too. What detection does is storage/surges.py's, for both stores; this is SQLite's
SQL for it (``Tables``; postgis/surges.py is the same on PostGIS)."""

from __future__ import annotations

import json
import sqlite3
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, time

from service.domain.alerts import Alert, AlertPage, AlertQuery, AlertTransition, SeriesKey
from service.domain.surges.series import SeriesState, state_from_bytes, state_to_bytes
from service.domain.surges.watch import SeriesChange, Watch, series_key_of, series_key_text
from service.storage import surges
from service.storage.sqlite import alerts
from service.storage.sqlite.rows import from_micros, to_micros
from service.storage.surge_cache import SeriesCache

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


class Tables:
    """surges.SurgeTables over ``conn``, in its write transaction."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def token(self) -> int | None:
        token = self.conn.execute(_TOKEN).fetchone()
        return None if token is None else int(token[0])

    def day_rows(self, days: list[date]) -> surges.DayRows:
        starts = json.dumps([to_micros(datetime.combine(day, time(), tzinfo=UTC)) for day in days])
        return _by_day(self.conn.execute(_DAYS, (starts,)))

    def token_and_day_rows(self, days: list[date]) -> tuple[int | None, surges.DayRows]:
        return self.token(), self.day_rows(days)

    def days_since(self, first: date) -> surges.DayRows:
        start = to_micros(datetime.combine(first, time(), tzinfo=UTC))
        return _by_day(self.conn.execute(_SINCE, (start,)))

    def states(self, keys: set[str]) -> dict[str, SeriesState]:
        rows = self.conn.execute(_STATES, (json.dumps(list(keys)),)).fetchall()
        return {series: state_from_bytes(state) for series, state in rows}

    def open_states(self) -> dict[SeriesKey, SeriesState]:
        rows = self.conn.execute("SELECT series, state FROM surge_series").fetchall()
        return {series_key_of(series): state_from_bytes(state) for series, state in rows}

    def save(self, changes: Sequence[SeriesChange], at: datetime, *, token: int) -> None:
        """The changed states, and the token that vouches for them."""
        # Packed (series.state_to_bytes: ~1.5 KB against ~5 KB of JSON), as a BLOB in the TEXT
        # column; states written as JSON text before it are still read (state_from_bytes).
        self.conn.execute(_NEW_TOKEN, (token,))
        self.conn.executemany(
            _SAVE,
            [
                (
                    series_key_text(c.key),
                    state_to_bytes(c.state),
                    to_micros(at),
                )
                for c in changes
            ],
        )

    def clear(self) -> None:
        self.conn.execute("DELETE FROM surge_series")

    def list_alerts(self, query: AlertQuery) -> AlertPage:
        return alerts.list_alerts(self.conn, query=query)

    def record_alerts(self, changed: list[AlertTransition], now: datetime) -> list[Alert]:
        return alerts.record_alerts(self.conn, changed, now=now)


def detect(
    conn: sqlite3.Connection,
    touched: Mapping[date, set[tuple[str, str]]],
    watch: Watch,
    *,
    cache: SeriesCache,
    now: datetime | None = None,
) -> list[Alert]:
    """surges.detect in the caller's write transaction."""
    return surges.detect(Tables(conn), touched, watch, cache=cache, now=now)


def advance(conn: sqlite3.Connection, watch: Watch, through: date, *, now: datetime) -> list[Alert]:
    """surges.advance in the caller's write transaction."""
    return surges.advance(Tables(conn), watch, through, now=now)


def rebuild(conn: sqlite3.Connection, watch: Watch, today: date, *, now: datetime) -> list[Alert]:
    """surges.rebuild in the caller's write transaction (after a border change)."""
    return surges.rebuild(Tables(conn), watch, today, now=now)


def _by_day(rows: Iterable[tuple[int, str, str, int, int]]) -> surges.DayRows:
    out: surges.DayRows = defaultdict(list)
    days: dict[int, date] = {}  # a few days, thousands of rows
    for period, segment_id, kind, n, people in rows:
        day = days.get(period)
        if day is None:
            day = days[period] = from_micros(period).date()
        out[day].append((segment_id, kind, int(n), int(people)))
    return out
