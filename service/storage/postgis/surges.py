"""Surge detection in the transaction that counts reports (issue #19, migration 0014).

The rollup fold (rollups.py) hands ``detect`` the (segment, kind) pairs of each UTC day it just
counted; ``detect`` reads those days' whole counts (rollups plus what is still pending), moves the
touched series' CUSUM states (``surge_series``) and records the alerts they raise, with their
webhook deliveries, all in the fold's transaction: a fold that dies leaves its reports pending and
nothing half-detected, and one that commits has its alerts in the outbox. Only one transaction
detects at a time: the fold's advisory lock, which a deletion takes too.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any

from psycopg.errors import LockNotAvailable
from sqlalchemy import Connection
from sqlalchemy.exc import OperationalError

from service.domain.alerts import Alert, AlertPage, AlertQuery, AlertTransition, SeriesKey
from service.domain.surges.series import SeriesState, state_from_dict, state_to_dict
from service.domain.surges.watch import SeriesChange, Watch, series_key_of, series_key_text
from service.storage import surges as shared
from service.storage.postgis import alerts
from service.storage.postgis.rollups import FOLD_LOCK, live

_DAYS = f"""
    SELECT (period AT TIME ZONE 'UTC')::date, segment_id, kind, sum(reports)::bigint,
           sum(people)::bigint
    FROM {live("count_days")} c
    WHERE period = ANY(%(days)s) AND segment_id <> ''
    GROUP BY 1, 2, 3
"""
_STATES = "SELECT series, state FROM surge_series WHERE series = ANY(%(keys)s)"
_OPEN_STATES = (
    "SELECT series, state FROM surge_series"
    " WHERE state::jsonb -> 'days' -> -1 -> 'episode' <> 'null'"
)
_SINCE = f"""
    SELECT (period AT TIME ZONE 'UTC')::date, segment_id, kind, sum(reports)::bigint,
           sum(people)::bigint
    FROM {live("count_days")} c
    WHERE period >= %(start)s AND segment_id <> ''
    GROUP BY 1, 2, 3
"""
_SAVE = """
    INSERT INTO surge_series (series, state, updated_at)
    SELECT series, state, %(at)s FROM unnest(%(series)s::text[], %(states)s::text[])
        AS u(series, state)
    ON CONFLICT (series) DO UPDATE SET state = EXCLUDED.state, updated_at = EXCLUDED.updated_at
"""


def detect(
    conn: Connection, touched: shared.Touched, watch: Watch, *, now: datetime | None = None
) -> list[Alert]:
    """``shared.detect`` in the caller's transaction (service/storage/surges.py)."""
    return shared.detect(_Tables(conn), touched, watch, now=now or datetime.now(UTC))


def advance(conn: Connection, watch: Watch, through: date, *, now: datetime) -> list[Alert]:
    """``shared.advance``; nothing when a fold is under way (it holds the series): the caller
    tries again later."""
    conn.exec_driver_sql("SET LOCAL lock_timeout = '5s'")  # a fold is short; else: later
    try:
        conn.exec_driver_sql("SELECT pg_advisory_xact_lock(%(k)s)", {"k": FOLD_LOCK})
    except OperationalError as error:
        if isinstance(error.orig, LockNotAvailable):
            return []
        raise
    return shared.advance(_Tables(conn), watch, through, now=now)


def rebuild(conn: Connection, watch: Watch, today: date, *, now: datetime) -> list[Alert]:
    """``shared.rebuild``, holding the fold's lock."""
    conn.exec_driver_sql("SET LOCAL statement_timeout = 0")
    conn.exec_driver_sql("SELECT pg_advisory_xact_lock(%(k)s)", {"k": FOLD_LOCK})
    return shared.rebuild(_Tables(conn), watch, today, now=now)


@dataclass(frozen=True, slots=True)
class _Tables:
    """``shared.SurgeTables`` on PostGIS."""

    conn: Connection

    def day_rows(self, days: list[date]) -> shared.DayRows:
        return self._days(_DAYS, {"days": [datetime.combine(d, time(), tzinfo=UTC) for d in days]})

    def days_since(self, first: date) -> shared.DayRows:
        return self._days(_SINCE, {"start": datetime.combine(first, time(), tzinfo=UTC)})

    def states(self, keys: set[SeriesKey]) -> dict[SeriesKey, SeriesState]:
        return self._states(_STATES, {"keys": [series_key_text(k) for k in keys]})

    def open_states(self) -> dict[SeriesKey, SeriesState]:
        return self._states(_OPEN_STATES, {})

    def save(self, changes: Sequence[SeriesChange], at: datetime) -> None:
        if changes:  # one statement for the lot
            series = [series_key_text(c.key) for c in changes]
            states = [json.dumps(state_to_dict(c.state)) for c in changes]
            self.conn.exec_driver_sql(_SAVE, {"series": series, "states": states, "at": at})

    def clear(self) -> None:
        self.conn.exec_driver_sql("DELETE FROM surge_series")

    def list_alerts(self, query: AlertQuery) -> AlertPage:
        return alerts.list_alerts(self.conn, query)

    def record_alerts(self, changed: list[AlertTransition], now: datetime) -> list[Alert]:
        return alerts.record_alerts(self.conn, changed, now=now)

    def _days(self, sql: str, params: dict[str, Any]) -> shared.DayRows:
        out: shared.DayRows = defaultdict(list)
        for day, segment_id, kind, n, people in self.conn.exec_driver_sql(sql, params):
            out[day].append((str(segment_id), str(kind), int(n), int(people)))
        return out

    def _states(self, sql: str, params: dict[str, Any]) -> dict[SeriesKey, SeriesState]:
        rows = self.conn.exec_driver_sql(sql, params)
        return {series_key_of(series): state_from_dict(_json(state)) for series, state in rows}


def _json(value: Any) -> dict[str, Any]:
    return dict(json.loads(value) if isinstance(value, str) else value)
