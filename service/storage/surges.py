"""What surge detection does in the transaction that counts reports, once for both stores.

A store counts reports into its day rollups and, in the same transaction, has their series
observe the days it touched (``detect``), closes the quiet days of series with an open episode
(``advance``), or replays every series after a border change (``rebuild``). What it reads and
writes for that (day counts, series states, the surge token, alerts) is its own SQL, behind
``SurgeTables`` (postgis/surges.py, sqlite/surges.py); what is done with them is here.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
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
    series_key_text,
    transitions,
)
from service.storage.surge_cache import SeriesCache, new_token

# Each UTC day's whole counts: (segment_id, kind, reports, people) of each segment and kind.
DayRows = dict[date, list[tuple[str, str, int, int]]]

_OPEN = AlertQuery(state=AlertState.OPEN, limit=1000)


class SurgeTables(Protocol):
    """A store's surge tables, read and written in the caller's transaction."""

    def token_and_day_rows(self, days: list[date]) -> tuple[int | None, DayRows]:
        """The stored surge token (surge_cache.py) and each day's rows, in one round trip
        where the store can."""
        ...

    def days_since(self, first: date) -> DayRows: ...

    def states(self, keys: set[str]) -> dict[str, SeriesState]:
        """The stored states of the series ``keys`` name (series_key_text); none if never seen."""
        ...

    def open_states(self) -> dict[SeriesKey, SeriesState]:
        """The states of (at least) every series with an open episode."""
        ...

    def save(self, changes: Sequence[SeriesChange], at: datetime, *, token: int) -> None:
        """Store the changed states and the token that vouches for them."""
        ...

    def clear(self) -> None:
        """Every series state gone (before a rebuild saves the replayed ones)."""
        ...

    def list_alerts(self, query: AlertQuery) -> AlertPage: ...

    def record_alerts(self, changed: list[AlertTransition], now: datetime) -> list[Alert]: ...


def detect(
    tables: SurgeTables,
    touched: Mapping[date, set[tuple[str, str]]],
    watch: Watch,
    *,
    cache: SeriesCache,
    now: datetime | None = None,
) -> list[Alert]:
    """Observe each touched day's whole count in every series it touched; store the states and
    the alerts; the alerts that changed. The states come from ``cache`` while the stored token
    is its own (surge_cache.py), else from the store."""
    now = now or datetime.now(UTC)
    read_days = sorted(touched)
    token, rows = tables.token_and_day_rows(read_days)
    cache.check(token)

    def day_rows(days: list[date]) -> Mapping[date, Iterable[tuple[str, str, int, int]]]:
        # Read with the token, in one statement: the days detect_days asks for are these.
        if days != read_days:
            raise ValueError(f"detection asked for days {days}, not the touched {read_days}")
        return rows

    def states(keys: set[str]) -> dict[str, SeriesState]:
        found, missing = cache.known(keys)
        if missing:
            read = tables.states(missing)
            cache.read(missing, read)
            found.update(read)
        return found

    with _collector_paused():
        changes = detect_days(touched, watch, day_rows=day_rows, states=states)
    if changes:
        token = cache.wrote({series_key_text(c.key): c.state for c in changes})
        tables.save(changes, now, token=token)
    return tables.record_alerts(transitions(changes, at=now), now)


# Python's cyclic garbage collector, paused while detection moves series through their states.
# Those are acyclic objects (freed by their reference counts), tens of thousands a detection, and
# most live only while it runs; with the collector on, they were carried into its oldest
# generation by the young collections that ran meanwhile, and set off full collections over the
# whole heap (the border's geometries, the cached states): about a third of what detection cost
# ingest (bench/surge_cost.py, docs/surges.md). Paused, they are freed as they go and only the
# new states remain to collect. Process-wide, so counted: the collector is on again when the last
# detection under way ends (if it was on when the first began).
class _CollectorPause:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.under_way = 0  # detections under way
        self.was_on = False  # whether the collector was on when the first began


_PAUSE = _CollectorPause()


@contextmanager
def _collector_paused() -> Iterator[None]:
    with _PAUSE.lock:
        if _PAUSE.under_way == 0:
            _PAUSE.was_on = gc.isenabled()
            gc.disable()
        _PAUSE.under_way += 1
    try:
        yield
    finally:
        with _PAUSE.lock:
            _PAUSE.under_way -= 1
            if _PAUSE.under_way == 0 and _PAUSE.was_on:
                gc.enable()


def advance(tables: SurgeTables, watch: Watch, through: date, *, now: datetime) -> list[Alert]:
    """Close the quiet days up to ``through`` of the series with an open episode (their
    episodes may close); the alerts that changed."""
    changes = advance_open(tables.open_states(), through, watch.params)
    if changes:
        tables.save(changes, now, token=new_token())
    return tables.record_alerts(transitions(changes, at=now), now)


def rebuild(tables: SurgeTables, watch: Watch, today: date, *, now: datetime) -> list[Alert]:
    """Every series replayed from the day counts of the days its state keeps (after a border
    change: its series are not the old ones); alerts whose episode is gone are closed."""
    first = today - timedelta(days=KEEP_DAYS - 1)
    changes = replay_all(tables.days_since(first), watch, first_day=first, last_day=today)
    tables.clear()
    tables.save(changes, now, token=new_token())
    opened = every_alert(tables.list_alerts, _OPEN)
    closing = close_orphans(opened, changes, day=today, at=now)
    return tables.record_alerts(transitions(changes, at=now) + closing, now)
