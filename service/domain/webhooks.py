"""Webhook subscriptions and their deliveries (Standard Webhooks 1.0), as plain data and rules.

A subscription names a URL, which alerts it wants (a filter) and its signing secrets (``whsec_``
and base64 of 32 random bytes; several while one is rotated out). Every alert transition that
matches becomes one *delivery* in the outbox, written in the transaction that wrote the alert; a
worker sends it (service/usecases/deliver_webhooks.py) until the receiver answers 2xx, it answers
410 (the subscription is then disabled), or the retry schedule runs out.
"""

from __future__ import annotations

import base64
import ipaddress
import random
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

import orjson

from service.domain.alerts import EVENT_TYPES, Alert, AlertTransition, alert_fields, event_type
from service.domain.errors import FieldError, InvalidInput

# The Standard Webhooks schedule: after a failed attempt, wait this long before the next one
# (5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h: eight attempts over about 27.5 hours).
STANDARD_SCHEDULE_S: tuple[float, ...] = (5, 300, 1800, 7200, 18000, 36000, 36000)
JITTER = 0.2  # each wait is drawn from +-20% of the schedule's, so receivers are not hit in step
MAX_RETRY_AFTER_S = 86_400.0  # a receiver's Retry-After is honoured up to a day


class DeliveryState(StrEnum):
    PENDING = "pending"  # waiting for its next attempt (or being attempted now)
    DELIVERED = "delivered"  # the receiver answered 2xx
    FAILED = "failed"  # the schedule ran out, or the receiver cannot ever take it
    GONE = "gone"  # the receiver answered 410, or the subscription was deleted


@dataclass(frozen=True, slots=True)
class WebhookSecret:
    """A signing secret (``whsec_...``); it signs until ``expires_at`` (None: until rotated)."""

    secret: str
    created_at: datetime
    expires_at: datetime | None = None

    def active_at(self, moment: datetime) -> bool:
        return self.expires_at is None or moment < self.expires_at


@dataclass(frozen=True, slots=True)
class WebhookFilter:
    """Which alerts a subscription wants: each field None (or empty) means any."""

    event_types: tuple[str, ...] = EVENT_TYPES
    borders: tuple[str, ...] | None = None
    sections: tuple[str, ...] | None = None
    segment_ids: tuple[str, ...] | None = None
    kinds: tuple[str, ...] | None = None
    measures: tuple[str, ...] | None = None

    def matches(self, transition: AlertTransition) -> bool:
        s = transition.series
        return (
            event_type(transition.event) in self.event_types
            and _any_or(self.borders, s.border)
            and _any_or(self.sections, s.section)
            and _any_or(self.segment_ids, s.segment_id)
            and _any_or(self.kinds, s.kind)
            and _any_or(self.measures, s.measure.value)
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "event_types": list(self.event_types),
            "borders": _list_or_none(self.borders),
            "sections": _list_or_none(self.sections),
            "segment_ids": _list_or_none(self.segment_ids),
            "kinds": _list_or_none(self.kinds),
            "measures": _list_or_none(self.measures),
        }


def _any_or(allowed: tuple[str, ...] | None, value: str | None) -> bool:
    return not allowed or value in allowed


def _list_or_none(values: tuple[str, ...] | None) -> list[str] | None:
    return None if values is None else list(values)


_FILTER_LISTS = ("borders", "sections", "segment_ids", "kinds", "measures")


def parse_filter(raw: object) -> WebhookFilter:
    """A filter from JSON (``{"event_types": [...], "borders": [...], ...}``); InvalidInput
    naming each bad field."""
    if raw is None:
        return WebhookFilter()
    if not isinstance(raw, dict):
        raise InvalidInput("filter", errors=[FieldError("filter", "must be an object")])
    errors = [
        FieldError(f"filter.{name}", "unknown field")
        for name in raw
        if name not in (*_FILTER_LISTS, "event_types")
    ]
    values: dict[str, tuple[str, ...] | None] = {}
    for name in (*_FILTER_LISTS, "event_types"):
        value = raw.get(name)
        if value is None:
            continue
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            errors.append(FieldError(f"filter.{name}", "must be a list of text, or null"))
            continue
        values[name] = tuple(value)
    bad_types = set(values.get("event_types") or ()) - set(EVENT_TYPES)
    if bad_types:
        errors.append(
            FieldError("filter.event_types", f"each must be one of: {', '.join(EVENT_TYPES)}")
        )
    bad_measures = set(values.get("measures") or ()) - {"reports", "people"}
    if bad_measures:
        errors.append(FieldError("filter.measures", "each must be 'reports' or 'people'"))
    if errors:
        raise InvalidInput("the filter is not valid", errors=errors)
    event_types = values.pop("event_types", None) or EVENT_TYPES
    return WebhookFilter(event_types=event_types, **values)


