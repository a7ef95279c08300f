"""Webhook subscriptions and the delivery outbox on SQLite. One writer at a time (BEGIN
IMMEDIATE) is what makes a claim safe between workers: the second waits for the first's commit,
then sees the rows leased."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from service.domain.webhooks import (
    ClaimedDelivery,
    Delivery,
    DeliveryState,
    Outcome,
    Webhook,
    WebhookSecret,
    rotated,
    secrets_as_json,
)
from service.storage.rows import DELIVERY_COLUMNS, HOOK_COLUMNS, delivery_of, webhook_of
from service.storage.sqlite.rows import from_micros, to_micros


def _webhook(row: Any) -> Webhook:
    return webhook_of(row, doc=json.loads, at=from_micros)


def _delivery(row: Any) -> Delivery:
    return delivery_of(row, at=from_micros)


def add_webhook(conn: sqlite3.Connection, *, hook: Webhook) -> None:
    conn.execute(
        f"INSERT INTO webhooks ({HOOK_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (hook.id, hook.url, hook.description, json.dumps(hook.filter.as_json()),
         json.dumps(secrets_as_json(hook.secrets)), to_micros(hook.created_at),
         None if hook.disabled_at is None else to_micros(hook.disabled_at),
         hook.disabled_reason),
    )  # fmt: skip


def get_webhook(conn: sqlite3.Connection, *, webhook_id: str) -> Webhook | None:
    row = conn.execute(
        f"SELECT {HOOK_COLUMNS} FROM webhooks WHERE id = ?", (webhook_id,)
    ).fetchone()
    return None if row is None else _webhook(row)


def list_webhooks(conn: sqlite3.Connection) -> list[Webhook]:
    rows = conn.execute(f"SELECT {HOOK_COLUMNS} FROM webhooks ORDER BY created_at, id")
    return [_webhook(r) for r in rows]


def enabled_webhooks(conn: sqlite3.Connection) -> list[Webhook]:
    rows = conn.execute(
        f"SELECT {HOOK_COLUMNS} FROM webhooks WHERE disabled_at IS NULL ORDER BY id"
    )
    return [_webhook(r) for r in rows]


def enqueue(conn: sqlite3.Connection, deliveries: Sequence[Delivery]) -> None:
    """Add deliveries to the outbox; one already there (the same id) is left as it is."""
    conn.executemany(
        "INSERT INTO webhook_deliveries (id, webhook_id, event_type, payload, state, attempts,"
        " next_attempt_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (id) DO NOTHING",
        [
            (d.id, d.webhook_id, d.event_type, d.payload.decode(), d.state.value, d.attempts,
             to_micros(d.next_attempt_at), to_micros(d.created_at), to_micros(d.updated_at))
            for d in deliveries
        ],
    )  # fmt: skip


def disable_webhook(
    conn: sqlite3.Connection, *, webhook_id: str, at: datetime, reason: str
) -> bool:
    cursor = conn.execute(
        "UPDATE webhooks SET disabled_at = ?, disabled_reason = ?"
        " WHERE id = ? AND disabled_at IS NULL",
        (to_micros(at), reason, webhook_id),
    )
    if cursor.rowcount == 0:
        return False
    conn.execute(
        "UPDATE webhook_deliveries SET state = 'gone', updated_at = ?, last_error = ?"
        " WHERE webhook_id = ? AND state = 'pending'",
        (to_micros(at), f"not sent: the subscription was disabled ({reason})", webhook_id),
    )
    return True


def rotate_secret(
    conn: sqlite3.Connection, *, webhook_id: str, secret: WebhookSecret, old_expire_at: datetime
) -> Webhook | None:
    hook = get_webhook(conn, webhook_id=webhook_id)
    if hook is None or hook.disabled_at is not None:
        return None
    secrets = rotated(hook, secret, old_expire_at=old_expire_at)
    conn.execute(
        "UPDATE webhooks SET secrets = ? WHERE id = ?",
        (json.dumps(secrets_as_json(secrets)), webhook_id),
    )
    return get_webhook(conn, webhook_id=webhook_id)


def any_due(conn: sqlite3.Connection, *, now: datetime) -> bool:
    row = conn.execute(
        "SELECT 1 FROM webhook_deliveries WHERE state = 'pending' AND next_attempt_at <= ? LIMIT 1",
        (to_micros(now),),
    ).fetchone()
    return row is not None


def claim(
    conn: sqlite3.Connection, *, now: datetime, limit: int, lease_s: float
) -> list[ClaimedDelivery]:
    rows = conn.execute(
        f"UPDATE webhook_deliveries AS d SET attempts = d.attempts + 1,"
        " next_attempt_at = :lease_until, updated_at = :now"
        " WHERE d.id IN (SELECT id FROM webhook_deliveries WHERE state = 'pending'"
        "  AND next_attempt_at <= :now ORDER BY next_attempt_at LIMIT :limit)"
        f" RETURNING {DELIVERY_COLUMNS.replace('d.', '')}",
        {
            "now": to_micros(now),
            "lease_until": to_micros(now + timedelta(seconds=lease_s)),
            "limit": limit,
        },
    ).fetchall()
    hooks = {h.id: h for h in list_webhooks(conn)}
    out = [
        ClaimedDelivery(d, hooks[d.webhook_id].url, hooks[d.webhook_id].signing_secrets(now))
        for d in map(_delivery, rows)
    ]
    return sorted(out, key=lambda c: c.delivery.created_at)


def finish(
    conn: sqlite3.Connection,
    *,
    delivery_id: str,
    attempts: int,
    outcome: Outcome,
    now: datetime,
) -> bool:
    state = outcome.state.value
    row = conn.execute(
        "UPDATE webhook_deliveries SET state = :state,"
        " next_attempt_at = coalesce(:next, next_attempt_at), last_status = :status,"
        " last_error = :error, updated_at = :now,"
        " delivered_at = CASE WHEN :state = 'delivered' THEN :now END"
        " WHERE id = :id AND attempts = :attempts AND state = 'pending' RETURNING webhook_id",
        {"state": state, "status": outcome.status, "error": outcome.error,
         "next": None if outcome.next_attempt_at is None else to_micros(outcome.next_attempt_at),
         "now": to_micros(now), "id": delivery_id, "attempts": attempts},
    ).fetchone()  # fmt: skip
    if row is None:
        return False
    if outcome.state is DeliveryState.GONE:
        disable_webhook(conn, webhook_id=row[0], at=now, reason="gone")
    return True


def list_deliveries(
    conn: sqlite3.Connection, *, webhook_id: str, state: DeliveryState | None, limit: int
) -> list[Delivery]:
    rows = conn.execute(
        f"SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries AS d WHERE d.webhook_id = :id"
        " AND (:state IS NULL OR d.state = :state)"
        " ORDER BY d.created_at DESC, d.id DESC LIMIT :limit",
        {"id": webhook_id, "state": None if state is None else state.value, "limit": limit},
    )
    return [_delivery(r) for r in rows]
