"""Surge detection fits the baselines of all the series a batch touches at once (day_terms,
observe_many): the same numbers, bit for bit, as fitting each day of each series alone."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import date, timedelta

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from service.domain.surges import HORIZON_DAYS, KEEP_DAYS, SeriesState, params_for, replay
from service.domain.surges.cusum import FitRequest, _one_day, day_terms
from service.domain.surges.series import (
    Episode,
    EpisodeEvent,
    _observe_days,
    _Steps,
    observe_days,
    observe_many,
    state_to_bytes,
)
from service.domain.surges.watch import (
    SurgeConfig,
    Watch,
    day_counts,
    day_counts_of,
    make_watch,
    series_of,
)
from tests.factories import make_segment

FIRST = date(2025, 3, 3)
KINDS = ("crossing", "pushback", "death")
PARAMS = params_for(false_alerts_per_week=1.0, series=521)

# Quiet, busy and very busy days, with runs of zeros: what a segment's, a region's and a
# border's series hold.
a_count = st.one_of(st.integers(0, 3), st.integers(0, 60), st.integers(0, 100_000), st.just(0))


@st.composite
def fit_requests(draw: st.DrawFn) -> list[FitRequest]:
    """Days of series as a state holds them: the counts from the series' first day (its age is
    where the day falls in them), or the last KEEP_DAYS of an older one (its last horizon)."""
    requests = []
    for _ in range(draw(st.integers(1, 12))):
        if draw(st.booleans()):
            history = np.array(draw(st.lists(a_count, min_size=0, max_size=130)), dtype=np.int64)
            at = day_index = draw(st.integers(0, len(history)))
        else:
            history = np.array(draw(st.lists(a_count, min_size=KEEP_DAYS, max_size=KEEP_DAYS)))
            at = draw(st.integers(KEEP_DAYS - HORIZON_DAYS, KEEP_DAYS))
            day_index = at + draw(st.integers(0, 400))
        requests.append(FitRequest(history, at, day_index, draw(st.integers(0, 6))))
    return requests


@settings(max_examples=300, deadline=None)
@given(requests=fit_requests())
def test_many_days_fitted_together_equal_each_fitted_alone(requests: list[FitRequest]) -> None:
    assert day_terms(requests, PARAMS) == [_one_day(r, PARAMS) for r in requests]


def one_day_at_a_time(steps: _Steps[SeriesState | None]) -> tuple[object, list[EpisodeEvent]]:
    """Run a series' steps fitting each day alone, as the incremental step did before batches."""
    try:
        requests = next(steps)
        while True:
            requests = steps.send([_one_day(r, PARAMS) for r in requests])
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


@st.composite
def series_and_days(draw: st.DrawFn) -> tuple[SeriesState | None, dict[date, int]]:
    state: SeriesState | None = None
    if draw(st.booleans()):
        counts = draw(st.lists(a_count, min_size=1, max_size=160))
        state, _ = replay(first_day=FIRST, counts=counts, params=PARAMS)
    last = (state.last_day - FIRST).days if state else 0
    days = draw(
        st.dictionaries(
            st.one_of(
                st.integers(last - 12, last + 2),  # late and today's: the common case
                st.integers(-30, last + 60),  # before the series began, after a long quiet
            ),
            a_count,
            max_size=6,
        )
    )
    return state, {FIRST + timedelta(days=d): c for d, c in days.items()}


@settings(max_examples=150, deadline=None)
@given(series=st.lists(series_and_days(), min_size=1, max_size=8))
def test_many_series_observed_together_equal_one_at_a_time(
    series: list[tuple[SeriesState | None, Mapping[date, int]]],
) -> None:
    together = observe_many(series, params=PARAMS)
    assert together == [observe_days(state, days, params=PARAMS) for state, days in series]
    assert together == [
        one_day_at_a_time(_observe_days(state, days, params=PARAMS)) for state, days in series
    ]


@st.composite
def a_border_and_a_day(
    draw: st.DrawFn,
) -> tuple[Watch, list[tuple[str, str, int, int]], set[tuple[str, str]]]:
    """Segments in a few regions and borders, a day's rows (some off the border), and the
    (segment, kind) pairs a batch touched."""
    segments = [
        make_segment(
            f"s-{i}",
            border=draw(st.sampled_from(["GR-TR", "BG-TR"])),
            properties={
                "section": draw(st.sampled_from(["north", "south", None])),
                "region_pair": draw(st.sampled_from(["evros", None])),
            },
        )
        for i in range(draw(st.integers(1, 8)))
    ]
    watch = make_watch(segments, SurgeConfig(1.0, KINDS))
    pairs = st.tuples(
        st.sampled_from([s.segment_id for s in segments] + ["gone"]), st.sampled_from(KINDS)
    )
    rows = draw(st.dictionaries(pairs, st.tuples(a_count, a_count), max_size=30))
    touched = draw(st.sets(pairs, min_size=1, max_size=5))
    return watch, [(s, k, n, p) for (s, k), (n, p) in rows.items()], touched


@settings(max_examples=150, deadline=None)
@given(case=a_border_and_a_day())
def test_the_touched_series_counted_in_numpy_equal_every_series_counted(
    case: tuple[Watch, list[tuple[str, str, int, int]], set[tuple[str, str]]],
) -> None:
    watch, rows, touched = case
    wanted = series_of(touched, watch)
    every = day_counts(rows, watch)
    assert day_counts_of(rows, watch, wanted) == {key: every.get(key, 0) for key in wanted}


# The vectorised path of observe_many (a count for the day a series is at, or for the day after
# it: one numpy step across series) against the per-series path (observe_days).
a_dyadic_terms = st.tuples(
    st.sampled_from([0.25, 0.5, 1.0, 1.5]),  # slope
    st.sampled_from([0.0, -0.25, -0.5, -1.0]),  # offset
    st.sampled_from([2.0, 3.0, 4.0]),  # threshold: its half and 1.5 times are exact
)


