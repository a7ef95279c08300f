"""One series' detector state, updated by one day's count, and the episode changes it causes.

The state keeps the last ``KEEP_DAYS`` daily counts (what the baselines of the held days read)
and, for the last ``HORIZON_DAYS`` days plus one anchor day, each day's baseline, statistic and
open episode. A count is always a day's whole count (not an increment), so replaying it changes
nothing, and a deletion is a smaller count. A report for a past day within the horizon re-runs
the days from it forward from the day before's statistic: the result is the same as if it had
arrived on time. Older corrections change the counts the held days' baselines read and are
re-run from the horizon's start; what was decided before the horizon stays as it was.
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta
from typing import Any, Final, Literal, TypeVar

import numpy as np
import orjson
from numpy.typing import NDArray

from service.domain.surges import baseline as bl
from service.domain.surges.cusum import (
    DayTerms,
    FitRequest,
    Floats,
    SurgeParams,
    day_terms,
    step,
)

HORIZON_DAYS: Final = 28
KEEP_DAYS: Final = bl.WINDOW_DAYS + bl.GUARD_DAYS + HORIZON_DAYS
# A day's baseline never reads the counts of itself and the days just before it (the guard)
_UNREAD_DAYS: Final = min(bl.GUARD_DAYS, bl.SHORT_GUARD_DAYS)


@dataclass(frozen=True, slots=True)
class Episode:
    """An alert: from the day the statistic reached the threshold while it stays above half."""

    opened_on: date  # the day whose count opened it (a late report can open it days later)
    last_day: date
    days: int
    peak: float  # highest statistic
    observed: int  # counts summed over its days
    expected: float  # baselines summed over its days
    statistic: float  # on last_day
    closed_on: date | None = None  # the day the statistic fell back to half the threshold


@dataclass(frozen=True, slots=True)
class DayState:
    count: int
    expected: float
    slope: float
    offset: float
    threshold: float
    statistic: float
    episode: Episode | None  # open after this day


EventKind = Literal["opened", "updated", "closed", "withdrawn"]


@dataclass(frozen=True, slots=True)
class EpisodeEvent:
    """A change to store: ``withdrawn`` when corrected counts no longer raise the episode."""

    kind: EventKind
    episode: Episode


@dataclass(frozen=True, slots=True)
class SeriesState:
    first_day: date
    last_day: date
    counts: tuple[int, ...]  # days last_day - len + 1 .. last_day
    days: tuple[DayState, ...]  # days last_day - len + 1 .. last_day (at most HORIZON_DAYS + 1)

    @property
    def episode(self) -> Episode | None:
        return self.days[-1].episode if self.days else None

    @property
    def statistic(self) -> float:
        return self.days[-1].statistic if self.days else 0.0


def observe(
    state: SeriesState | None, *, day: date, count: int, params: SurgeParams
) -> tuple[SeriesState, list[EpisodeEvent]]:
    """Set ``day``'s whole count; return the new state and the episode changes it made."""
    if count < 0:
        raise ValueError("a day's count is never negative")
    if state is None:
        state = SeriesState(first_day=day, last_day=day - timedelta(days=1), counts=(), days=())
    if day < state.first_day:
        return _rebase(state, day=day, count=count, params=params)
    if day > state.last_day and (day - state.last_day).days > HORIZON_DAYS:
        # A long quiet spell: close its days with zeros a horizon at a time (as observing each
        # quiet day would), so that the re-run never starts before the counts it holds.
        state, quiet = observe(
            state, day=state.last_day + timedelta(days=HORIZON_DAYS), count=0, params=params
        )
        after, events = observe(state, day=day, count=count, params=params)
        return after, quiet + events
    if day > state.last_day:
        gap = (day - state.last_day).days
        counts = (*state.counts, *([0] * (gap - 1)), count)[-KEEP_DAYS:]
        grown = replace(state, last_day=day, counts=counts)
        start = state.last_day + timedelta(days=1)
        return _rerun(state, grown, start=start, changed=start, params=params)
    ring_start = state.last_day - timedelta(days=len(state.counts) - 1)
    if day < ring_start:
        return state, []
    at = (day - ring_start).days
    if state.counts[at] == count:
        return state, []
    counts = (*state.counts[:at], count, *state.counts[at + 1 :])
    return _rerun(state, replace(state, counts=counts), start=day, changed=day, params=params)


