"""Which series are watched, and what one day's counts do to them (issue #19).

A series is a place (a segment, its region, its border), by kind (or every kind together), by
measure (reports or people), counted per UTC day. A store that has just counted reports in (or
out) calls ``day_counts`` with the counts of each day they touched, ``watch`` with the states of
that day's series, and keeps what comes back: the new states, and the episode changes as alert
transitions (``transitions``), in the same transaction as the counts.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import numpy as np
from numpy.typing import NDArray

from service.domain.alerts import (
    Alert,
    AlertEvent,
    AlertFigures,
    AlertTransition,
    Measure,
    SeriesKey,
)
from service.domain.segments import BorderSegment
from service.domain.surges.cusum import SurgeParams, params_for
from service.domain.surges.series import (
    Episode,
    EpisodeEvent,
    SeriesState,
    advance,
    observe_many,
    replay,
)

_EVENTS = {
    "opened": AlertEvent.OPENED,
    "updated": AlertEvent.UPDATED,
    "closed": AlertEvent.CLOSED,
    # Corrected counts (a deletion) no longer raise the episode: it ends where it stands.
    "withdrawn": AlertEvent.CLOSED,
}


def region_of(segment: BorderSegment) -> str:
    """A segment's region: its file's ``region_pair``, else its section (as aggregates group)."""
    return str(segment.properties.get("region_pair") or segment.section)


def places_of(segment: BorderSegment) -> tuple[tuple[str | None, str | None], ...]:
    """(section, segment_id) of the segment's own series, its region's and its border's."""
    region = region_of(segment)
    return ((region, segment.segment_id), (region, None), (None, None))


def series_key_text(key: SeriesKey) -> str:
    """The key as stored: ``border|region|segment|kind|measure``, '' for none, '*' all kinds."""
    return "|".join(
        (key.border, key.section or "", key.segment_id or "", key.kind or "*", key.measure.value)
    )


def series_key_of(text: str) -> SeriesKey:
    border, section, segment_id, kind, measure = text.split("|")
    return SeriesKey(
        border, section or None, segment_id or None, None if kind == "*" else kind, Measure(measure)
    )


@dataclass(frozen=True, slots=True)
class SurgeConfig:
    """The settings detection runs with: the weekly false-alert budget and the report kinds
    (``Settings.surge_config``, service/settings.py)."""

    false_alerts_per_week: float
    kinds: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Watch:
    """What detection needs of the border and settings: the segments by id and the thresholds."""

    segments: Mapping[str, BorderSegment]
    params: SurgeParams
    # (segment_id, kind) -> its series as stored (series_key_text), reports' then people's: made
    # once each (a key costs more to build and hash than to count with, and every report of the
    # segment and kind needs them); and each series' key from that text.
    _texts: dict[tuple[str, str], tuple[tuple[str, ...], tuple[str, ...]]] = field(
        default_factory=dict, compare=False, repr=False
    )
    _key_of_text: dict[str, SeriesKey] = field(default_factory=dict, compare=False, repr=False)
    # The same as numbers, to count a day's rows in numpy (day_counts_of): (segment_id, kind) ->
    # its row in _pair_series, which holds the numbers of its 12 series (reports' 6, people's 6)
    # in _series_texts.
    _pair_row: dict[tuple[str, str], int] = field(default_factory=dict, compare=False, repr=False)
    _pair_series: list[list[int]] = field(default_factory=list, compare=False, repr=False)
    _series_number: dict[str, int] = field(default_factory=dict, compare=False, repr=False)
    _series_texts: list[str] = field(default_factory=list, compare=False, repr=False)
    _table: list[NDArray[np.int64]] = field(default_factory=list, compare=False, repr=False)

    def texts_of(
        self, segment_id: str, kind: str
    ) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
        """The series a report of this segment and kind counts in, as stored (reports',
        people's); None off the border."""
        found = self._texts.get((segment_id, kind))
        if found is None:
            segment = self.segments.get(segment_id)
            if segment is None:
                return None
            keys = list(_keys(segment, kind))
            for key in keys:
                self._key_of_text.setdefault(series_key_text(key), key)
            found = (
                tuple(series_key_text(k) for k in keys if k.measure is Measure.REPORTS),
                tuple(series_key_text(k) for k in keys if k.measure is Measure.PEOPLE),
            )
            self._texts[segment_id, kind] = found
        return found

    def pair_row(self, segment_id: str, kind: str) -> int | None:
        """The row of (segment_id, kind) in ``series_table``; None off the border."""
        row = self._pair_row.get((segment_id, kind))
        if row is None:
            texts = self.texts_of(segment_id, kind)
            if texts is None:
                return None
            numbers = []
            for text in (*texts[0], *texts[1]):
                number = self._series_number.get(text)
                if number is None:
                    number = self._series_number[text] = len(self._series_texts)
                    self._series_texts.append(text)
                numbers.append(number)
            row = self._pair_row[segment_id, kind] = len(self._pair_series)
            self._pair_series.append(numbers)
        return row

    def series_table(self) -> NDArray[np.int64]:
        """Each pair row's 12 series numbers (reports' 6, people's 6)."""
        if not self._table or len(self._table[0]) != len(self._pair_series):
            self._table[:] = [np.array(self._pair_series, dtype=np.int64).reshape(-1, 12)]
        return self._table[0]

    def series_number(self, text: str) -> int | None:
        return self._series_number.get(text)

    def series_count(self) -> int:
        return len(self._series_texts)

    def key_of(self, text: str) -> SeriesKey:
        """The series of a stored key text."""
        key = self._key_of_text.get(text)
        return series_key_of(text) if key is None else key


