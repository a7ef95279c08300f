"""Surge detection fits the baselines of all the series a batch touches at once (day_terms,
observe_many): the same numbers, bit for bit, as fitting each day of each series alone."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, timedelta

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from service.domain.surges import HORIZON_DAYS, KEEP_DAYS, SeriesState, params_for, replay
from service.domain.surges.cusum import FitRequest, _one_day, day_terms
from service.domain.surges.series import (
    EpisodeEvent,
    _observe_days,
    _Steps,
    observe_days,
    observe_many,
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