def observe_days(
    state: SeriesState | None, counts: Mapping[date, int], *, params: SurgeParams
) -> tuple[SeriesState | None, list[EpisodeEvent]]:
    """Set several days' whole counts at once: the same state as observing them one by one in day
    order, with one re-run from the earliest change instead of one per day (a batch of late
    reports touches many days of a series). The episode changes are the net ones: an episode
    that a day of the batch would open and a later one withdraw is never told."""
    return _drive(_observe_days(state, counts, params=params), params)


def observe_many(
    series: Sequence[tuple[SeriesState | None, Mapping[date, int]]], *, params: SurgeParams
) -> list[tuple[SeriesState | None, list[EpisodeEvent]]]:
    """``observe_days`` of many series (each a state and its days' counts), with the baselines
    their re-runs need fitted all together (``day_terms``): the same states and events as one
    series at a time, for a fraction of the numpy calls. The two common changes, a count for the
    day a series is at and one for the day after it, take their statistics in one numpy step
    across the series (``_step_all``, ``_at_last_day``, ``_at_later_day``)."""
    steps: list[_Steps[SeriesState | None] | None] = [None] * len(series)
    done: list[tuple[SeriesState | None, list[EpisodeEvent]] | None] = [None] * len(series)
    waiting: dict[int, list[FitRequest]] = {}
    last: list[tuple[int, SeriesState, int]] = []
    later: list[tuple[int, SeriesState, int, int]] = []
    for i, (state, counts) in enumerate(series):
        if len(counts) == 1:
            ((day, count),) = counts.items()
            if count < 0:
                pass  # observe_days says why
            elif state is None:  # a new series: its first day
                later.append((i, SeriesState(day, day - _ONE_DAY, (), ()), count, 1))
                continue
            elif day == state.last_day and len(state.days) > 1:  # its day again: no re-run
                if state.counts[-1] == count:
                    done[i] = (state, [])
                else:
                    last.append((i, state, count))
                continue
            elif state.days and 0 < (gap := (day - state.last_day).days) <= HORIZON_DAYS:
                later.append((i, state, count, gap))  # a later day: its fits and steps
                continue
        run = _observe_days(state, counts, params=params)
        steps[i] = run
        try:
            waiting[i] = next(run)
        except StopIteration as stop:
            done[i] = stop.value
    for i, stepped in (*_at_last_day(last), *_at_later_day(later, params)):
        done[i] = stepped
    while waiting:
        terms = day_terms([r for requests in waiting.values() for r in requests], params)
        at = 0
        asked, waiting = waiting, {}
        for i, requests in asked.items():
            given = terms[at : at + len(requests)]
            at += len(requests)
            going = steps[i]
            assert going is not None
            try:
                waiting[i] = going.send(given)
            except StopIteration as stop:
                done[i] = stop.value
    out: list[tuple[SeriesState | None, list[EpisodeEvent]]] = []
    for result in done:
        assert result is not None  # every series' steps ran to their end
        out.append(result)
    return out


_ONE_DAY: Final = timedelta(days=1)
_Observed = tuple[int, tuple[SeriesState, list[EpisodeEvent]]]


def _step_all(
    before: Floats, counts: Floats, slope: Floats, offset: Floats, threshold: Floats
) -> Floats:
    """``step`` of many days at once, bit for bit: the same float64 operations in the same order
    (``statistic + slope * count + offset``), and ``max(0.0, x)`` / ``min(cap, y)`` as Python's
    ``max`` and ``min`` pick (the first argument unless the second is strictly beyond it)."""
    x = before + slope * counts + offset
    y = np.where(x > 0.0, x, 0.0)
    cap = threshold * 1.5
    return np.where(y < cap, y, cap)


