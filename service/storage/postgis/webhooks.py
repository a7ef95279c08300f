"""Webhook subscriptions and the delivery outbox on PostGIS."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import orjson
from sqlalchemy import Connection

from service.domain.webhooks import (
    ClaimedDelivery,
    Delivery,
    DeliveryState,
    Outcome,
    Webhook,
    WebhookSecret,
    rotated,
    secrets_as_json,
    secrets_from_json,
)
from service.storage.rows import DELIVERY_COLUMNS, HOOK_COLUMNS, delivery_of, webhook_of


def add_webhook(conn: Connection, hook: Webhook) -> None:
    conn.exec_driver_sql(
        f"INSERT INTO webhooks ({HOOK_COLUMNS}) VALUES"
        " (%s, %s, %s, %s::jsonb, %s::jsonb, %s, %s, %s)",
        (hook.id, hook.url, hook.description, orjson.dumps(hook.filter.as_json()).decode(),
         orjson.dumps(secrets_as_json(hook.secrets)).decode(), hook.created_at,
         hook.disabled_at, hook.disabled_reason),
    )  # fmt: skip


def get_webhook(conn: Connection, webhook_id: str, *, lock: bool = False) -> Webhook | None:
    row = conn.exec_driver_sql(
        f"SELECT {HOOK_COLUMNS} FROM webhooks WHERE id = %s" + (" FOR UPDATE" if lock else ""),
        (webhook_id,),
    ).first()
    return None if row is None else webhook_of(row)


def list_webhooks(conn: Connection) -> list[Webhook]:
    rows = conn.exec_driver_sql(f"SELECT {HOOK_COLUMNS} FROM webhooks ORDER BY created_at, id")
    return [webhook_of(r) for r in rows]


def enabled_webhooks(conn: Connection) -> list[Webhook]:
    rows = conn.exec_driver_sql(
        f"SELECT {HOOK_COLUMNS} FROM webhooks WHERE disabled_at IS NULL ORDER BY id"
    )
    return [webhook_of(r) for r in rows]


def enqueue(conn: Connection, deliveries: Sequence[Delivery]) -> None:
    """Add deliveries to the outbox; one already there (the same id) is left as it is."""
    if not deliveries:
        return
    conn.exec_driver_sql(  # executemany: psycopg pipelines them, one round trip
        "INSERT INTO webhook_deliveries (id, webhook_id, event_type, payload, state,"
        " attempts, next_attempt_at, created_at, updated_at)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING",
        [
            (d.id, d.webhook_id, d.event_type, d.payload.decode(), d.state.value, d.attempts,
             d.next_attempt_at, d.created_at, d.updated_at)
            for d in deliveries
        ],
    )  # fmt: skip


def disable_webhook(conn: Connection, webhook_id: str, at: datetime, reason: str) -> bool:
    result = conn.exec_driver_sql(
        "UPDATE webhooks SET disabled_at = %s, disabled_reason = %s"
        " WHERE id = %s AND disabled_at IS NULL",
        (at, reason, webhook_id),
    )
    if not result.rowcount:
        return False
    conn.exec_driver_sql(
        "UPDATE webhook_deliveries SET state = 'gone', updated_at = %s, last_error = %s"
        " WHERE webhook_id = %s AND state = 'pending'",
        (at, f"not sent: the subscription was disabled ({reason})", webhook_id),
    )
    return True


def rotate_secret(
    conn: Connection, webhook_id: str, secret: WebhookSecret, old_expire_at: datetime
) -> Webhook | None:
    hook = get_webhook(conn, webhook_id, lock=True)
    if hook is None or hook.disabled_at is not None:
        return None
    secrets = rotated(hook, secret, old_expire_at=old_expire_at)
    conn.exec_driver_sql(
        "UPDATE webhooks SET secrets = %s::jsonb WHERE id = %s",
        (orjson.dumps(secrets_as_json(secrets)).decode(), webhook_id),
    )
    return get_webhook(conn, webhook_id)


# SKIP LOCKED: workers on other servers skip the rows one is taking instead of waiting for it;
# the lease (next_attempt_at moved on) keeps them off those rows after this commits.
_CLAIM = f"""
    WITH due AS (
        SELECT id FROM webhook_deliveries
        WHERE state = 'pending' AND next_attempt_at <= %(now)s
        ORDER BY next_attempt_at LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED
    )
    UPDATE webhook_deliveries AS d
    SET attempts = d.attempts + 1, next_attempt_at = %(lease_until)s, updated_at = %(now)s
    FROM due, webhooks AS w
    WHERE d.id = due.id AND w.id = d.webhook_id
    RETURNING {DELIVERY_COLUMNS}, w.url, w.secrets
"""


def claim(conn: Connection, now: datetime, limit: int, lease_s: float) -> list[ClaimedDelivery]:
    rows = conn.exec_driver_sql(
        _CLAIM, {"now": now, "limit": limit, "lease_until": now + timedelta(seconds=lease_s)}
    ).all()
    out = []
    for row in rows:
        secrets = secrets_from_json(row[-1])
        out.append(
            ClaimedDelivery(
                delivery_of(row[:-2]), row[-2], [s.secret for s in secrets if s.active_at(now)]
            )
        )
    return sorted(out, key=lambda c: c.delivery.created_at)


def finish(
    conn: Connection, delivery_id: str, attempts: int, outcome: Outcome, now: datetime
) -> bool:
    row = conn.exec_driver_sql(
        "UPDATE webhook_deliveries SET state = %(state)s,"
        " next_attempt_at = COALESCE(%(next)s, next_attempt_at), last_status = %(status)s,"
        " last_error = %(error)s, updated_at = %(now)s,"
        " delivered_at = CASE WHEN %(state)s = 'delivered' THEN %(now)s END"
        " WHERE id = %(id)s AND attempts = %(attempts)s AND state = 'pending'"
        " RETURNING webhook_id",
        {"state": outcome.state.value, "next": outcome.next_attempt_at, "status": outcome.status,
         "error": outcome.error, "now": now, "id": delivery_id, "attempts": attempts},
    ).first()  # fmt: skip
    if row is None:
        return False
    if outcome.state is DeliveryState.GONE:
        disable_webhook(conn, row[0], now, "gone")
    return True


def list_deliveries(
    conn: Connection, webhook_id: str, state: DeliveryState | None, limit: int
) -> list[Delivery]:
    rows = conn.exec_driver_sql(
        f"SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries AS d WHERE d.webhook_id = %(id)s"
        " AND (%(state)s::text IS NULL OR d.state = %(state)s)"
        " ORDER BY d.created_at DESC, d.id DESC LIMIT %(limit)s",
        {"id": webhook_id, "state": None if state is None else state.value, "limit": limit},
    )
    return [delivery_of(r) for r in rows]
