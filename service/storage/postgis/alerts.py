"""Alerts and their outbox on PostGIS: connection-level functions, run in the caller's
transaction (``record_alerts`` is what ingest calls inside its own)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, cast
from uuid import UUID

import psycopg
from sqlalchemy import Connection

from service.domain.alerts import (
    Alert,
    AlertPage,
    AlertQuery,
    AlertTransition,
)
from service.domain.webhooks import deliveries_for
from service.storage.postgis import webhooks
from service.storage.rows import ALERT_COLUMNS, alert_of, alert_params

# A change that alters nothing (the same transition stored twice) updates no row and returns
# none: it makes no new version and enqueues no delivery.
_UPSERT = f"""
    INSERT INTO alerts ({ALERT_COLUMNS})
    VALUES (%(id)s, %(state)s, %(border)s, %(section)s, %(segment_id)s, %(kind)s, %(measure)s,
            %(opened_day)s, %(last_day)s, %(closed_day)s, %(days)s, %(observed)s, %(expected)s,
            %(statistic)s, %(peak_statistic)s, %(at)s, %(at)s, 1)
    ON CONFLICT (id) DO UPDATE SET
        state = EXCLUDED.state, last_day = EXCLUDED.last_day, closed_day = EXCLUDED.closed_day,
        days = EXCLUDED.days, observed = EXCLUDED.observed, expected = EXCLUDED.expected,
        statistic = EXCLUDED.statistic, peak_statistic = EXCLUDED.peak_statistic,
        updated_at = GREATEST(alerts.updated_at, EXCLUDED.updated_at),
        version = alerts.version + 1
    WHERE (alerts.state, alerts.last_day, alerts.closed_day, alerts.days, alerts.observed,
           alerts.expected, alerts.statistic, alerts.peak_statistic)
          IS DISTINCT FROM
          (EXCLUDED.state, EXCLUDED.last_day, EXCLUDED.closed_day, EXCLUDED.days,
           EXCLUDED.observed, EXCLUDED.expected, EXCLUDED.statistic, EXCLUDED.peak_statistic)
    RETURNING {ALERT_COLUMNS}
"""


def record_alerts(
    conn: Connection, transitions: Sequence[AlertTransition], *, now: datetime | None = None
) -> list[Alert]:
    """Upsert each transition's alert and enqueue its deliveries, in ``conn``'s transaction;
    the alerts that changed, in input order. Two transactions upserting one alert queue on its
    row (the primary key), so each change is counted once."""
    if not transitions:
        return []
    now = now or datetime.now(UTC)
    # One pipeline of upserts (psycopg's executemany: one round trip, not one a transition; each
    # runs as it would alone, in order, so one alert changed twice is two versions).
    raw = cast(psycopg.Connection[Any], conn.connection.dbapi_connection)
    cursor = raw.cursor()
    rows = []
    try:
        cursor.executemany(_UPSERT, [alert_params(t) for t in transitions], returning=True)
        while True:
            rows.append(cursor.fetchone())
            if not cursor.nextset():
                break
    finally:
        cursor.close()
    changed: list[tuple[AlertTransition, Alert]] = [
        (transition, alert_of(row))
        for transition, row in zip(transitions, rows, strict=True)
        if row is not None
    ]
    if changed:
        hooks = webhooks.enabled_webhooks(conn)
        webhooks.enqueue(
            conn, [d for t, alert in changed for d in deliveries_for(t, alert, hooks, now=now)]
        )
    return [alert for _, alert in changed]


def get_alert(conn: Connection, alert_id_: UUID) -> Alert | None:
    row = conn.exec_driver_sql(
        f"SELECT {ALERT_COLUMNS} FROM alerts WHERE id = %(id)s", {"id": alert_id_}
    ).first()
    return None if row is None else alert_of(row)


def list_alerts(conn: Connection, query: AlertQuery) -> AlertPage:
    after_at, after_id = query.after if query.after is not None else (None, None)
    rows = conn.exec_driver_sql(
        f"SELECT {ALERT_COLUMNS} FROM alerts"
        " WHERE (%(state)s::text IS NULL OR state = %(state)s)"
        " AND (%(border)s::text IS NULL OR border = %(border)s)"
        " AND (%(segment)s::text IS NULL OR segment_id = %(segment)s)"
        " AND (%(since)s::timestamptz IS NULL OR updated_at >= %(since)s)"
        " AND (%(after_at)s::timestamptz IS NULL OR (updated_at, id) < (%(after_at)s, %(after_id)s::uuid))"
        " ORDER BY updated_at DESC, id DESC LIMIT %(limit)s",
        {
            "state": None if query.state is None else query.state.value,
            "border": query.border,
            "segment": query.segment_id,
            "since": query.since,
            "after_at": after_at,
            "after_id": after_id,
            "limit": query.limit + 1,
        },
    ).all()
    alerts = [alert_of(r) for r in rows[: query.limit]]
    more = len(rows) > query.limit
    return AlertPage(alerts, (alerts[-1].updated_at, alerts[-1].id) if more else None)
