"""The one rule for public figures, and the public calendar, hold for all inputs."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from service.domain.aggregation import UNITS, period_after, period_floor
from service.domain.release import (
    HIDDEN,
    PublicRule,
    ReleaseInfo,
    day_start,
    public_window,
    publish,
    publish_many,
    release_through,
)

rules = st.builds(PublicRule, min_count=st.integers(1, 20), round_to=st.integers(1, 20))


@given(rule=rules, reports=st.integers(0, 10**6), extra=st.integers(0, 10**6))
def test_small_figures_zero_included_are_hidden_and_others_rounded(
    rule: PublicRule, reports: int, extra: int
) -> None:
    people = reports + extra  # every report holds at least one person
    shown = publish(reports, people, rule)
    if reports < rule.min_count:
        assert shown == HIDDEN
        return
    for value, exact in ((shown.reports, reports), (shown.people, people)):
        assert value is not None
        assert value % rule.round_to == 0 and value >= rule.round_to
        assert abs(value - exact) <= max(rule.round_to // 2, rule.round_to - exact)


def test_zero_and_small_counts_publish_alike() -> None:
    rule = PublicRule()
    assert {publish(n, 3 * n, rule) for n in range(5)} == {HIDDEN}
    assert publish(5, 5, rule) == publish(7, 7, rule) == (5, 5)
    assert publish(8, 12, rule) == (10, 10)


@given(
    rule=rules,
    counts=st.lists(st.tuples(st.integers(0, 500), st.integers(0, 500)), min_size=1, max_size=50),
)
def test_the_table_rule_is_the_scalar_rule(rule: PublicRule, counts: list[tuple[int, int]]) -> None:
    reports = np.asarray([r for r, _ in counts], dtype=np.int64)
    people = np.asarray([r + p for r, p in counts], dtype=np.int64)
    hidden, shown_r, shown_p = publish_many(reports, people, rule)
    for i, (r, p) in enumerate(counts):
        one = publish(r, r + p, rule)
        assert bool(hidden[i]) == one.hidden
        if not one.hidden:
            assert (int(shown_r[i]), int(shown_p[i])) == (one.reports, one.people)


instants = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)
)


@given(
    unit=st.sampled_from(UNITS),
    start=st.one_of(st.none(), instants),
    length=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=800)),
    open_end=st.booleans(),
    cut_at=instants,
    delay_h=st.floats(0, 72),
)
def test_public_windows_are_whole_periods_the_release_holds(
    unit: str, start: datetime | None, length: timedelta, open_end: bool, cut_at: datetime,
    delay_h: float,
) -> None:  # fmt: skip
    through = release_through(cut_at, delay_h)
    assert day_start(through) <= cut_at - timedelta(hours=delay_h)  # every day in it has ended
    release = ReleaseInfo(1, cut_at, through, date(2020, 3, 4))
    end = None if open_end or start is None else start + length
    window = public_window(unit, start, end, release)  # type: ignore[arg-type]
    assert period_floor(unit, window.start) == window.start  # type: ignore[arg-type]
    assert window.end >= window.start
    if not window.is_empty:
        assert period_floor(unit, window.end) == window.end  # type: ignore[arg-type]
        assert window.end <= through
        # It covers what was asked, within what the release holds whole.
        if start is not None:
            assert day_start(window.start) <= start
        if end is not None and end <= day_start(period_floor(unit, through)):  # type: ignore[arg-type]
            assert day_start(window.end) >= end
            assert window.widened == (
                day_start(window.start) != start or day_start(window.end) != end
            )


def test_a_window_without_start_begins_with_the_release_year() -> None:
    """The first report's own day would say one report was seen that day."""
    release = ReleaseInfo(1, datetime(2026, 6, 1, tzinfo=UTC), date(2026, 5, 31), date(2025, 7, 9))
    window = public_window("month", None, None, release)
    assert (window.start, window.end) == (date(2025, 1, 1), date(2026, 5, 1))
    assert period_after("month", window.end) == date(2026, 6, 1)


def test_rounding_alone_can_pin_a_hidden_cell_whose_siblings_sit_at_rounding_edges() -> None:
    """The residual the threat model states: margins are rounded from exact counts, so a reader
    who knows a margin's cells can bound a hidden one. Cells 4, 12 and 12 publish as hidden, 10
    and 10; their margin 28 as 30, so the hidden cell is at least 28 - 12 - 12 = 4: exactly 4.
    With any further hidden cell in the margin (most margins hold many), the bound falls to 0."""
    rule = PublicRule()
    cells = [publish(n, n, rule) for n in (4, 12, 12)]
    margin = publish(28, 28, rule)
    assert cells[0].hidden and cells[1].reports == cells[2].reports == 10
    half = rule.round_to // 2
    assert margin.reports is not None
    low = (margin.reports - half) - sum((c.reports or 0) + half for c in cells[1:])
    assert low == 4 == rule.min_count - 1
    low_with_another_hidden_cell = low - (rule.min_count - 1)
    assert low_with_another_hidden_cell <= 0
