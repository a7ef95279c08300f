"""Alerts: one per episode of a series above its threshold (issue #19), as plain data.

Detection (service/domain/surges.py) says what happened to a series as *transitions*: an episode
opened, was updated while open, or closed. The store keeps one alert per episode, its id derived
from the series and the day the episode opened, so that the same transition stored twice (a
replayed batch, two processes detecting the same episode) is the same alert, never a second one.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date, datetime
from enum import StrEnum
from typing import Any


class AlertEvent(StrEnum):
    OPENED = "opened"
    UPDATED = "updated"
    CLOSED = "closed"


class AlertState(StrEnum):
    OPEN = "open"
    CLOSED = "closed"


class Measure(StrEnum):
    REPORTS = "reports"
    PEOPLE = "people"


# Fixed forever: alert ids derive from it (uuid5), so changing it would split episodes.
_ALERT_NAMESPACE = uuid.UUID("5d7c3f6e-19a1-4c7e-9f0b-3c2a1e0d9b19")


@dataclass(frozen=True, slots=True)
class SeriesKey:
    """Which daily series: a segment's (``segment_id``), a region's (``section`` and no segment)
    or a whole border's (neither); one kind of report or all (``kind`` None); reports or people."""

    border: str
    section: str | None = None
    segment_id: str | None = None
    kind: str | None = None
    measure: Measure = Measure.REPORTS


@dataclass(frozen=True, slots=True)
class AlertFigures:
    """What an episode looks like so far: its last day, its length in days, the counts observed
    and expected over it, the statistic now and its peak, and the day it closed (when it did)."""

    last_day: date
    days: int
    observed: float
    expected: float
    statistic: float
    peak_statistic: float
    closed_day: date | None = None


@dataclass(frozen=True, slots=True)
class AlertTransition:
    """What detection found: ``event`` happened to the episode of ``series`` that opened on
    ``opened_day``; ``at`` is when it was found (may be days after ``opened_day``: late reports)."""

    event: AlertEvent
    series: SeriesKey
    opened_day: date
    figures: AlertFigures
    at: datetime


@dataclass(frozen=True, slots=True)
class Alert:
    """One episode as stored. ``raised_at`` is when it was first found (it may be later than
    ``opened_day``: a late report can raise it after the fact); ``version`` counts its changes."""

    id: uuid.UUID
    state: AlertState
    series: SeriesKey
    opened_day: date
    figures: AlertFigures
    raised_at: datetime
    updated_at: datetime
    version: int


def alert_id(series: SeriesKey, opened_day: date) -> uuid.UUID:
    """The id of the episode of ``series`` that opened on ``opened_day``: the same everywhere."""
    parts = (
        series.border,
        series.section or "",
        series.segment_id or "",
        series.kind or "",
        series.measure.value,
        opened_day.isoformat(),
    )
    return uuid.uuid5(_ALERT_NAMESPACE, "\x1f".join(parts))


def state_after(event: AlertEvent) -> AlertState:
    return AlertState.CLOSED if event is AlertEvent.CLOSED else AlertState.OPEN


def event_type(event: AlertEvent) -> str:
    """The webhook event type of a transition: ``alert.opened`` and so on."""
    return f"alert.{event.value}"


EVENT_TYPES = tuple(event_type(e) for e in AlertEvent)


def alert_fields(alert: Alert) -> dict[str, Any]:
    """An alert as the API and webhook payloads show it (JSON-ready)."""
    f = alert.figures
    return {
        "id": str(alert.id),
        "state": alert.state.value,
        "border": alert.series.border,
        "section": alert.series.section,
        "segment_id": alert.series.segment_id,
        "kind": alert.series.kind,
        "measure": alert.series.measure.value,
        "opened_day": alert.opened_day.isoformat(),
        "last_day": f.last_day.isoformat(),
        "closed_day": None if f.closed_day is None else f.closed_day.isoformat(),
        "days": f.days,
        "observed": f.observed,
        "expected": f.expected,
        "statistic": f.statistic,
        "peak_statistic": f.peak_statistic,
        "raised_at": alert.raised_at.isoformat(),
        "updated_at": alert.updated_at.isoformat(),
        "version": alert.version,
    }


@dataclass(frozen=True, slots=True)
class AlertQuery:
    """Filters for listing alerts, newest change first; ``since`` keeps alerts updated at or
    after it; paging is by (updated_at, id) after ``after``."""

    state: AlertState | None = None
    border: str | None = None
    segment_id: str | None = None
    since: datetime | None = None
    limit: int = 100
    after: tuple[datetime, uuid.UUID] | None = None


@dataclass(frozen=True, slots=True)
class AlertPage:
    alerts: list[Alert]
    next_key: tuple[datetime, uuid.UUID] | None


def every_alert(page_of: Callable[[AlertQuery], AlertPage], query: AlertQuery) -> list[Alert]:
    """All the alerts ``query`` matches, read page by page with ``page_of`` (a store's list)."""
    out: list[Alert] = []
    while True:
        page = page_of(query)
        out += page.alerts
        if page.next_key is None:
            return out
        query = replace(query, after=page.next_key)