def _at_last_day(rows: Sequence[tuple[int, SeriesState, int]]) -> list[_Observed]:
    """``observe_days(state, {state.last_day: count})`` of many series (a report for the day each
    is at: a sixth of the series a batch of 500 changes in bench/surge_cost.py): the last day's
    statistic again from the day before's, with its baseline (``_rerun_steps`` keeps it: no count
    it reads changed). Each state holds at least two days and a new count for its last."""
    if not rows:
        return []
    was = [state.days[-1] for _, state, _ in rows]
    t = np.array([(w.slope, w.offset, w.threshold) for w in was]).reshape(len(was), 3)
    statistics: list[float] = _step_all(
        np.array([state.days[-2].statistic for _, state, _ in rows]),
        np.array([count for _, _, count in rows], dtype=np.float64),
        t[:, 0],
        t[:, 1],
        t[:, 2],
    ).tolist()
    out: list[_Observed] = []
    for (i, state, count), w, statistic in zip(rows, was, statistics, strict=True):
        days = state.days
        anchor = days[-2]
        if anchor.episode is None and w.episode is None and statistic < w.threshold:
            day = DayState(count, w.expected, w.slope, w.offset, w.threshold, statistic, None)
            events: list[EpisodeEvent] = []  # no episode before, after or on the day
        else:
            day = _close(
                anchor, day=state.last_day, count=count, expected=w.expected, slope=w.slope,
                offset=w.offset, threshold=w.threshold, statistic=statistic,
            )  # fmt: skip
            events = _diff(
                (w,), (day,), anchor=anchor, old_start=state.last_day, new_start=state.last_day
            )
        new = SeriesState(
            state.first_day, state.last_day, (*state.counts[:-1], count), (*days[:-1], day)
        )
        out.append((i, (new, events)))
    return out


def _at_later_day(
    rows: Sequence[tuple[int, SeriesState, int, int]], params: SurgeParams
) -> list[_Observed]:
    """``observe_days(state, {day: count})`` of many series, each ``(index, state, count, gap)``
    with ``day`` ``gap`` days after the state's last (at most a horizon; the days between count
    zero) and the state holding at least one day, or none for a new series (as
    ``_observe_days`` begins one): three in four of the series a batch changes. The new days'
    baselines are fitted in one ``day_terms`` call and their statistics stepped a day at a time
    across the series of each gap, as ``_rerun_steps`` makes them one series at a time (it
    fits each new day and keeps every held day)."""
    if not rows:
        return []
    rings = [
        (*state.counts, *([0] * (gap - 1)), count)[-KEEP_DAYS:] for _, state, count, gap in rows
    ]
    by_length: dict[int, list[int]] = {}
    for j, ring in enumerate(rings):
        by_length.setdefault(len(ring), []).append(j)
    histories: list[NDArray[np.int64]] = [np.empty(0, dtype=np.int64)] * len(rows)
    for length, js in by_length.items():
        block = np.array([rings[j] for j in js], dtype=np.int64).reshape(len(js), length)
        for history, j in zip(block, js, strict=True):
            histories[j] = history
    requests: list[FitRequest] = []
    by_gap: dict[int, list[int]] = {}
    for j, ((_, state, _, gap), ring) in enumerate(zip(rows, rings, strict=True)):
        begin = state.last_day + _ONE_DAY
        index, weekday, at = (begin - state.first_day).days, begin.weekday(), len(ring) - gap
        requests.extend(
            FitRequest(histories[j], at + n, index + n, (weekday + n) % 7) for n in range(gap)
        )
        by_gap.setdefault(gap, []).append(j)
    terms = day_terms(requests, params)
    starts = list(itertools.accumulate((gap for _, _, _, gap in rows), initial=0))
    statistics: list[list[float]] = [[]] * len(rows)
    for gap, js in by_gap.items():
        t = np.array([terms[starts[j] : starts[j] + gap] for j in js], dtype=np.float64)
        t = t.reshape(len(js), gap, 4)
        s = np.array([rows[j][1].days[-1].statistic if rows[j][1].days else 0.0 for j in js])
        last = np.array([rows[j][2] for j in js], dtype=np.float64)
        zero = np.zeros(len(js))
        steps = []
        for n in range(gap):
            s = _step_all(s, last if n == gap - 1 else zero, t[:, n, 1], t[:, n, 2], t[:, n, 3])
            steps.append(s)
        for j, row in zip(js, np.stack(steps, axis=1).tolist(), strict=True):
            statistics[j] = row
    out: list[_Observed] = []
    for j, (i, state, count, gap) in enumerate(rows):
        anchor = state.days[-1] if state.days else None
        quiet = anchor is None or anchor.episode is None  # no episode so far
        previous = anchor
        new_days = []
        day = state.last_day
        for n in range(gap):
            e, slope, offset, threshold = terms[starts[j] + n]
            statistic = statistics[j][n]
            day += _ONE_DAY
            c = count if n == gap - 1 else 0
            if quiet and statistic < threshold:
                previous = DayState(c, e, slope, offset, threshold, statistic, None)
            else:
                quiet = False
                previous = _close(
                    previous, day=day, count=c, expected=e, slope=slope, offset=offset,
                    threshold=threshold, statistic=statistic,
                )  # fmt: skip
            new_days.append(previous)
        begin = state.last_day + _ONE_DAY
        events: list[EpisodeEvent] = (
            []  # no episode before or on the new days
            if quiet
            else _diff((), new_days, anchor=anchor, old_start=begin, new_start=begin)
        )
        held = (*state.days, *new_days)[-(HORIZON_DAYS + 1) :]
        out.append((i, (SeriesState(state.first_day, day, rings[j], held), events)))
    return out