def watched_series(segments: Iterable[BorderSegment], kinds: Sequence[str]) -> int:
    """How many series the border and kinds make: the number the false-alert budget is spent over."""
    places = {(s.border, *place) for s in segments for place in places_of(s)}
    return len(places) * (len(kinds) + 1) * len(Measure)


def make_watch(segments: Sequence[BorderSegment], config: SurgeConfig) -> Watch:
    series = max(1, watched_series(segments, config.kinds))
    params = params_for(false_alerts_per_week=config.false_alerts_per_week, series=series)
    return Watch({s.segment_id: s for s in segments}, params)


def _keys(segment: BorderSegment, kind: str) -> Iterable[SeriesKey]:
    for section, segment_id in places_of(segment):
        for k in (kind, None):
            for measure in Measure:
                yield SeriesKey(segment.border, section, segment_id, k, measure)


def series_of(segment_kinds: Iterable[tuple[str, str]], watch: Watch) -> set[str]:
    """The series (as stored: series_key_text) that reports of these (segment_id, kind) pairs
    count in (none off the border)."""
    out: set[str] = set()
    for segment_id, kind in segment_kinds:
        keys = watch.texts_of(segment_id, kind)
        if keys is not None:
            out.update(keys[0])
            out.update(keys[1])
    return out


def day_counts(rows: Iterable[tuple[str, str, int, int]], watch: Watch) -> dict[str, int]:
    """Every series' count of one day (by series_key_text), from that day's (segment_id, kind,
    reports, people)."""
    counts: dict[str, int] = defaultdict(int)
    for segment_id, kind, reports, people in rows:
        keys = watch.texts_of(segment_id, kind)
        if keys is None:
            continue
        for key in keys[0]:
            counts[key] += reports
        for key in keys[1]:
            counts[key] += people
    return dict(counts)


def day_counts_of(
    rows: Iterable[tuple[str, str, int, int]], watch: Watch, texts: Iterable[str]
) -> dict[str, int]:
    """``day_counts`` of the series ``texts`` only (0 for a series no row counts in), summed in
    numpy: one lookup a row instead of twelve additions (whole numbers: the same sums)."""
    found: list[int] = []
    reports: list[int] = []
    people: list[int] = []
    for segment_id, kind, n, p in rows:
        row = watch.pair_row(segment_id, kind)
        if row is not None:
            found.append(row)
            reports.append(n)
            people.append(p)
    table = watch.series_table()
    sums = np.zeros(watch.series_count(), dtype=np.int64)
    if found:
        numbers = table[np.array(found, dtype=np.int64)]
        np.add.at(sums, numbers[:, :6], np.array(reports, dtype=np.int64)[:, None])
        np.add.at(sums, numbers[:, 6:], np.array(people, dtype=np.int64)[:, None])
    out: dict[str, int] = {}
    for text in texts:
        number = watch.series_number(text)
        out[text] = 0 if number is None else int(sums[number])
    return out


@dataclass(frozen=True, slots=True)
class SeriesChange:
    key: SeriesKey
    state: SeriesState
    events: tuple[EpisodeEvent, ...]


