"""Surge detection in the transaction that counts reports, on SQLite (issue #19, schema step 8):
ingest and deletion count their reports into the day rollups in their own write transaction, and
detect in it too (see postgis/surges.py for the same on PostGIS)."""

from __future__ import annotations

import json
import sqlite3
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any

from service.domain.alerts import Alert, AlertPage, AlertQuery, AlertTransition, SeriesKey
from service.domain.surges.series import SeriesState, state_from_dict, state_to_dict
from service.domain.surges.watch import SeriesChange, Watch, series_key_of, series_key_text
from service.storage import surges as shared
from service.storage.sqlite import alerts
from service.storage.sqlite.rows import from_micros, to_micros

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


def detect(
    conn: sqlite3.Connection, touched: shared.Touched, watch: Watch, *, now: datetime | None = None
) -> list[Alert]:
    """``shared.detect`` in the caller's transaction (service/storage/surges.py)."""
    return shared.detect(_Tables(conn), touched, watch, now=now or datetime.now(UTC))


def advance(conn: sqlite3.Connection, watch: Watch, through: date, *, now: datetime) -> list[Alert]:
    """``shared.advance`` in the caller's (write) transaction."""
    return shared.advance(_Tables(conn), watch, through, now=now)


def rebuild(conn: sqlite3.Connection, watch: Watch, today: date, *, now: datetime) -> list[Alert]:
    """``shared.rebuild`` in the caller's (write) transaction."""
    return shared.rebuild(_Tables(conn), watch, today, now=now)


@dataclass(frozen=True, slots=True)
class _Tables:
    """``shared.SurgeTables`` on SQLite."""

    conn: sqlite3.Connection

    def day_rows(self, days: list[date]) -> shared.DayRows:
        starts = [to_micros(datetime.combine(day, time(), tzinfo=UTC)) for day in days]
        return self._days(_DAYS, (json.dumps(starts),))

    def days_since(self, first: date) -> shared.DayRows:
        return self._days(_SINCE, (to_micros(datetime.combine(first, time(), tzinfo=UTC)),))

    def states(self, keys: set[SeriesKey]) -> dict[SeriesKey, SeriesState]:
        return self._states(_STATES, (json.dumps([series_key_text(k) for k in keys]),))

    def open_states(self) -> dict[SeriesKey, SeriesState]:
        return self._states("SELECT series, state FROM surge_series", ())

    def save(self, changes: Sequence[SeriesChange], at: datetime) -> None:
        self.conn.executemany(
            _SAVE,
            [
                (series_key_text(c.key), json.dumps(state_to_dict(c.state)), to_micros(at))
                for c in changes
            ],
        )

    def clear(self) -> None:
        self.conn.execute("DELETE FROM surge_series")

    def list_alerts(self, query: AlertQuery) -> AlertPage:
        return alerts.list_alerts(self.conn, query=query)

    def record_alerts(self, changed: list[AlertTransition], now: datetime) -> list[Alert]:
        return alerts.record_alerts(self.conn, changed, now=now)

    def _days(self, sql: str, params: tuple[Any, ...]) -> shared.DayRows:
        out: shared.DayRows = defaultdict(list)
        for period, segment_id, kind, n, people in self.conn.execute(sql, params):
            out[from_micros(period).date()].append((segment_id, kind, int(n), int(people)))
        return out

    def _states(self, sql: str, params: tuple[Any, ...]) -> dict[SeriesKey, SeriesState]:
        rows = self.conn.execute(sql, params).fetchall()
        return {series_key_of(s): state_from_dict(json.loads(state)) for s, state in rows}