_S = TypeVar("_S", SeriesState, SeriesState | None)
# A re-run's steps: it yields the days it needs baselines for, is sent their terms, and
# returns what a call would have.
_Steps = Generator[list[FitRequest], list[DayTerms], tuple[_S, list[EpisodeEvent]]]


def _drive(steps: _Steps[_S], params: SurgeParams) -> tuple[_S, list[EpisodeEvent]]:
    """Run ``steps`` to the end, fitting what it asks for when it asks."""
    try:
        requests = next(steps)
        while True:
            requests = steps.send(day_terms(requests, params))
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


def _observe_days(
    state: SeriesState | None, counts: Mapping[date, int], *, params: SurgeParams
) -> _Steps[SeriesState | None]:
    if not counts:
        return state, []
    if min(counts.values()) < 0:
        raise ValueError("a day's count is never negative")
    ordered = sorted(counts)
    events: list[EpisodeEvent] = []
    if state is None:
        first = ordered[0]
        state = SeriesState(first_day=first, last_day=first - timedelta(days=1), counts=(), days=())
    # Days before the series began re-base it, and days after a long quiet spell step through
    # it: those go one at a time, as observe does them.
    while ordered and (
        ordered[0] < state.first_day
        or (ordered[0] > state.last_day and (ordered[0] - state.last_day).days > HORIZON_DAYS)
    ):
        state, new = observe(state, day=ordered[0], count=counts[ordered[0]], params=params)
        events += new
        ordered.pop(0)
    held = [day for day in ordered if day <= state.last_day]
    if held:  # days the state holds: their counts replaced, one re-run from the earliest
        ring = list(state.counts)
        ring_start = state.last_day - timedelta(days=len(ring) - 1)
        changed: date | None = None
        for day in held:
            at = (day - ring_start).days
            if at >= 0 and ring[at] != counts[day]:  # older than the held counts: ignored
                ring[at] = counts[day]
                changed = day if changed is None else min(changed, day)
        if changed is not None:
            recounted = SeriesState(state.first_day, state.last_day, tuple(ring), state.days)
            state, new = yield from _rerun_steps(state, recounted, start=changed, changed=changed)
            events += new
    later = [day for day in ordered if day > state.last_day]
    if later and (later[-1] - state.last_day).days > HORIZON_DAYS:
        for day in later:  # more than a horizon ahead: a step at a time, as observe goes
            state, new = observe(state, day=day, count=counts[day], params=params)
            events += new
        return state, events
    if later:  # new days (and the quiet ones between): one re-run from the day after the last
        last = later[-1]
        ring = [*state.counts, *([0] * (last - state.last_day).days)]
        ring_start = last - timedelta(days=len(ring) - 1)
        for day in later:
            ring[(day - ring_start).days] = counts[day]
        grown = SeriesState(state.first_day, last, tuple(ring[-KEEP_DAYS:]), state.days)
        begin = state.last_day + timedelta(days=1)
        state, new = yield from _rerun_steps(state, grown, start=begin, changed=begin)
        events += new
    return state, events


def advance(
    state: SeriesState, *, day: date, params: SurgeParams
) -> tuple[SeriesState, list[EpisodeEvent]]:
    """Close the days up to ``day`` with no reports (so an open episode can close)."""
    if day <= state.last_day:
        return state, []
    return observe(state, day=day, count=0, params=params)


