"""What surge detection does in the transaction that counts reports, once for both stores.

A store counts reports into its day rollups and, in the same transaction, has their series
observe the days it touched (``detect``), closes the quiet days of series with an open episode
(``advance``), or replays every series after a border change (``rebuild``). What it reads and
writes for that — day counts, series states, alerts — is its own SQL, behind ``SurgeTables``
(postgis/surges.py, sqlite/surges.py); what is done with them is here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import Protocol

from service.domain.alerts import (
    Alert,
    AlertPage,
    AlertQuery,
    AlertState,
    AlertTransition,
    SeriesKey,
    every_alert,
)
from service.domain.surges.series import KEEP_DAYS, SeriesState
from service.domain.surges.watch import (
    SeriesChange,
    Watch,
    advance_open,
    close_orphans,
    detect_days,
    replay_all,
    transitions,
)

# Each UTC day's whole counts: (segment_id, kind, reports, people) of each segment and kind.
DayRows = dict[date, list[tuple[str, str, int, int]]]
# What a transaction counted: the (segment_id, kind) pairs of each UTC day it touched.
Touched = Mapping[date, set[tuple[str, str]]]

OPEN_ALERTS = AlertQuery(state=AlertState.OPEN, limit=1000)


class SurgeTables(Protocol):
    """A store's surge tables, read and written in the caller's transaction."""

    def day_rows(self, days: list[date]) -> DayRows: ...

    def days_since(self, first: date) -> DayRows: ...

    def states(self, keys: set[SeriesKey]) -> dict[SeriesKey, SeriesState]:
        """The stored states of ``keys`` (a series never seen has none)."""
        ...

    def open_states(self) -> dict[SeriesKey, SeriesState]:
        """The states of (at least) every series with an open episode."""
        ...

    def save(self, changes: Sequence[SeriesChange], at: datetime) -> None: ...

    def clear(self) -> None:
        """Every series state gone (before a rebuild saves the replayed ones)."""
        ...

    def list_alerts(self, query: AlertQuery) -> AlertPage: ...

    def record_alerts(self, changed: list[AlertTransition], now: datetime) -> list[Alert]: ...


def detect(tables: SurgeTables, touched: Touched, watch: Watch, *, now: datetime) -> list[Alert]:
    """Observe each touched day's whole count in every series it touched; store the states and
    the alerts; the alerts that changed."""
    changes = detect_days(touched, watch, day_rows=tables.day_rows, states=tables.states)
    return _keep(tables, changes, [], now)


def advance(tables: SurgeTables, watch: Watch, through: date, *, now: datetime) -> list[Alert]:
    """Close the quiet days up to ``through`` of the series with an open episode (their
    episodes may close); the alerts that changed."""
    return _keep(tables, advance_open(tables.open_states(), through, watch.params), [], now)


def rebuild(tables: SurgeTables, watch: Watch, today: date, *, now: datetime) -> list[Alert]:
    """Every series replayed from the day counts of the days its state keeps (after a border
    change: its series are not the old ones); alerts whose episode is gone are closed."""
    first = today - timedelta(days=KEEP_DAYS - 1)
    changes = replay_all(tables.days_since(first), watch, first_day=first, last_day=today)
    tables.clear()
    tables.save(changes, now)
    opened = every_alert(tables.list_alerts, OPEN_ALERTS)
    return tables.record_alerts(
        transitions(changes, at=now) + close_orphans(opened, changes, day=today, at=now), now
    )


def _keep(
    tables: SurgeTables, changes: list[SeriesChange], also: list[AlertTransition], now: datetime
) -> list[Alert]:
    tables.save(changes, now)
    return tables.record_alerts(transitions(changes, at=now) + also, now)
