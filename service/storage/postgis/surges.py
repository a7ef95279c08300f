"""Surge detection in the transaction that counts reports (issue #19, migration 0014).

The rollup fold (rollups.py) hands ``detect`` the (segment, kind) pairs of each UTC day it just
counted; ``detect`` reads those days' whole counts (rollups plus what is still pending), moves the
touched series' CUSUM states (``surge_series``) and records the alerts they raise, with their
webhook deliveries, all in the fold's transaction: a fold that dies leaves its reports pending and
nothing half-detected, and one that commits has its alerts in the outbox. Only one transaction
detects at a time: the fold's advisory lock, which a deletion takes too. What detection does is
storage/surges.py's, for both stores; this is PostGIS's SQL for it (``Tables``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, time
from itertools import accumulate
from typing import Any

from psycopg.errors import LockNotAvailable
from sqlalchemy import Connection
from sqlalchemy.exc import OperationalError

from service.domain.alerts import Alert, AlertPage, AlertQuery, AlertTransition, SeriesKey
from service.domain.surges.series import SeriesState, state_from_bytes, state_to_bytes
from service.domain.surges.watch import SeriesChange, Watch, series_key_of, series_key_text
from service.storage import surges
from service.storage.postgis import alerts
from service.storage.postgis.rollups import FOLD_LOCK, live
from service.storage.surge_cache import SeriesCache

_DAYS = f"""
    SELECT (period AT TIME ZONE 'UTC')::date AS day, segment_id, kind, sum(reports)::bigint AS n,
           sum(people)::bigint AS people
    FROM {live("count_days")} c
    WHERE period = ANY(%(days)s) AND segment_id <> ''
    GROUP BY 1, 2, 3
"""
# The token and the days' rows in one round trip (a row with the token alone if there are none).
_TOKEN_AND_DAYS = f"""
    SELECT t.token, d.day, d.segment_id, d.kind, d.n, d.people
    FROM (SELECT (SELECT token FROM surge_token) AS token) t LEFT JOIN ({_DAYS}) d ON true
"""
_STATES = "SELECT series, state FROM surge_series WHERE series = ANY(%(keys)s)"
_OPEN_STATES = "SELECT series, state FROM surge_series WHERE episode_open"
_SINCE = f"""
    SELECT (period AT TIME ZONE 'UTC')::date, segment_id, kind, sum(reports)::bigint,
           sum(people)::bigint
    FROM {live("count_days")} c
    WHERE period >= %(start)s AND segment_id <> ''
    GROUP BY 1, 2, 3
"""
# The states are packed (series.state_to_bytes, migration 0018: ~1.5 KB, under PostgreSQL's
# TOAST threshold, where the JSON states were ~5 KB) and go as one bytea of them all, end to end,
# with each state's start and size, cut apart in SQL (``substring``): as a bytea[] (or text[])
# parameter psycopg escapes each element in Python (a regular expression over it), which took 60%
# of detection on PostGIS with JSON text; as hex lines (until session 10) the text was twice the
# bytes and was decoded on the server.
_SAVE = """
    WITH token AS (UPDATE surge_token SET token = %(token)s)
    INSERT INTO surge_series (series, state, episode_open, updated_at)
    SELECT series, substring(%(states)s::bytea FROM start FOR size), episode_open, %(at)s
    FROM unnest(%(series)s::text[], %(starts)s::int[], %(sizes)s::int[], %(open)s::boolean[])
        AS u(series, start, size, episode_open)
    ON CONFLICT (series) DO UPDATE SET state = EXCLUDED.state,
        episode_open = EXCLUDED.episode_open, updated_at = EXCLUDED.updated_at