def replay(
    *, first_day: date, counts: Sequence[int], params: SurgeParams
) -> tuple[SeriesState, list[EpisodeEvent]]:
    """The state after a series' daily counts from ``first_day`` on (at start-up, or rebuilt)."""
    state: SeriesState | None = None
    events: list[EpisodeEvent] = []
    for offset, value in enumerate(counts):
        state, new = observe(
            state, day=first_day + timedelta(days=offset), count=int(value), params=params
        )
        events.extend(new)
    if state is None:
        raise ValueError("replay needs at least one day")
    return state, events


def _rebase(
    state: SeriesState, *, day: date, count: int, params: SurgeParams
) -> tuple[SeriesState, list[EpisodeEvent]]:
    """A report older than the series' first day: its history is replayed from that day."""
    span = (state.last_day - day).days + 1
    if span > KEEP_DAYS:
        return state, []  # older than any baseline the held days read
    lead = (state.first_day - day).days
    counts = [count, *([0] * (lead - 1)), *state.counts]
    new_state, _ = replay(first_day=day, counts=counts, params=params)
    old_start = state.last_day - timedelta(days=len(state.days) - 1)
    new_start = new_state.last_day - timedelta(days=len(new_state.days) - 1)
    events = _diff(
        state.days, new_state.days, anchor=None, old_start=old_start, new_start=new_start
    )
    return new_state, events


def _rerun(
    old: SeriesState, state: SeriesState, *, start: date, changed: date, params: SurgeParams
) -> tuple[SeriesState, list[EpisodeEvent]]:
    """Recompute the held days from ``start`` (clamped to what the state can re-run)."""
    return _drive(_rerun_steps(old, state, start=start, changed=changed), params)


def _rerun_steps(
    old: SeriesState, state: SeriesState, *, start: date, changed: date
) -> _Steps[SeriesState]:
    """``_rerun`` as steps: the days that need a baseline are asked for all at once.

    A day's baseline reads only counts from before its guard, so the held days up to
    ``changed + _UNREAD_DAYS`` keep theirs: a new report for today costs one multiply-add.
    """
    held_start = old.last_day - timedelta(days=len(old.days) - 1)
    if old.days and held_start > old.first_day:
        start = max(start, held_start + timedelta(days=1))  # days[0] is only an anchor
    keep = (start - held_start).days if old.days else 0
    prefix = old.days[:keep]
    anchor = prefix[-1] if prefix else None
    ring_start = state.last_day - timedelta(days=len(state.counts) - 1)
    span = (state.last_day - start).days + 1
    first_at = (start - ring_start).days
    first_index = (start - state.first_day).days
    first_weekday = start.weekday()
    reuse = min(len(old.days) - keep, _UNREAD_DAYS + 1 + (changed - start).days, span)
    requests: list[FitRequest] = []
    if reuse < span:
        history = np.asarray(state.counts, dtype=np.int64)
        requests = [
            FitRequest(history, first_at + n, first_index + n, (first_weekday + n) % 7)
            for n in range(max(reuse, 0), span)
        ]
    terms = (yield requests) if requests else []
    counts = state.counts
    days = list(prefix)
    previous = anchor
    day = start
    for n in range(span):
        count = counts[first_at + n]
        if n < reuse:
            was = old.days[keep + n]
            t: DayTerms = (was.expected, was.slope, was.offset, was.threshold)
        else:
            t = terms[n - max(reuse, 0)]
        previous = _close(
            previous, day=day, count=count, expected=t[0], slope=t[1], offset=t[2], threshold=t[3]
        )
        days.append(previous)
        day += timedelta(days=1)
    new = SeriesState(
        state.first_day, state.last_day, state.counts, tuple(days[-(HORIZON_DAYS + 1) :])
    )
    events = _diff(
        old.days[keep:], days[len(prefix) :], anchor=anchor, old_start=start, new_start=start
    )
    return new, events


def _close(
    previous: DayState | None,
    *,
    day: date,
    count: int,
    expected: float,
    slope: float,
    offset: float,
    threshold: float,
    statistic: float | None = None,
) -> DayState:
    """The day's statistic (unless already stepped: ``statistic``) and episode from the day
    before's."""
    if statistic is None:
        before = previous.statistic if previous else 0.0
        statistic = step(before, count=count, slope=slope, offset=offset, threshold=threshold)
    episode = previous.episode if previous else None
    if episode is None:
        if statistic >= threshold:
            episode = Episode(day, day, 1, statistic, count, expected, statistic)
    elif statistic > threshold / 2:
        episode = Episode(
            episode.opened_on,
            day,
            episode.days + 1,
            max(episode.peak, statistic),
            episode.observed + count,
            episode.expected + expected,
            statistic,
        )
    else:
        episode = None
    return DayState(count, expected, slope, offset, threshold, statistic, episode)


