"""The calendar plan of an aggregate is kept for small windows only, and a kept plan is the plan
worked out afresh."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from service.usecases import aggregates
from service.usecases.aggregates import CACHED_BUCKETS, time_plan

START = datetime(2025, 11, 28, 19, 8, 10, tzinfo=UTC)


@pytest.mark.parametrize(
    ("unit", "zone", "days", "grains"),
    [
        ("day", "UTC", 365, ("day",)),
        ("week", "America/Toronto", 365, ("day",)),
        ("month", "America/St_Johns", 800, ("month", "day")),
        (None, "Asia/Kathmandu", 30, ("month", "day")),
    ],
)
def test_a_kept_plan_is_the_plan_worked_out_again(
    unit: str | None, zone: str, days: int, grains: tuple[str, ...]
) -> None:
    args = (unit, ZoneInfo(zone), START, START + timedelta(days=days), grains)
    first = time_plan(*args)  # type: ignore[arg-type]
    again = time_plan(*args)  # type: ignore[arg-type]
    assert again is first  # from the cache
    assert first == aggregates._plan(*args)  # type: ignore[arg-type]
    buckets, periods, ranges = first
    assert buckets and (periods or ranges)


def test_a_window_of_many_buckets_is_not_kept() -> None:
    before = aggregates._cached_plan.cache_info().currsize
    args = ("day", ZoneInfo("UTC"), START, START + timedelta(days=CACHED_BUCKETS + 10), ("day",))
    plan = time_plan(*args)  # type: ignore[arg-type]
    assert len(plan[0]) > CACHED_BUCKETS
    assert time_plan(*args) is not plan  # type: ignore[arg-type]
    assert aggregates._cached_plan.cache_info().currsize == before
