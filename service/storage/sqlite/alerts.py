"""Alerts and their outbox on SQLite: connection-level functions, run in the caller's write
transaction (``record_alerts`` is what ingest calls inside its own). SQLite has one writer at a
time (BEGIN IMMEDIATE), so concurrent upserts of one alert simply queue."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any
from uuid import UUID

from service.domain.alerts import (
    Alert,
    AlertPage,
    AlertQuery,
    AlertTransition,
)
from service.domain.webhooks import deliveries_for
from service.storage.rows import ALERT_COLUMNS, alert_of, alert_params
from service.storage.sqlite import webhooks
from service.storage.sqlite.rows import from_micros, to_micros

# As PostGIS (storage/postgis/alerts.py): a change that alters nothing updates no row.
_UPSERT = f"""
    INSERT INTO alerts ({ALERT_COLUMNS})
    VALUES (:id, :state, :border, :section, :segment_id, :kind, :measure, :opened_day,
            :last_day, :closed_day, :days, :observed, :expected, :statistic, :peak_statistic,
            :at, :at, 1)
    ON CONFLICT (id) DO UPDATE SET
        state = excluded.state, last_day = excluded.last_day, closed_day = excluded.closed_day,
        days = excluded.days, observed = excluded.observed, expected = excluded.expected,
        statistic = excluded.statistic, peak_statistic = excluded.peak_statistic,
        updated_at = max(alerts.updated_at, excluded.updated_at),
        version = alerts.version + 1
    WHERE (alerts.state, alerts.last_day, alerts.closed_day, alerts.days, alerts.observed,
           alerts.expected, alerts.statistic, alerts.peak_statistic)
          IS NOT
          (excluded.state, excluded.last_day, excluded.closed_day, excluded.days,
           excluded.observed, excluded.expected, excluded.statistic, excluded.peak_statistic)
    RETURNING {ALERT_COLUMNS}
"""


def _day(value: date | None) -> str | None:
    return None if value is None else value.isoformat()


def _params(t: AlertTransition) -> dict[str, Any]:
    params = alert_params(t)
    for name in ("opened_day", "last_day", "closed_day"):
        params[name] = _day(params[name])
    for name in ("observed", "expected", "statistic", "peak_statistic"):
        params[name] = float(params[name])
    return params | {"id": str(params["id"]), "at": to_micros(t.at)}


def _alert(row: Any) -> Alert:
    return alert_of(row, uuid=UUID, day=date.fromisoformat, at=from_micros)


def record_alerts(
    conn: sqlite3.Connection,
    transitions: Sequence[AlertTransition],
    *,
    now: datetime | None = None,
) -> list[Alert]:
    """Upsert each transition's alert and enqueue its deliveries, in ``conn``'s (write)
    transaction; the alerts that changed, in input order."""
    if not transitions:
        return []
    now = now or datetime.now(UTC)
    hooks = webhooks.enabled_webhooks(conn)
    changed = []
    for transition in transitions:
        row = conn.execute(_UPSERT, _params(transition)).fetchone()
        if row is None:
            continue
        alert = _alert(row)
        changed.append(alert)
        webhooks.enqueue(conn, deliveries_for(transition, alert, hooks, now=now))
    return changed


def get_alert(conn: sqlite3.Connection, *, alert_id_: UUID) -> Alert | None:
    row = conn.execute(
        f"SELECT {ALERT_COLUMNS} FROM alerts WHERE id = ?", (str(alert_id_),)
    ).fetchone()
    return None if row is None else _alert(row)


def list_alerts(conn: sqlite3.Connection, *, query: AlertQuery) -> AlertPage:
    after_at, after_id = (
        (to_micros(query.after[0]), str(query.after[1])) if query.after else (None, None)
    )
    rows = conn.execute(
        f"SELECT {ALERT_COLUMNS} FROM alerts"
        " WHERE (:state IS NULL OR state = :state)"
        " AND (:border IS NULL OR border = :border)"
        " AND (:segment IS NULL OR segment_id = :segment)"
        " AND (:since IS NULL OR updated_at >= :since)"
        " AND (:after_at IS NULL OR (updated_at, id) < (:after_at, :after_id))"
        " ORDER BY updated_at DESC, id DESC LIMIT :limit",
        {
            "state": None if query.state is None else query.state.value,
            "border": query.border,
            "segment": query.segment_id,
            "since": None if query.since is None else to_micros(query.since),
            "after_at": after_at,
            "after_id": after_id,
            "limit": query.limit + 1,
        },
    ).fetchall()
    alerts = [_alert(r) for r in rows[: query.limit]]
    more = len(rows) > query.limit
    return AlertPage(alerts, (alerts[-1].updated_at, alerts[-1].id) if more else None)
