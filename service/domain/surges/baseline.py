"""A series' normal: the expected count of a day and its over-dispersion, from the series' own past.

With at least ``LONG_HISTORY_DAYS`` of history the baseline is a negative binomial with a
day-of-week effect, fitted on the ``WINDOW_DAYS`` before a guard of ``GUARD_DAYS`` (so that the
first week of a surge never raises its own baseline). For a log-link negative-binomial model whose
only term is the day of the week, the maximum-likelihood means are the day-of-week sample means
whatever the dispersion, so the fit is closed-form: per-weekday means (shrunk towards the overall
mean by ``WEEKDAY_PRIOR_DAYS`` pseudo-days, which steadies the quiet series) and the dispersion
``k`` (variance = mu + k mu^2) by the method of moments on the within-weekday spread.

With less history (a new segment, a new border) the baseline is a robust moving one: the trimmed
mean of the days so far, no weekday effect. Before ``MIN_HISTORY_DAYS`` there is no baseline and
nothing is tested.

Every function here works on numpy arrays of any leading shape, so the one code serves both the
batch run (all series by all days) and the incremental step (one series, one day).
"""

from __future__ import annotations

from typing import Final

import numpy as np
from numpy.typing import NDArray

MIN_HISTORY_DAYS: Final = 7
LONG_HISTORY_DAYS: Final = 28
GUARD_DAYS: Final = 7
WINDOW_DAYS: Final = 56
SHORT_GUARD_DAYS: Final = 2
WEEKDAY_PRIOR_DAYS: Final = 4.0
PRIOR_REPORTS: Final = 0.5  # half a report over the window: a never-seen series' mean is > 0
MAX_DISPERSION: Final = 10.0

Floats = NDArray[np.float64]


def long_window(day_index: int) -> tuple[int, int]:
    """The [start, stop) day indices (from the series' first day) the day's NB fit reads."""
    stop = day_index - GUARD_DAYS
    return max(0, stop - WINDOW_DAYS), stop


def short_window(day_index: int) -> tuple[int, int]:
    """The [start, stop) day indices a day's robust moving baseline reads."""
    return 0, day_index - SHORT_GUARD_DAYS


def weekday_fit(
    sums: Floats, squares: Floats, days: Floats, weekday: NDArray[np.int64]
) -> tuple[Floats, Floats]:
    """Expected count and dispersion k of a day from per-weekday window sums (last axis: 7).

    ``sums``, ``squares`` and ``days`` hold, per weekday, the sum of counts, of squared counts and
    the number of days in the window; ``weekday`` picks the day's own weekday.
    """
    n = days.sum(axis=-1)
    overall = (sums.sum(axis=-1) + PRIOR_REPORTS) / (n + 1.0)
    own_sum = np.take_along_axis(sums, weekday[..., None], axis=-1)[..., 0]
    own_days = np.take_along_axis(days, weekday[..., None], axis=-1)[..., 0]
    expected = (own_sum + WEEKDAY_PRIOR_DAYS * overall) / (own_days + WEEKDAY_PRIOR_DAYS)
    safe_days = np.maximum(days, 1.0)
    means = sums / safe_days
    spread = (squares - sums * means).sum(axis=-1)  # sum of squared deviations within weekdays
    dof = np.maximum(days - 1.0, 0.0)
    poisson_part = (dof * means).sum(axis=-1)
    scale = (dof * means * means).sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        k = np.where(scale > 0, (spread - poisson_part) / scale, 0.0)
    return expected, np.clip(k, 0.0, MAX_DISPERSION)


def robust_fit(window: Floats) -> tuple[Floats, Floats]:
    """Expected count and dispersion k from a short history (last axis: the days, any order).

    The largest eighth of the days is dropped (at least one), so a surge that starts in a young
    series' first weeks does not become its normal.
    """
    n = window.shape[-1]
    keep = n - max(1, n // 8)
    kept = np.sort(window, axis=-1)[..., :keep]
    expected = (kept.sum(axis=-1) + PRIOR_REPORTS) / (keep + 1.0)
    variance = kept.var(axis=-1, ddof=1) if keep > 1 else np.zeros_like(expected)
    k = (variance - expected) / (expected * expected)
    return expected, np.clip(k, 0.0, MAX_DISPERSION)
