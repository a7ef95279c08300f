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
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, time
from typing import Any

from sqlalchemy import Connection

from service.domain.alerts import Alert, SeriesKey
from service.domain.surges.series import SeriesState, state_from_dict, state_to_dict
from service.domain.surges.watch import (
    Watch,
    detect_days,
    series_key_of,
    series_key_text,
    transitions,
)
from service.storage.postgis import alerts
from service.storage.postgis.rollups import live

_DAY = f"""
    SELECT segment_id, kind, sum(reports)::bigint, sum(people)::bigint
    FROM {live("count_days")} c
    WHERE period = %(day)s AND segment_id <> ''
    GROUP BY segment_id, kind
"""
_STATES = "SELECT series, state FROM surge_series WHERE series = ANY(%(keys)s)"
_SAVE = """
    INSERT INTO surge_series (series, state, updated_at) VALUES (%(series)s, %(state)s, %(at)s)
    ON CONFLICT (series) DO UPDATE SET state = EXCLUDED.state, updated_at = EXCLUDED.updated_at
"""


def detect(
    conn: Connection,
    touched: Mapping[date, set[tuple[str, str]]],
    watch: Watch,
    *,
    now: datetime | None = None,
) -> list[Alert]:
    """Observe each touched day's whole count in every series it touched; store the states and
    the alerts (in the caller's transaction); the alerts that changed."""
    now = now or datetime.now(UTC)

    def day_rows(day: date) -> Iterable[tuple[str, str, int, int]]:
        start = datetime.combine(day, time(), tzinfo=UTC)
        rows = conn.exec_driver_sql(_DAY, {"day": start}).all()
        return [(str(s), str(k), int(n), int(p)) for s, k, n, p in rows]

    def states(keys: set[SeriesKey]) -> dict[SeriesKey, SeriesState]:
        rows = conn.exec_driver_sql(_STATES, {"keys": [series_key_text(k) for k in keys]})
        return {series_key_of(series): state_from_dict(_json(state)) for series, state in rows}

    changes = detect_days(touched, watch, day_rows=day_rows, states=states)
    for change in changes:
        conn.exec_driver_sql(
            _SAVE,
            {
                "series": series_key_text(change.key),
                "state": json.dumps(state_to_dict(change.state)),
                "at": now,
            },
        )
    return alerts.record_alerts(conn, transitions(changes, at=now), now=now)


def _json(value: Any) -> dict[str, Any]:
    return dict(json.loads(value) if isinstance(value, str) else value)
