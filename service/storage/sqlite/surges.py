"""Surge detection in the transaction that counts reports, on SQLite (issue #19, schema step 8):
ingest and deletion count their reports into the day rollups in their own write transaction, and
detect in it too (see postgis/surges.py for the same on PostGIS)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, time

from service.domain.alerts import Alert, SeriesKey
from service.domain.surges.series import SeriesState, state_from_dict, state_to_dict
from service.domain.surges.watch import (
    Watch,
    detect_days,
    series_key_of,
    series_key_text,
    transitions,
)
from service.storage.sqlite import alerts
from service.storage.sqlite.rows import to_micros

_DAY = """
    SELECT segment_id, kind, sum(reports), sum(people) FROM count_days
    WHERE period = ? AND segment_id <> '' GROUP BY segment_id, kind
"""
_STATES = "SELECT series, state FROM surge_series WHERE series IN (SELECT value FROM json_each(?))"
_SAVE = (
    "INSERT INTO surge_series (series, state, updated_at) VALUES (?, ?, ?)"
    " ON CONFLICT (series) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at"
)


def detect(
    conn: sqlite3.Connection,
    touched: Mapping[date, set[tuple[str, str]]],
    watch: Watch,
    *,
    now: datetime | None = None,
) -> list[Alert]:
    """Observe each touched day's whole count in every series it touched; store the states and
    the alerts (in the caller's transaction); the alerts that changed."""
    now = now or datetime.now(UTC)

    def day_rows(day: date) -> Iterable[tuple[str, str, int, int]]:
        start = to_micros(datetime.combine(day, time(), tzinfo=UTC))
        return [(s, k, int(n), int(p)) for s, k, n, p in conn.execute(_DAY, (start,))]

    def states(keys: set[SeriesKey]) -> dict[SeriesKey, SeriesState]:
        texts = json.dumps([series_key_text(k) for k in keys])
        rows = conn.execute(_STATES, (texts,)).fetchall()
        return {series_key_of(series): state_from_dict(json.loads(state)) for series, state in rows}

    changes = detect_days(touched, watch, day_rows=day_rows, states=states)
    conn.executemany(
        _SAVE,
        [
            (series_key_text(c.key), json.dumps(state_to_dict(c.state)), to_micros(now))
            for c in changes
        ],
    )
    return alerts.record_alerts(conn, transitions(changes, at=now), now=now)
