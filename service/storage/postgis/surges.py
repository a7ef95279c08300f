"""Surge detection in the transaction that counts reports (issue #19, migration 0014).

The rollup fold (rollups.py) hands ``detect`` the (segment, kind) pairs of each UTC day it just
counted; ``detect`` reads those days' whole counts (rollups plus what is still pending), moves the
touched series' CUSUM states (``surge_series``) and records the alerts they raise, with their
webhook deliveries, all in the fold's transaction: a fold that dies leaves its reports pending and
nothing half-detected, and one that commits has its alerts in the outbox. Only one transaction
detects at a time: the fold's advisory lock, which a deletion takes too.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta
from functools import partial
from typing import Any

import orjson
from psycopg.errors import LockNotAvailable
from sqlalchemy import Connection
from sqlalchemy.exc import OperationalError

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
from service.storage.postgis import alerts
from service.storage.postgis.rollups import FOLD_LOCK, live
from service.storage.surge_cache import SeriesCache, new_token

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

_TOKEN = "SELECT token FROM surge_token"
_NEW_TOKEN = "UPDATE surge_token SET token = %(token)s"

_OPEN = AlertQuery(state=AlertState.OPEN, limit=1000)


def detect(
    conn: Connection,
    touched: Mapping[date, set[tuple[str, str]]],
    watch: Watch,
    *,
    cache: SeriesCache,
    now: datetime | None = None,
) -> list[Alert]:
    """Observe each touched day's whole count in every series it touched; store the states and
    the alerts (in the caller's transaction); the alerts that changed. The states come from
    ``cache`` while the stored token is its own (surge_cache.py), else from the store."""
    now = now or datetime.now(UTC)
    cache.check(conn.exec_driver_sql(_TOKEN).scalar())

    def day_rows(days: list[date]) -> dict[date, list[tuple[str, str, int, int]]]:
        starts = [datetime.combine(day, time(), tzinfo=UTC) for day in days]
        out: dict[date, list[tuple[str, str, int, int]]] = defaultdict(list)
        for day, segment_id, kind, n, people in conn.exec_driver_sql(_DAYS, {"days": starts}):
            out[day].append((str(segment_id), str(kind), int(n), int(people)))
        return out

    def states(keys: set[str]) -> dict[str, SeriesState]:
        found, missing = cache.known(keys)
        if missing:
            rows = conn.exec_driver_sql(_STATES, {"keys": list(missing)})
            read = {str(series): state_from_dict(_json(state)) for series, state in rows}
            cache.read(missing, read)
            found.update(read)
        return found

    changes = detect_days(touched, watch, day_rows=day_rows, states=states)
    if changes:
        token = cache.wrote({series_key_text(c.key): c.state for c in changes})
        _save(conn, changes, now, token=token)
    return alerts.record_alerts(conn, transitions(changes, at=now), now=now)


def advance(conn: Connection, watch: Watch, through: date, *, now: datetime) -> list[Alert]:
    """Close the quiet days up to ``through`` of the series with an open episode (their
    episodes may close); the alerts that changed. Nothing when a fold is under way (it holds
    the series): the caller tries again later."""
    conn.exec_driver_sql("SET LOCAL lock_timeout = '5s'")  # a fold is short; else: later
    try:
        conn.exec_driver_sql("SELECT pg_advisory_xact_lock(%(k)s)", {"k": FOLD_LOCK})
    except OperationalError as error:
        if isinstance(error.orig, LockNotAvailable):
            return []
        raise
    rows = conn.exec_driver_sql(_OPEN_STATES).all()
    states = {series_key_of(series): state_from_dict(_json(state)) for series, state in rows}
    changes = advance_open(states, through, watch.params)
    if changes:
        _save(conn, changes, now, token=new_token())
    return alerts.record_alerts(conn, transitions(changes, at=now), now=now)


def rebuild(conn: Connection, watch: Watch, today: date, *, now: datetime) -> list[Alert]:
    """Every series replayed from the day counts of the days its state keeps (after a border
    change: its series are not the old ones); alerts whose episode is gone are closed."""
    conn.exec_driver_sql("SET LOCAL statement_timeout = 0")
    conn.exec_driver_sql("SELECT pg_advisory_xact_lock(%(k)s)", {"k": FOLD_LOCK})
    first = today - timedelta(days=KEEP_DAYS - 1)
    days: dict[date, list[tuple[str, str, int, int]]] = defaultdict(list)
    start = datetime.combine(first, time(), tzinfo=UTC)
    for day, segment_id, kind, n, people in conn.exec_driver_sql(_SINCE, {"start": start}):
        days[day].append((str(segment_id), str(kind), int(n), int(people)))
    changes = replay_all(days, watch, first_day=first, last_day=today)
    conn.exec_driver_sql("DELETE FROM surge_series")
    _save(conn, changes, now, token=new_token())
    opened = every_alert(partial(alerts.list_alerts, conn), _OPEN)
    closing = close_orphans(opened, changes, day=today, at=now)
    return alerts.record_alerts(conn, transitions(changes, at=now) + closing, now=now)


def _save(conn: Connection, changes: list[SeriesChange], at: datetime, *, token: int) -> None:
    """Store the changed states (one statement for the lot) and the surge token that vouches for
    them: the writer's cache's (detect), or a token no cache holds (advance, rebuild)."""
    conn.exec_driver_sql(_NEW_TOKEN, {"token": token})
    if changes:
        conn.exec_driver_sql(
            _SAVE,
            {
                "series": [series_key_text(c.key) for c in changes],
                "states": [orjson.dumps(state_to_dict(c.state)).decode() for c in changes],
                "at": at,
            },
        )


def _json(value: Any) -> dict[str, Any]:
    return dict(orjson.loads(value) if isinstance(value, str) else value)
