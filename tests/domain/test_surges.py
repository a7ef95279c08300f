"""Surge detection (issue #19): the statistics on simulated series, and the incremental step."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.domain.surges import (
    HORIZON_DAYS,
    SurgeParams,
    observe,
    params_for,
    replay,
    run_batch,
    state_from_bytes,
    state_from_dict,
    state_to_bytes,
    state_to_dict,
)
from service.domain.surges.baseline import PHI_PRIOR, phi_estimate
from service.domain.surges.cusum import day_baseline

FIRST = date(2025, 3, 3)
PARAMS = params_for(false_alerts_per_week=1.0, series=521)


def in_control(seed: int, *, days: int, mean: float, phi: float) -> np.ndarray:
    """Negative-binomial counts (variance = phi x mean) with a weekday effect."""
    rng = np.random.default_rng(seed)
    weekday = np.array([1.2, 1.1, 1.0, 1.0, 1.0, 0.8, 0.9])
    mu = mean * weekday[(FIRST.weekday() + np.arange(days)) % 7]
    return rng.negative_binomial(mu / (phi - 1.0), 1.0 / phi).astype(np.int64)


levels = st.sampled_from([(0.3, 1.5), (3.0, 2.0), (30.0, 1.5)])


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), level=levels)
def test_in_control_series_raise_few_alerts(seed: int, level: tuple[float, float]) -> None:
    # 20 series x 1 year in control, thresholds for 521 series and 1 false alert a week: about
    # 20 * 52 / 521 = 2 expected. A Poisson count of mean 2 passes 10 with odds of 1e-5 (a bound
    # of 4, as first written, failed one example in twenty: seed 33 at (3.0, 2.0) opened 5).
    counts = np.vstack(
        [in_control(seed + i, days=365, mean=level[0], phi=level[1]) for i in range(20)]
    )
    opened = run_batch(counts, first_day=FIRST, params=PARAMS).opened
    assert opened.sum() <= 10


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), level=levels, start=st.integers(120, 200))
def test_a_step_of_five_sd_is_detected_within_two_weeks(
    seed: int, level: tuple[float, float], start: int
) -> None:
    mean, phi = level
    counts = in_control(seed, days=240, mean=mean, phi=phi)
    counts[start : start + 14] += int(np.ceil(5 * np.sqrt(mean * phi)))
    run = run_batch(counts[None, :], first_day=FIRST, params=PARAMS)
    assert run.is_open[0, start : start + 14].any()


days_of_counts = st.lists(st.integers(0, 40), min_size=1, max_size=140)


@settings(max_examples=40, deadline=None)
@given(counts=days_of_counts, threshold=st.floats(2.0, 20.0), quiet=st.floats(2.0, 20.0))
def test_incremental_equals_batch(counts: list[int], threshold: float, quiet: float) -> None:
    params = SurgeParams(threshold=threshold, quiet_threshold=quiet)
    state, events = replay(first_day=FIRST, counts=counts, params=params)
    run = run_batch(np.array([counts], dtype=np.int64), first_day=FIRST, params=params)
    held = len(state.days)
    assert [d.statistic for d in state.days] == pytest.approx(run.statistic[0, -held:].tolist())
    opened = {e.episode.opened_on for e in events if e.kind == "opened"}
    assert opened == {FIRST + timedelta(days=int(i)) for i in np.flatnonzero(run.opened[0])}
    assert (state.episode is not None) == bool(run.is_open[0, -1])


@settings(max_examples=40, deadline=None)
@given(
    counts=st.lists(st.integers(0, 40), min_size=30, max_size=140),
    lateness=st.integers(1, HORIZON_DAYS - 1),
    extra=st.integers(1, 60),
)
def test_a_late_report_gives_what_it_would_have_given_on_time(
    counts: list[int], lateness: int, extra: int
) -> None:
    late_day = len(counts) - 1 - lateness
    on_time = list(counts)
    on_time[late_day] += extra
    expected, _ = replay(first_day=FIRST, counts=on_time, params=PARAMS)
    state, _ = replay(first_day=FIRST, counts=counts, params=PARAMS)
    state, _ = observe(
        state, day=FIRST + timedelta(days=late_day), count=on_time[late_day], params=PARAMS
    )
    assert state.counts == expected.counts
    assert [d.statistic for d in state.days] == pytest.approx([d.statistic for d in expected.days])
    assert state.episode == expected.episode


def test_a_late_report_opens_an_episode_dated_on_its_own_day() -> None:
    counts = in_control(1, days=120, mean=2.0, phi=1.5).tolist()
    state, _ = replay(first_day=FIRST, counts=counts, params=PARAMS)
    day = FIRST + timedelta(days=115)
    state, events = observe(state, day=day, count=80, params=PARAMS)
    assert events[0].kind == "opened"
    assert events[0].episode.opened_on == day


def test_a_replayed_count_changes_nothing() -> None:
    state, _ = replay(first_day=FIRST, counts=[1, 2, 3] * 20, params=PARAMS)
    again, events = observe(state, day=state.last_day, count=state.counts[-1], params=PARAMS)
    assert again == state
    assert events == []


def test_an_episode_opens_updates_and_closes() -> None:
    # The surge's days raise the baseline once they are in its window (after the 7-day guard):
    # the episode closes within weeks.
    counts = in_control(2, days=130, mean=3.0, phi=1.5)
    counts[80:84] += 40
    state, events = replay(first_day=FIRST, counts=counts.tolist(), params=PARAMS)
    kinds = [e.kind for e in events]
    assert kinds[0] == "opened" and "updated" in kinds and kinds[-1] == "closed"
    closed = events[-1].episode
    assert closed.observed > closed.expected and closed.peak >= PARAMS.threshold
    assert closed.closed_on is not None and state.episode is None


def test_a_deleted_surge_withdraws_its_episode() -> None:
    counts = in_control(3, days=100, mean=3.0, phi=1.5).tolist()
    day = FIRST + timedelta(days=99)
    state, _ = replay(first_day=FIRST, counts=counts, params=PARAMS)
    state, opened = observe(state, day=day, count=90, params=PARAMS)
    state, withdrawn = observe(state, day=day, count=counts[-1], params=PARAMS)
    assert [e.kind for e in opened] == ["opened"]
    assert [e.kind for e in withdrawn] == ["withdrawn"]


def test_the_state_survives_a_round_trip_through_json_data() -> None:
    counts = in_control(4, days=100, mean=3.0, phi=1.5)
    counts[95:] += 40
    state, _ = replay(first_day=FIRST, counts=counts.tolist(), params=PARAMS)
    assert state.episode is not None
    assert state_from_dict(state_to_dict(state)) == state


@settings(max_examples=60, deadline=None)
@given(counts=st.lists(st.one_of(st.integers(0, 5), st.integers(0, 500)), min_size=1, max_size=160))
def test_the_stores_write_a_state_as_its_json_data(counts: list[int]) -> None:
    # The stores hand orjson the state itself (its frozen dataclasses, written in Rust): the
    # same bytes as state_to_dict's data, which state_from_dict reads back.
    state, _ = replay(first_day=FIRST, counts=counts, params=PARAMS)
    assert orjson.dumps(state) == orjson.dumps(state_to_dict(state))
    assert state_from_dict(orjson.loads(orjson.dumps(state))) == state


@settings(max_examples=80, deadline=None)
@given(
    counts=st.lists(
        st.one_of(st.integers(0, 5), st.integers(0, 500), st.integers(0, 100_000)),
        min_size=1,
        max_size=160,
    ),
    surge=st.integers(0, 5_000),
)
def test_a_packed_state_reads_back_equal(counts: list[int], surge: int) -> None:
    # What the stores write (migration 0018): packed, and read back equal, float for float;
    # states written before it as JSON text (bytes or text) are read as they were.
    counts = counts[:-10] + [c + surge for c in counts[-10:]]
    state, _ = replay(first_day=FIRST, counts=counts, params=PARAMS)
    packed = state_to_bytes(state)
    assert state_from_bytes(packed) == state
    assert state_from_bytes(orjson.dumps(state)) == state
    assert state_from_bytes(orjson.dumps(state).decode()) == state


@pytest.mark.parametrize("top", [0, 255, 256, 65_535, 65_536, 1 << 32])
def test_a_packed_state_takes_the_narrowest_width_its_counts_fit(top: int) -> None:
    # Counts under 256 are packed a byte each (bytes(), in C); any larger count widens them all.
    state, _ = replay(first_day=FIRST, counts=[3, 0, 7, 1, 2, 0, 4, 5, 1, 2, top], params=PARAMS)
    packed = state_to_bytes(state)
    width = {0: b"B", 255: b"B", 256: b"H", 65_535: b"H", 65_536: b"I"}.get(top, b"Q")
    assert packed[13:14] == width  # the header's last byte (series._HEADER: 14 bytes)
    assert state_from_bytes(packed) == state


def test_a_packed_state_is_under_postgres_toast_threshold() -> None:
    # a full state (119 counts, 29 held days) of a busy series, no episode: ~1.5 KB packed
    counts = in_control(5, days=200, mean=300.0, phi=1.5)
    state, _ = replay(first_day=FIRST, counts=counts.tolist(), params=PARAMS)
    assert state.episode is None and len(state.days) == 29
    assert len(state_to_bytes(state)) < 2000 < len(orjson.dumps(state))


@given(budget=st.floats(0.01, 100.0), series=st.integers(1, 100_000))
def test_more_series_or_a_smaller_budget_never_lower_the_threshold(
    budget: float, series: int
) -> None:
    params = params_for(false_alerts_per_week=budget, series=series)
    for more in (
        params_for(false_alerts_per_week=budget, series=series * 2),
        params_for(false_alerts_per_week=budget / 2, series=series),
    ):
        assert more.threshold >= params.threshold
        assert more.quiet_threshold >= params.quiet_threshold


@settings(max_examples=60, deadline=None)
@given(
    days=st.lists(st.integers(0, 400), min_size=1, max_size=30, unique=True),
    counts=st.lists(st.integers(1, 9), min_size=30, max_size=30),
)
def test_gaps_longer_than_the_kept_days_end_as_a_day_by_day_run(
    days: list[int], counts: list[int]
) -> None:
    # Found by bench/surge_cost.py on realistic data: a series quiet for more than the 119 days
    # it keeps failed on its next report (the re-run started before the counts it held).
    by_day = {d: c for d, c in zip(sorted(days), counts, strict=False)}
    state = None
    for day in sorted(by_day):
        state, _ = observe(state, day=FIRST + timedelta(days=day), count=by_day[day], params=PARAMS)
    assert state is not None
    first = min(by_day)
    full = [by_day.get(d, 0) for d in range(first, max(by_day) + 1)]
    replayed, _ = replay(first_day=FIRST + timedelta(days=first), counts=full, params=PARAMS)
    assert state.counts == replayed.counts
    assert state.days[1:] == replayed.days[1:]  # days[0] is the anchor the horizon starts from


@settings(max_examples=40, deadline=None)
@given(
    days=st.lists(st.integers(0, 400), min_size=1, max_size=30),
    counts=st.lists(st.integers(0, 9), min_size=30, max_size=30),
)
def test_any_arrival_order_of_whole_day_counts_is_taken(days: list[int], counts: list[int]) -> None:
    """Late reports in any order (a phone offline for months): each day's whole count is taken,
    whatever came before; nothing fails, and the last count given for a day is the one kept."""
    state = None
    last: dict[int, int] = {}
    for day, count in zip(days, counts, strict=False):
        state, _ = observe(state, day=FIRST + timedelta(days=day), count=count, params=PARAMS)
        last[day] = count
    assert state is not None
    ring_start = state.last_day - timedelta(days=len(state.counts) - 1)
    for day, count in last.items():
        at = (FIRST + timedelta(days=day) - ring_start).days
        if 0 <= at < len(state.counts) and FIRST + timedelta(days=day) >= state.first_day:
            assert state.counts[at] == count


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), level=levels, phase=st.floats(0.0, 2 * np.pi))
def test_in_control_series_in_a_season_raise_few_alerts(
    seed: int, level: tuple[float, float], phase: float
) -> None:
    # The steepest season bench/surges.py simulates (a yearly sine of 0.6 on the log scale): the
    # baseline's trend follows it. Counted after 13 weeks, as the benchmark counts: a series
    # younger than that in a steep rise alerts more (docs/surges.md, Limits). 20 series x 39
    # weeks: about 1.5 false alerts expected; at most 6 were seen in 40 seeds.
    rng = np.random.default_rng(seed)
    t = np.arange(365)
    mu = level[0] * np.exp(0.6 * np.sin(2 * np.pi * t / 365.25 + phase))
    phi = level[1]
    counts = rng.negative_binomial(mu / (phi - 1.0), 1.0 / phi, size=(20, 365)).astype(np.int64)
    opened = run_batch(counts, first_day=FIRST, params=PARAMS).opened
    assert opened[:, 91:].sum() <= 10


@pytest.mark.parametrize("growth", [0.01, -0.01])
def test_the_baseline_follows_a_season_to_the_day(growth: float) -> None:
    # A busy series rising (falling) 1% a day, without noise: the level of the window's last four
    # weeks is three weeks old by the day it is for (a baseline without the trend was 20% off).
    t = np.arange(120)
    counts = np.round(30.0 * np.exp(growth * t)).astype(np.int64)
    fit = day_baseline(counts, day_index=120, weekday=(FIRST + timedelta(days=120)).weekday())
    assert fit is not None
    truth = 30.0 * np.exp(growth * 120)
    assert abs(fit[0] / truth - 1.0) < 0.06


@given(
    pearson_per_day=st.floats(0.5, 5.0),
    quiet=st.floats(0.05, 1.0),
    busy=st.floats(5.0, 100.0),
)
def test_a_quiet_series_dispersion_leans_on_the_prior_more_than_a_busy_ones(
    pearson_per_day: float, quiet: float, busy: float
) -> None:
    # The same spread over the same 77 days: a quiet series' few reports cannot tell it, and its
    # phi stays nearer the prior (under-estimated, it made most of the false alerts).
    dof = np.asarray(77.0)
    pearson = np.asarray(pearson_per_day * 77.0)
    quiet_phi = phi_estimate(pearson, dof, np.asarray(quiet))
    busy_phi = phi_estimate(pearson, dof, np.asarray(busy))
    assert abs(quiet_phi - PHI_PRIOR) <= abs(busy_phi - PHI_PRIOR) + 1e-12
    assert abs(busy_phi - pearson_per_day) <= abs(pearson_per_day - PHI_PRIOR) * 0.3 + 1e-9