def _episodes(
    anchor: DayState | None, days: Iterable[DayState], start: date
) -> dict[date, Episode]:
    """Each episode seen over ``days`` (from ``start``) as it stands at their end."""
    seen: dict[date, Episode] = {}
    current = anchor.episode if anchor else None
    if current is not None:
        seen[current.opened_on] = current
    day = start
    for state in days:
        if current is not None and (
            state.episode is None or state.episode.opened_on != current.opened_on
        ):
            seen[current.opened_on] = replace(seen[current.opened_on], closed_on=day)
        current = state.episode
        if current is not None:
            seen[current.opened_on] = current
        day += timedelta(days=1)
    return seen


def _diff(
    old: Sequence[DayState],
    new: Sequence[DayState],
    *,
    anchor: DayState | None,
    old_start: date,
    new_start: date,
) -> list[EpisodeEvent]:
    """The episode events that turn the old run of days into the new one."""
    if (anchor is None or anchor.episode is None) and not any(
        d.episode is not None for run in (old, new) for d in run
    ):
        return []  # no episode on any of the days (most series): nothing to tell
    return _events(_episodes(anchor, old, old_start), _episodes(anchor, new, new_start))


def _events(before: dict[date, Episode], after: dict[date, Episode]) -> list[EpisodeEvent]:
    events: list[EpisodeEvent] = []
    for key in sorted(after):
        episode, was = after[key], before.get(key)
        if was is None:
            events.append(EpisodeEvent("opened", replace(episode, closed_on=None)))
            if episode.closed_on is not None:
                events.append(EpisodeEvent("closed", episode))
        elif episode != was:
            closing = episode.closed_on is not None and was.closed_on is None
            events.append(EpisodeEvent("closed" if closing else "updated", episode))
    events.extend(
        EpisodeEvent("withdrawn", before[key]) for key in sorted(before) if key not in after
    )
    return events


def state_to_dict(state: SeriesState) -> dict[str, Any]:
    """A JSON-ready form of the state (dates as ISO text): what the stores write (they hand
    orjson the dataclasses themselves, which it writes as these same bytes; tested) and
    ``state_from_dict`` reads. Written out field by field: ``dataclasses.asdict`` took 0.7 ms a
    state."""
    return {
        "first_day": state.first_day.isoformat(),
        "last_day": state.last_day.isoformat(),
        "counts": list(state.counts),
        "days": [
            {
                "count": d.count,
                "expected": d.expected,
                "slope": d.slope,
                "offset": d.offset,
                "threshold": d.threshold,
                "statistic": d.statistic,
                "episode": None if d.episode is None else _episode_dict(d.episode),
            }
            for d in state.days
        ],
    }


def _episode_dict(e: Episode) -> dict[str, Any]:
    return {
        "opened_on": e.opened_on.isoformat(),
        "last_day": e.last_day.isoformat(),
        "days": e.days,
        "peak": e.peak,
        "observed": e.observed,
        "expected": e.expected,
        "statistic": e.statistic,
        "closed_on": None if e.closed_on is None else e.closed_on.isoformat(),
    }


def state_from_dict(data: dict[str, Any]) -> SeriesState:
    episodes: dict[str, Episode] = {}  # held days share their open episode: read it once

    def episode(raw: dict[str, Any] | None) -> Episode | None:
        if raw is None:
            return None
        closed = raw.get("closed_on")
        key = f"{raw['opened_on']}|{raw['last_day']}|{raw['statistic']}|{closed}"
        if key not in episodes:
            episodes[key] = Episode(
                opened_on=date.fromisoformat(raw["opened_on"]),
                last_day=date.fromisoformat(raw["last_day"]),
                days=raw["days"],
                peak=raw["peak"],
                observed=raw["observed"],
                expected=raw["expected"],
                statistic=raw["statistic"],
                closed_on=date.fromisoformat(closed) if closed else None,
            )
        return episodes[key]

    return SeriesState(
        first_day=date.fromisoformat(data["first_day"]),
        last_day=date.fromisoformat(data["last_day"]),
        counts=tuple(data["counts"]),
        days=tuple(
            DayState(
                d["count"], d["expected"], d["slope"], d["offset"], d["threshold"],
                d["statistic"], episode(d["episode"]),
            )
            for d in data["days"]
        ),
    )  # fmt: skip


