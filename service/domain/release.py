"""The public release: the only thing a caller without an analyst key learns of the reports.

Statistical agencies do not answer arbitrary queries over microdata: they publish fixed tables,
with small values hidden and the rest rounded. So does this service. A release is cut from the
reports (``ReleaseRow``): exact counts of reports and people per cell of one fixed partition,

    UTC day x segment (None: beyond reach of the border) x kind x direction x side,

holding only days that ended at least ``delay_h`` hours before the cut. Everything public is a
sum of whole cells over whole periods of the fixed UTC calendar (day, ISO week, month, quarter,
year), grouped by the partition's own keys (segment, and its section, region or border; kind,
direction, side), and every figure so made, cell or margin, goes through one rule, ``publish``:
below ``min_count`` (zero included) it is hidden, otherwise it is rounded to ``round_to``.

What a public caller can therefore learn is a function of the release alone: never a position
finer than a segment, a time finer than a UTC day, anything less than ``delay_h`` old, nor whether
a hidden figure is zero or small. What it does not hide (margins bound hidden cells; see
docs/threat-model.md) is said there and tested in tests/attacks.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from service.domain.aggregation import Unit, period_after, period_floor


@dataclass(frozen=True, slots=True)
class PublicRule:
    """Which figures the public sees, and how coarsely."""

    min_count: int = 5  # a count below this, zero included, is hidden
    round_to: int = 5  # every other count is rounded to a multiple of this


class Published(NamedTuple):
    """One published figure: both counts rounded, or both hidden (None)."""

    reports: int | None
    people: int | None

    @property
    def hidden(self) -> bool:
        return self.reports is None


HIDDEN = Published(None, None)


def rounded(value: int, base: int) -> int:
    """``value`` to the nearest multiple of ``base`` (halves up), never below ``base``: a shown
    figure is never 0, which is kept for nothing (hidden figures cover zero)."""
    return max(base, base * ((2 * value + base) // (2 * base)))


def publish(reports: int, people: int, rule: PublicRule) -> Published:
    """The one rule for every public figure. People follow their reports: hidden with them, and
    otherwise rounded on their own (a group of many reports may hold few people each)."""
    if reports < rule.min_count:
        return HIDDEN
    return Published(rounded(reports, rule.round_to), rounded(people, rule.round_to))


BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]


def publish_many(
    reports: IntArray, people: IntArray, rule: PublicRule
) -> tuple[BoolArray, IntArray, IntArray]:
    """``publish`` over arrays of counts (a table of thousands of cells at once): which figures
    are hidden, and the rounded reports and people of the others (0 where hidden)."""
    base = rule.round_to
    hidden = reports < rule.min_count

    def rounded_all(values: IntArray) -> IntArray:
        out = np.maximum(base, base * ((2 * values + base) // (2 * base)))
        return np.where(hidden, 0, out)

    return hidden, rounded_all(reports), rounded_all(people)


class ReleaseRow(NamedTuple):
    """One cell of the release: exact counts, never published as they are."""

    day: date
    segment_id: str | None
    kind: str
    direction: str | None
    side: str | None
    reports: int
    people: int
    groups: int  # linked reports counted once, at the cell of their group's anchor
    people_est: int  # per group, the largest count reported (docs/linking.md)


@dataclass(frozen=True, slots=True)
class ReleaseInfo:
    """A cut of the release: its number, when it was cut, and the days it holds, [first, through).
    ``first`` is None for a release of no reports."""

    release_id: int
    cut_at: datetime
    through: date  # the first day not in the release
    first: date | None


def release_through(cut_at: datetime, delay_h: float) -> date:
    """The first UTC day a release cut at ``cut_at`` leaves out: every day before it ended at
    least ``delay_h`` hours before the cut."""
    return (cut_at.astimezone(UTC) - timedelta(hours=delay_h)).date()


def day_start(d: date) -> datetime:
    return datetime(d.year, d.month, d.day, tzinfo=UTC)


def public_since(release: ReleaseInfo) -> date:
    """Where the public is told the release starts: the first of January of its first report's
    year. The first report's own day would tell that one report was seen on that day."""
    first = release.first or release.through
    return date(first.year, 1, 1)


@dataclass(frozen=True, slots=True)
class PublicWindow:
    """The whole periods a public answer counts: days [start, end); ``widened`` when that is not
    exactly the window asked for (it was moved out to period boundaries or clipped to the
    release)."""

    start: date
    end: date
    widened: bool

    @property
    def is_empty(self) -> bool:
        return self.end <= self.start


def public_window(
    unit: Unit,
    start: datetime | None,
    end: datetime | None,
    release: ReleaseInfo,
) -> PublicWindow:
    """The window a public answer counts for [start, end): moved out to whole ``unit`` periods of
    the UTC calendar, then cut to the periods the release holds whole. Without a start (end),
    from ``public_since`` (to the release's last whole period)."""
    lo = period_floor(unit, start.astimezone(UTC).date() if start else public_since(release))
    if end is None:
        hi = release.through
    else:
        end_day = end.astimezone(UTC).date()
        hi = period_floor(unit, end_day)
        if day_start(hi) < end:
            hi = period_after(unit, hi)
    last_whole = period_floor(unit, release.through)  # periods ending by `through` are whole
    clipped_hi = min(hi, last_whole)
    widened = (
        (start is not None and day_start(lo) != start)
        or (end is not None and day_start(clipped_hi) != end)
        or clipped_hi != hi
    )
    return PublicWindow(lo, max(lo, clipped_hi), widened)


def periods(unit: Unit, window: PublicWindow) -> list[date]:
    """The first days of the ``unit`` periods that make up the window, in order."""
    out: list[date] = []
    d = window.start
    while d < window.end:
        out.append(d)
        d = period_after(unit, d)
    return out