def detect_days(
    touched: Mapping[date, set[tuple[str, str]]],
    watch: Watch,
    *,
    day_rows: Callable[[list[date]], Mapping[date, Iterable[tuple[str, str, int, int]]]],
    states: Callable[[set[str]], Mapping[str, SeriesState]],
) -> list[SeriesChange]:
    """What counting reports in (or out) of these days and (segment_id, kind) pairs does to the
    series they count in: the days' whole counts come from ``day_rows`` (per day: segment_id,
    kind, reports, people), the stored states from ``states`` (by series_key_text). Each series
    takes all its days at once (observe_days), the baselines of all of them fitted together
    (observe_many); the series whose state changed, with their episode changes."""
    days = sorted(touched)
    rows = day_rows(days)
    wanted: dict[str, dict[date, int]] = {}
    for day in days:
        keys = series_of(touched[day], watch)
        if keys:
            counts = day_counts_of(rows.get(day, ()), watch, keys)
            for key in keys:
                wanted.setdefault(key, {})[day] = counts[key]
    if not wanted:
        return []
    stored = states(set(wanted))
    texts = sorted(wanted)
    befores = [stored.get(text) for text in texts]
    observed = observe_many(
        [(before, wanted[text]) for text, before in zip(texts, befores, strict=True)],
        params=watch.params,
    )
    changes: list[SeriesChange] = []
    for text, before, (after, events) in zip(texts, befores, observed, strict=True):
        if after is not None and after is not before and after != before:
            changes.append(SeriesChange(watch.key_of(text), after, tuple(events)))
    return changes


def advance_open(
    states: Mapping[SeriesKey, SeriesState], through: date, params: SurgeParams
) -> list[SeriesChange]:
    """Close the days up to ``through`` (yesterday: a day still going may yet get reports) of
    every series with an open episode and no count since, so that an episode whose series went
    quiet closes."""
    changes: list[SeriesChange] = []
    for key in sorted(states, key=series_key_text):
        state = states[key]
        if state.episode is None or state.last_day >= through:
            continue
        after, events = advance(state, day=through, params=params)
        if after != state:
            changes.append(SeriesChange(key, after, tuple(events)))
    return changes


def replay_all(
    days: Mapping[date, Iterable[tuple[str, str, int, int]]],
    watch: Watch,
    *,
    first_day: date,
    last_day: date,
) -> list[SeriesChange]:
    """Every series' state and episodes from its daily counts (``days``: each day's segment_id,
    kind, reports, people), replayed from ``first_day`` to ``last_day``: after the border
    changed, when the series themselves may have."""
    span = (last_day - first_day).days + 1
    series: dict[str, list[int]] = {}
    for day, rows in days.items():
        offset = (day - first_day).days
        if not 0 <= offset < span:
            continue
        for key, count in day_counts(rows, watch).items():
            series.setdefault(key, [0] * span)[offset] = count
    changes: list[SeriesChange] = []
    for text in sorted(series):
        counts = series[text]
        held = [i for i, c in enumerate(counts) if c]
        if not held:
            continue
        # From its first count to its last, as counting them in day by day would have left it
        # (the quiet days after are advance_open's).
        start, stop = held[0], held[-1] + 1
        state, events = replay(
            first_day=first_day + timedelta(days=start),
            counts=counts[start:stop],
            params=watch.params,
        )
        changes.append(SeriesChange(watch.key_of(text), state, tuple(events)))
    return changes


def _figures(episode: Episode) -> AlertFigures:
    return AlertFigures(
        last_day=episode.last_day,
        days=episode.days,
        observed=float(episode.observed),
        expected=round(episode.expected, 3),
        statistic=round(episode.statistic, 3),
        peak_statistic=round(episode.peak, 3),
        closed_day=episode.closed_on,
    )


def transitions(changes: Iterable[SeriesChange], *, at: datetime) -> list[AlertTransition]:
    """The alert transitions of these changes, found at ``at``."""
    out: list[AlertTransition] = []
    for change in changes:
        for event in change.events:
            kind = _EVENTS[event.kind]
            if event.episode.closed_on is not None:
                # A closed episode revised (a late report or a deletion before it closed): the
                # alert stays closed ("updated" would reopen it, which no replay does).
                kind = AlertEvent.CLOSED
            figures = _figures(event.episode)
            if event.kind == "withdrawn" and figures.closed_day is None:
                figures = AlertFigures(
                    figures.last_day, figures.days, figures.observed, figures.expected,
                    figures.statistic, figures.peak_statistic, closed_day=figures.last_day,
                )  # fmt: skip
            out.append(AlertTransition(kind, change.key, event.episode.opened_on, figures, at))
    return out


def close_orphans(
    open_alerts: Iterable[Alert], changes: Iterable[SeriesChange], *, day: date, at: datetime
) -> list[AlertTransition]:
    """Closing transitions for the open alerts whose episode the replayed series no longer have
    open (the border changed under them): closed on ``day``, found ``at``."""
    still_open = {
        (change.key, change.state.episode.opened_on)
        for change in changes
        if change.state.episode is not None
    }
    out = []
    for alert in open_alerts:
        if (alert.series, alert.opened_day) in still_open:
            continue
        f = alert.figures
        figures = AlertFigures(
            f.last_day, f.days, f.observed, f.expected, f.statistic, f.peak_statistic, day
        )
        out.append(AlertTransition(AlertEvent.CLOSED, alert.series, alert.opened_day, figures, at))
    return out