# The stored state, packed (schema: PostGIS 0018, SQLite step 12): a ~5 KB JSON state went over
# PostgreSQL's TOAST threshold (~2 KB), and writing ~1,200 of them was a third of detection on
# PostGIS. Packed, a state of 119 counts and 29 held days is ~1.5 KB; the floats are float64, so
# the state read back equals the one written (tested against the JSON form). Layout, little
# endian: a header (format 1, first and last day as ordinals, the numbers of counts, held days
# and distinct episodes, the width of the counts), the held days' five floats, the counts then
# the held days' counts (in that width, unsigned), each held day's episode (0 = none, else
# 1 + its index), and the episodes (dates as ordinals, 0 = not closed).
_PACKED: Final = 1
_HEADER: Final = struct.Struct("<BiiHBBc")
_EPISODE: Final = struct.Struct("<iiiqiddd")


def state_to_bytes(state: SeriesState) -> bytes:
    """The state packed as the stores write it (``state_from_bytes`` reads it back)."""
    days = state.days
    counts = (*state.counts, *[d.count for d in days])
    try:  # every count under 256 (most series): a byte each, packed in C
        packed = bytes(counts)
        width = b"B"
    except ValueError:
        top = max(counts)
        width = b"B" if top < 1 << 8 else b"H" if top < 1 << 16 else b"I" if top < 1 << 32 else b"Q"
        packed = struct.pack(f"<{len(counts)}{width.decode()}", *counts)
    episodes: dict[Episode, int] = {}
    refs = bytearray()
    for d in days:
        e = d.episode
        refs.append(0 if e is None else episodes.setdefault(e, len(episodes)) + 1)
    n, m = len(state.counts), len(days)
    floats = [x for d in days for x in (d.expected, d.slope, d.offset, d.threshold, d.statistic)]
    return b"".join(
        (
            _HEADER.pack(
                _PACKED, state.first_day.toordinal(), state.last_day.toordinal(), n, m,
                len(episodes), width,
            ),
            struct.pack(f"<{5 * m}d", *floats),
            packed,
            bytes(refs),
            *(
                _EPISODE.pack(
                    e.opened_on.toordinal(), e.last_day.toordinal(), e.days, e.observed,
                    0 if e.closed_on is None else e.closed_on.toordinal(),
                    e.peak, e.expected, e.statistic,
                )
                for e in episodes
            ),
        )
    )  # fmt: skip


def state_from_bytes(raw: bytes | str) -> SeriesState:
    """A stored state: packed (``state_to_bytes``), or the JSON text written before it."""
    if isinstance(raw, str) or raw[:1] != bytes((_PACKED,)):
        return state_from_dict(orjson.loads(raw))
    _, first, last, n, m, k, width = _HEADER.unpack_from(raw)
    at = _HEADER.size
    floats = struct.unpack_from(f"<{5 * m}d", raw, at)
    at += 40 * m
    form = struct.Struct(f"<{n + m}{width.decode()}")
    counts = form.unpack_from(raw, at)
    at += form.size
    refs = raw[at : at + m]
    at += m
    episodes = []
    for _ in range(k):
        o, lst, days, observed, closed, peak, expected, statistic = _EPISODE.unpack_from(raw, at)
        at += _EPISODE.size
        episodes.append(
            Episode(
                opened_on=date.fromordinal(o), last_day=date.fromordinal(lst), days=days,
                peak=peak, observed=observed, expected=expected, statistic=statistic,
                closed_on=date.fromordinal(closed) if closed else None,
            )
        )  # fmt: skip
    return SeriesState(
        first_day=date.fromordinal(first),
        last_day=date.fromordinal(last),
        counts=counts[:n],
        days=tuple(
            DayState(
                counts[n + i], floats[j], floats[j + 1], floats[j + 2], floats[j + 3],
                floats[j + 4], episodes[refs[i] - 1] if refs[i] else None,
            )
            for i, j in zip(range(m), range(0, 5 * m, 5), strict=True)
        ),
    )  # fmt: skip
