"""Webhook subscriptions: what an admin makes, lists, rotates and deletes (each audited)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from service.domain.access import Caller
from service.domain.errors import FieldError, InvalidInput, NotFound
from service.domain.webhooks import (
    Delivery,
    DeliveryState,
    Webhook,
    WebhookSecret,
    new_secret,
    new_webhook_id,
    parse_filter,
    parse_url,
)
from service.settings import Settings
from service.storage.base import Store
from service.usecases.access import record
from service.usecases.webhook_http import check_target


class WebhookNotFound(NotFound):
    pass


def create_webhook(
    store: Store, body: dict[str, Any], *, settings: Settings, actor: Caller
) -> tuple[Webhook, str]:
    """A new subscription from ``{"url", "filter"?, "description"?}`` and its secret (shown
    once: the answer to this call is the only place it appears)."""
    url = parse_url(body.get("url"))
    flt = parse_filter(body.get("filter"))
    description = body.get("description", "")
    if not isinstance(description, str) or len(description) > 500:
        raise InvalidInput(
            "description", errors=[FieldError("description", "must be text (at most 500)")]
        )
    unknown = set(body) - {"url", "filter", "description"}
    if unknown:
        raise InvalidInput(
            "unknown fields", errors=[FieldError(f, "unknown field") for f in sorted(unknown)]
        )
    check_target(url, allow_private=settings.webhook_allow_private)
    now = datetime.now(UTC)
    secret = new_secret()
    hook = Webhook(new_webhook_id(), url, flt, (WebhookSecret(secret, now),), now, description)
    store.add_webhook(hook)
    record(store, actor, "webhook.create", {"webhook_id": hook.id, "url": url})
    return hook, secret


def get_webhook(store: Store, webhook_id: str) -> Webhook:
    hook = store.get_webhook(webhook_id)
    if hook is None:
        raise WebhookNotFound(f"no webhook {webhook_id!r}")
    return hook


def delete_webhook(store: Store, webhook_id: str, *, actor: Caller) -> None:
    """Disable the subscription (kept, with its deliveries, for the record); its pending
    deliveries are given up."""
    if not store.disable_webhook(webhook_id, at=datetime.now(UTC), reason="deleted"):
        raise WebhookNotFound(f"no enabled webhook {webhook_id!r}")
    record(store, actor, "webhook.delete", {"webhook_id": webhook_id})


def rotate_secret(
    store: Store, webhook_id: str, *, settings: Settings, actor: Caller
) -> tuple[Webhook, str]:
    """A new secret (shown once); the old ones go on signing for the rotation overlap, so a
    receiver can switch without losing a message."""
    now = datetime.now(UTC)
    secret = new_secret()
    hook = store.rotate_webhook_secret(
        webhook_id,
        WebhookSecret(secret, now),
        old_expire_at=now + timedelta(seconds=settings.webhook_rotation_overlap_s),
    )
    if hook is None:
        raise WebhookNotFound(f"no enabled webhook {webhook_id!r}")
    record(store, actor, "webhook.rotate", {"webhook_id": webhook_id})
    return hook, secret


def list_deliveries(
    store: Store, webhook_id: str, *, state: str | None, limit: int
) -> list[Delivery]:
    get_webhook(store, webhook_id)
    wanted = None
    if state is not None:
        try:
            wanted = DeliveryState(state)
        except ValueError as error:
            raise InvalidInput(
                "state",
                errors=[
                    FieldError("state", f"one of: {', '.join(s.value for s in DeliveryState)}")
                ],
            ) from error
    return store.list_deliveries(webhook_id, state=wanted, limit=limit)


def webhook_fields(hook: Webhook) -> dict[str, Any]:
    """A subscription as listed: never a secret (only when each was made and until when it
    signs)."""
    return {
        "id": hook.id,
        "url": hook.url,
        "description": hook.description,
        "filter": hook.filter.as_json(),
        "created_at": hook.created_at.isoformat(),
        "disabled_at": None if hook.disabled_at is None else hook.disabled_at.isoformat(),
        "disabled_reason": hook.disabled_reason,
        "secrets": [
            {"created_at": s.created_at.isoformat(),
             "expires_at": None if s.expires_at is None else s.expires_at.isoformat()}
            for s in hook.secrets
        ],
    }  # fmt: skip


def delivery_fields(d: Delivery) -> dict[str, Any]:
    return {
        "id": d.id,
        "webhook_id": d.webhook_id,
        "event_type": d.event_type,
        "state": d.state.value,
        "attempts": d.attempts,
        "next_attempt_at": d.next_attempt_at.isoformat()
        if d.state is DeliveryState.PENDING
        else None,
        "last_status": d.last_status,
        "last_error": d.last_error,
        "created_at": d.created_at.isoformat(),
        "updated_at": d.updated_at.isoformat(),
        "delivered_at": None if d.delivered_at is None else d.delivered_at.isoformat(),
    }