"""

_TOKEN = "SELECT token FROM surge_token"
_NEW_TOKEN = "UPDATE surge_token SET token = %(token)s"


class Tables:
    """surges.SurgeTables over ``conn``, in its transaction."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def token(self) -> int | None:
        token = self.conn.exec_driver_sql(_TOKEN).scalar()
        return None if token is None else int(token)

    def token_and_day_rows(self, days: list[date]) -> tuple[int | None, surges.DayRows]:
        rows = self.conn.exec_driver_sql(_TOKEN_AND_DAYS, {"days": _starts(days)}).all()
        token = rows[0][0]
        return None if token is None else int(token), _by_day(
            r[1:] for r in rows if r[1] is not None
        )

    def days_since(self, first: date) -> surges.DayRows:
        start = datetime.combine(first, time(), tzinfo=UTC)
        return _by_day(self.conn.exec_driver_sql(_SINCE, {"start": start}))

    def states(self, keys: set[str]) -> dict[str, SeriesState]:
        rows = self.conn.exec_driver_sql(_STATES, {"keys": list(keys)})
        return {str(series): state_from_bytes(state) for series, state in rows}

    def open_states(self) -> dict[SeriesKey, SeriesState]:
        rows = self.conn.exec_driver_sql(_OPEN_STATES).all()
        return {series_key_of(series): state_from_bytes(state) for series, state in rows}

    def save(self, changes: Sequence[SeriesChange], at: datetime, *, token: int) -> None:
        """The changed states and the token that vouches for them, in one statement."""
        if not changes:
            self.conn.exec_driver_sql(_NEW_TOKEN, {"token": token})
        else:
            packed = [state_to_bytes(c.state) for c in changes]
            sizes = [len(p) for p in packed]
            self.conn.exec_driver_sql(
                _SAVE,
                {
                    "token": token,
                    "series": [series_key_text(c.key) for c in changes],
                    "states": b"".join(packed),
                    "starts": list(accumulate(sizes[:-1], initial=1)),  # 1-based, as in SQL
                    "sizes": sizes,
                    "open": [c.state.episode is not None for c in changes],
                    "at": at,
                },
            )

    def clear(self) -> None:
        self.conn.exec_driver_sql("DELETE FROM surge_series")

    def list_alerts(self, query: AlertQuery) -> AlertPage:
        return alerts.list_alerts(self.conn, query)

    def record_alerts(self, changed: list[AlertTransition], now: datetime) -> list[Alert]:
        return alerts.record_alerts(self.conn, changed, now=now)


def detect(
    conn: Connection,
    touched: Mapping[date, set[tuple[str, str]]],
    watch: Watch,
    *,
    cache: SeriesCache,
    now: datetime | None = None,
) -> list[Alert]:
    """surges.detect in the caller's transaction (which holds the fold's lock)."""
    return surges.detect(Tables(conn), touched, watch, cache=cache, now=now)


def advance(conn: Connection, watch: Watch, through: date, *, now: datetime) -> list[Alert]:
    """surges.advance under the fold's lock. Nothing when a fold is under way (it holds the
    series): the caller tries again later."""
    conn.exec_driver_sql("SET LOCAL lock_timeout = '5s'")  # a fold is short; else: later
    try:
        conn.exec_driver_sql("SELECT pg_advisory_xact_lock(%(k)s)", {"k": FOLD_LOCK})
    except OperationalError as error:
        if isinstance(error.orig, LockNotAvailable):
            return []
        raise
    return surges.advance(Tables(conn), watch, through, now=now)


def rebuild(conn: Connection, watch: Watch, today: date, *, now: datetime) -> list[Alert]:
    """surges.rebuild under the fold's lock (after a border change)."""
    conn.exec_driver_sql("SET LOCAL statement_timeout = 0")
    conn.exec_driver_sql("SELECT pg_advisory_xact_lock(%(k)s)", {"k": FOLD_LOCK})
    return surges.rebuild(Tables(conn), watch, today, now=now)


def _starts(days: list[date]) -> list[datetime]:
    return [datetime.combine(day, time(), tzinfo=UTC) for day in days]


def _by_day(rows: Any) -> surges.DayRows:
    out: surges.DayRows = defaultdict(list)
    for day, segment_id, kind, n, people in rows:
        out[day].append((str(segment_id), str(kind), int(n), int(people)))
    return out