@st.composite
def an_episode(draw: st.DrawFn, last_day: date) -> Episode | None:
    if draw(st.booleans()):
        return None
    opened = last_day - timedelta(days=draw(st.integers(0, 5)))
    return Episode(
        opened_on=opened,
        last_day=last_day,
        days=(last_day - opened).days + 1,
        peak=draw(st.sampled_from([2.0, 3.0, 4.5, 6.0])),
        observed=draw(st.integers(0, 50)),
        expected=draw(st.sampled_from([0.0, 1.5, 7.25])),
        statistic=draw(st.sampled_from([1.0, 2.0, 3.0])),
    )


@st.composite
def a_state(draw: st.DrawFn) -> SeriesState:
    """A replayed series (quiet, busy, ending in a surge or not), its last two held days
    sometimes given round terms and statistics so that a count reaches the threshold, or its
    half, exactly, with episodes open or not."""
    counts = draw(st.lists(a_count, min_size=2, max_size=150))
    if draw(st.booleans()):  # a surge at the end: episodes open, closing
        counts += draw(st.lists(st.integers(20, 400), min_size=1, max_size=6))
        counts += draw(st.lists(st.just(0), max_size=4))
    state, _ = replay(first_day=FIRST, counts=counts, params=PARAMS)
    if len(state.days) >= 2 and draw(st.booleans()):
        before, last = state.days[-2], state.days[-1]
        slope, offset, threshold = draw(a_dyadic_terms)
        before = replace(
            before,
            statistic=draw(st.sampled_from([0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0])),
            episode=draw(an_episode(state.last_day - timedelta(days=1))),
        )
        last = replace(
            last,
            slope=slope,
            offset=offset,
            threshold=threshold,
            statistic=draw(st.sampled_from([0.0, 1.0, 2.0])),
            episode=draw(an_episode(state.last_day)),
        )
        state = replace(state, days=(*state.days[:-2], before, last))
    return state


@st.composite
def a_change(draw: st.DrawFn) -> tuple[SeriesState | None, dict[date, int]]:
    """A series and its days' counts: mostly the day it is at or the next, else a late day,
    several days, a gap, or a new series."""
    kind = draw(
        st.sampled_from(["today", "today", "same", "next", "next", "late", "many", "gap", "new"])
    )
    count = draw(st.one_of(st.just(0), st.integers(0, 12), a_count))
    if kind == "new":
        return None, {FIRST + timedelta(days=draw(st.integers(0, 40))): count}
    state = draw(a_state())
    last = state.last_day
    if kind == "today":
        return state, {last: count}
    if kind == "same":
        return state, {last: state.counts[-1]}
    if kind == "next":
        return state, {last + timedelta(days=1): count}
    if kind == "late":
        return state, {last - timedelta(days=draw(st.integers(1, 30))): count}
    if kind == "gap":
        return state, {last + timedelta(days=draw(st.integers(2, 40))): count}
    offsets = draw(st.lists(st.integers(-5, 2), min_size=2, max_size=4, unique=True))
    return state, {last + timedelta(days=d): draw(a_count) for d in offsets}


@settings(max_examples=300, deadline=None)
@given(series=st.lists(a_change(), min_size=1, max_size=12))
def test_the_vectorised_steps_equal_the_per_series_path(
    series: list[tuple[SeriesState | None, Mapping[date, int]]],
) -> None:
    together = observe_many(series, params=PARAMS)
    alone = [observe_days(state, days, params=PARAMS) for state, days in series]
    assert together == alone
    assert repr(together) == repr(alone)  # bit for bit: a -0.0 for a 0.0 would show
    packed = [state_to_bytes(s) for s, _ in together if s is not None]
    assert packed == [state_to_bytes(s) for s, _ in alone if s is not None]


def test_a_count_that_reaches_the_threshold_exactly_opens_and_half_of_it_closes() -> None:
    """The edges of an episode on the vectorised path: the statistic equal to the threshold opens
    one (>=), equal to half of it closes one (not > h / 2)."""
    state, _ = replay(first_day=FIRST, counts=[5] * 40, params=PARAMS)
    before, last = state.days[-2], state.days[-1]
    episode = Episode(state.last_day, state.last_day, 1, 4.0, 9, 3.0, 4.0)
    quiet = replace(
        state,
        days=(
            *state.days[:-2],
            replace(before, statistic=1.0, episode=None),
            replace(last, slope=1.0, offset=0.0, threshold=4.0, episode=None),
        ),
    )
    opened = replace(
        state,
        days=(
            *state.days[:-2],
            replace(before, statistic=4.0, episode=episode),
            replace(last, slope=0.5, offset=-1.0, threshold=4.0, episode=episode),
        ),
    )
    series: list[tuple[SeriesState | None, Mapping[date, int]]] = [
        (quiet, {state.last_day: 3}),  # 1 + 3 = 4: opens
        (quiet, {state.last_day: 2}),  # 3: does not
        (opened, {state.last_day: 2}),  # 4 + 1 - 1 = 4: stays open
        (opened, {state.last_day: 0}),  # 4 - 1 = 3: stays open
        (replace(opened, days=(*opened.days[:-2], replace(opened.days[-2], statistic=3.0),
                               opened.days[-1])), {state.last_day: 0}),  # 3 - 1 = 2: closes
    ]  # fmt: skip
    together = observe_many(series, params=PARAMS)
    assert repr(together) == repr([observe_days(s, d, params=PARAMS) for s, d in series])
    kinds = [[e.kind for e in events] for _, events in together]
    assert kinds == [["opened"], [], ["updated"], ["updated"], ["closed"]]