def filter_from_json(raw: dict[str, Any]) -> WebhookFilter:
    """A stored filter (written by ``as_json``)."""
    lists = {n: None if raw.get(n) is None else tuple(raw[n]) for n in _FILTER_LISTS}
    return WebhookFilter(event_types=tuple(raw.get("event_types") or EVENT_TYPES), **lists)


@dataclass(frozen=True, slots=True)
class Webhook:
    """A subscription. ``disabled_at`` is set when it was deleted or its receiver answered 410
    (``disabled_reason`` says which); a disabled subscription gets no more deliveries."""

    id: str
    url: str
    filter: WebhookFilter
    secrets: tuple[WebhookSecret, ...]
    created_at: datetime
    description: str = ""
    disabled_at: datetime | None = None
    disabled_reason: str | None = None

    def signing_secrets(self, moment: datetime) -> list[str]:
        return [s.secret for s in self.secrets if s.active_at(moment)]


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message in the outbox: ``id`` is its ``webhook-id`` (the same on every attempt, so a
    receiver drops a repeat by it)."""

    id: str
    webhook_id: str
    event_type: str
    payload: bytes
    state: DeliveryState
    attempts: int
    next_attempt_at: datetime
    created_at: datetime
    updated_at: datetime
    last_status: int | None = None
    last_error: str | None = None
    delivered_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ClaimedDelivery:
    """A delivery a worker took (its lease runs until ``lease_until``), with what sending needs."""

    delivery: Delivery
    url: str
    secrets: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one attempt: the delivery's new state and, while pending, its next time."""

    state: DeliveryState
    next_attempt_at: datetime | None
    status: int | None
    error: str | None


def new_webhook_id() -> str:
    return f"wh_{uuid.uuid4().hex}"


def new_secret() -> str:
    """A fresh signing secret: ``whsec_`` and base64 of 32 random bytes (as the spec shows)."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def delivery_id(webhook_id: str, alert: Alert) -> str:
    """The ``webhook-id`` of the message telling ``webhook_id`` about this version of ``alert``:
    derived, so that storing the same change twice enqueues one message, not two."""
    return "msg_" + uuid.uuid5(alert.id, f"{webhook_id}:{alert.version}").hex


def payload(transition: AlertTransition, alert: Alert) -> dict[str, Any]:
    """The message body, in the spec's recommended shape: type, timestamp, data."""
    return {
        "type": event_type(transition.event),
        "timestamp": alert.updated_at.isoformat(),
        "data": alert_fields(alert),
    }


def retry_delay_s(
    attempts: int, schedule: Sequence[float], *, rng: random.Random | None = None
) -> float | None:
    """How long to wait after the ``attempts``-th failed attempt (jittered), or None when the
    schedule has run out."""
    if attempts < 1 or attempts > len(schedule):
        return None
    base = schedule[attempts - 1]
    return base * (1 + JITTER * (2 * (rng or random).random() - 1))


def retry_after_s(header: str | None, now: datetime) -> float | None:
    """Seconds a ``Retry-After`` header asks for (delay-seconds or an HTTP date), capped at a
    day; None when absent or unreadable."""
    if header is None:
        return None
    header = header.strip()
    if header.isdigit():
        return min(float(header), MAX_RETRY_AFTER_S)
    try:
        when = parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return min(max((when - now).total_seconds(), 0.0), MAX_RETRY_AFTER_S)


