"""Calendar periods (``period_floor``, ``period_after``) against a walk over the days: a period
is the run of days that share its key (ISO year and week, year and month, ...), with no
arithmetic of the service's."""

from __future__ import annotations

from datetime import date, timedelta

from hypothesis import given
from hypothesis import strategies as st

from service.domain.aggregation import UNITS, Unit, period_after, period_floor

_ONE_DAY = timedelta(days=1)


def _key(unit: Unit, d: date) -> tuple[int, ...]:
    if unit == "day":
        return (d.toordinal(),)
    if unit == "week":
        iso = d.isocalendar()
        return (iso.year, iso.week)
    if unit == "month":
        return (d.year, d.month)
    if unit == "quarter":
        return (d.year, (d.month + 2) // 3)
    return (d.year,)


def _first_day(unit: Unit, d: date) -> date:
    while _key(unit, d - _ONE_DAY) == _key(unit, d):
        d -= _ONE_DAY
    return d


_days = st.dates(min_value=date(1900, 1, 2), max_value=date(2199, 12, 31))


@given(unit=st.sampled_from(UNITS), d=_days)
def test_the_floor_is_the_first_day_with_the_same_key(unit: Unit, d: date) -> None:
    assert period_floor(unit, d) == _first_day(unit, d)


@given(unit=st.sampled_from(UNITS), d=_days)
def test_the_next_period_starts_the_day_after_the_key_changes(unit: Unit, d: date) -> None:
    start = _first_day(unit, d)
    last = start
    while _key(unit, last + _ONE_DAY) == _key(unit, start):
        last += _ONE_DAY
    assert period_after(unit, start) == last + _ONE_DAY