def outcome(
    *,
    attempts: int,
    status: int | None,
    error: str | None,
    retry_after: str | None,
    now: datetime,
    schedule: Sequence[float],
    refused: bool = False,
    rng: random.Random | None = None,
) -> Outcome:
    """The rule for one attempt's result: 2xx delivered; 410 gone; a target this service will
    not call (``refused``: a private address) failed at once; anything else (another status, a
    timeout, a refused connection) retried on the schedule, later if the receiver's Retry-After
    asks for longer, and failed when the schedule has run out."""
    if refused:
        return Outcome(DeliveryState.FAILED, None, None, error)
    if status is not None and 200 <= status < 300:
        return Outcome(DeliveryState.DELIVERED, None, status, None)
    if status == 410:
        return Outcome(DeliveryState.GONE, None, status, "the receiver answered 410 Gone")
    error = error or f"the receiver answered {status}"
    delay = retry_delay_s(attempts, schedule, rng=rng)
    if delay is None:
        return Outcome(DeliveryState.FAILED, None, status, error)
    asked = retry_after_s(retry_after, now)
    if asked is not None:
        delay = max(delay, asked)
    return Outcome(DeliveryState.PENDING, now + timedelta(seconds=delay), status, error)


def parse_url(url: object) -> str:
    """A subscription URL: http(s), with a host, no credentials or fragment; InvalidInput
    otherwise. Where it points is checked separately (``refused_address``)."""
    if not isinstance(url, str) or len(url) > 2000:
        raise InvalidInput("url", errors=[FieldError("url", "must be text (at most 2000)")])
    parts = urlsplit(url.strip())
    reason = None
    if parts.scheme not in ("http", "https"):
        reason = "must be an http or https URL"
    elif not parts.hostname:
        reason = "must name a host"
    elif parts.username is not None or parts.password is not None:
        reason = "must not carry credentials (the signature authenticates the sender)"
    elif parts.fragment:
        reason = "must not have a fragment"
    else:
        try:
            _ = parts.port
        except ValueError:
            reason = "has a port that is not a number from 0 to 65535"
    if reason is not None:
        raise InvalidInput("the webhook URL is not valid", errors=[FieldError("url", reason)])
    return parts.geturl()


def refused_address(address: str) -> str | None:
    """Why an address may not receive webhooks (loopback, private, link-local and the like:
    a subscription must not reach into the service's own network), or None when it may."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for question, name in (
        ("is_loopback", "loopback"),
        ("is_link_local", "link-local"),
        ("is_private", "private"),
        ("is_multicast", "multicast"),
        ("is_reserved", "reserved"),
        ("is_unspecified", "unspecified"),
    ):
        if getattr(ip, question):
            return f"{address} is a {name} address"
    if not ip.is_global:
        return f"{address} is not a public address"
    return None


def deliveries_for(
    transition: AlertTransition, alert: Alert, hooks: Sequence[Webhook], *, now: datetime
) -> list[Delivery]:
    """The outbox messages one stored change of ``alert`` makes: one per enabled subscription
    whose filter matches, due now."""
    body = orjson.dumps(payload(transition, alert))
    return [
        Delivery(
            id=delivery_id(hook.id, alert),
            webhook_id=hook.id,
            event_type=event_type(transition.event),
            payload=body,
            state=DeliveryState.PENDING,
            attempts=0,
            next_attempt_at=now,
            created_at=now,
            updated_at=now,
        )
        for hook in hooks
        if hook.disabled_at is None and hook.filter.matches(transition)
    ]


def secrets_as_json(secrets_: Sequence[WebhookSecret]) -> list[dict[str, Any]]:
    return [
        {
            "secret": s.secret,
            "created_at": s.created_at.isoformat(),
            "expires_at": None if s.expires_at is None else s.expires_at.isoformat(),
        }
        for s in secrets_
    ]


def secrets_from_json(raw: Sequence[dict[str, Any]]) -> tuple[WebhookSecret, ...]:
    return tuple(
        WebhookSecret(
            s["secret"],
            datetime.fromisoformat(s["created_at"]),
            None if s.get("expires_at") is None else datetime.fromisoformat(s["expires_at"]),
        )
        for s in raw
    )


def rotated(
    hook: Webhook, new: WebhookSecret, *, old_expire_at: datetime
) -> tuple[WebhookSecret, ...]:
    """The secrets after a rotation: the new one, and each still active one until
    ``old_expire_at`` (or its own earlier expiry); expired ones are dropped."""
    kept = tuple(
        WebhookSecret(
            s.secret,
            s.created_at,
            old_expire_at if s.expires_at is None else min(s.expires_at, old_expire_at),
        )
        for s in hook.secrets
        if s.active_at(new.created_at)
    )
    return (new, *(s for s in kept if s.active_at(new.created_at)))
