"""A series' normal: the expected count of a day and its over-dispersion, from the series' own past.

With at least ``LONG_HISTORY_DAYS`` of history the baseline is a negative binomial with a
day-of-week effect, fitted on the ``WINDOW_DAYS`` before a guard of ``GUARD_DAYS`` (so that the
first week of a surge never raises its own baseline). For a log-link negative-binomial model whose
only term is the day of the week, the maximum-likelihood means are the day-of-week sample means
whatever the dispersion, so the fit is closed-form:

- per-weekday means, shrunk towards the overall mean by ``WEEKDAY_PRIOR_REPORTS`` (a quiet series
  has too few reports to know a weekday effect);
- times the level of the window's last ``RECENT_DAYS`` against the whole window's, shrunk by
  ``RECENT_PRIOR_REPORTS`` (a busy series follows a season within weeks, a quiet one keeps the
  long window's level), and that level's change carried on to the day (``TREND_REACH``);
- the variance/mean ratio phi from the within-weekday Pearson spread, shrunk towards
  ``PHI_PRIOR`` by ``PHI_PRIOR_DAYS`` pseudo-days plus ``PHI_PRIOR_REPORTS`` reports' worth of
  days, and at least 1 (a quiet series' few reports cannot tell its spread: under-estimated, it
  made most of the false alerts); the day's NB dispersion is then k = (phi - 1) / mu
  (variance = mu + k mu^2 = phi mu, the quasi-Poisson form surveillance uses).

With less history (a new segment, a new border) the baseline is a robust moving one: the trimmed
mean of the days so far, no weekday effect. Before ``MIN_HISTORY_DAYS`` there is no baseline and
nothing is tested.

Every function here works on numpy arrays of any leading shape, so the one code serves both the
batch run (all series by all days) and the incremental step (one series, one day).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import Final

import numpy as np
from numpy.typing import NDArray

MIN_HISTORY_DAYS: Final = 7
LONG_HISTORY_DAYS: Final = 28
GUARD_DAYS: Final = 7
WINDOW_DAYS: Final = 84
SHORT_GUARD_DAYS: Final = 2
WEEKDAY_PRIOR_REPORTS: Final = 10.0
RECENT_DAYS: Final = 28
RECENT_PRIOR_REPORTS: Final = 20.0
# The recent level is read RECENT_DAYS / 2 + GUARD_DAYS = 21 days before the day it is for, and
# 28 days after the whole window's middle: its change against the window is carried on those 21
# days (a log-linear trend), so a busy series in a rising or falling season is not judged on a
# level three weeks old.
TREND_REACH: Final = (RECENT_DAYS / 2 + GUARD_DAYS) / (WINDOW_DAYS / 2 - RECENT_DAYS / 2)
PHI_PRIOR: Final = 2.0  # variance / mean before the window says otherwise
PHI_PRIOR_DAYS: Final = 14.0
PHI_PRIOR_REPORTS: Final = 60.0  # a quiet series' spread weighs little against the prior
PRIOR_REPORTS: Final = 0.5  # half a report over the window: a never-seen series' mean is > 0
MAX_DISPERSION: Final = 1000.0

Floats = NDArray[np.float64]


def long_window(day_index: int) -> tuple[int, int]:
    """The [start, stop) day indices (from the series' first day) the day's NB fit reads."""
    stop = day_index - GUARD_DAYS
    return max(0, stop - WINDOW_DAYS), stop


def short_window(day_index: int) -> tuple[int, int]:
    """The [start, stop) day indices a day's robust moving baseline reads."""
    return 0, day_index - SHORT_GUARD_DAYS


def weekday_fit(
    sums: Floats,
    squares: Floats,
    days: Floats,
    weekday: NDArray[np.int64],
    recent: Floats,
    *,
    power: Callable[[Floats, float], Floats] = operator.pow,
) -> tuple[Floats, Floats, Floats]:
    """Expected count, dispersion k and the window's mean of a day from per-weekday window sums
    (last axis: 7).

    ``sums``, ``squares`` and ``days`` hold, per weekday, the sum of counts, of squared counts and
    the number of days in the window; ``weekday`` picks the day's own weekday; ``recent`` is the
    sum of the window's last RECENT_DAYS days, or NaN when the window is not longer than that.
    ``power`` raises the recent level to its trend (``libm_power``: as for one day alone).
    """
    n = days.sum(axis=-1)
    overall = (sums.sum(axis=-1) + PRIOR_REPORTS) / (n + 1.0)
    own_sum = np.take_along_axis(sums, weekday[..., None], axis=-1)[..., 0]
    own_days = np.take_along_axis(days, weekday[..., None], axis=-1)[..., 0]
    # The weekday's own mean weighs as many reports as it holds against WEEKDAY_PRIOR_REPORTS
    # for the overall mean: a quiet series has no weekday effect it could know.
    expected = (own_sum + WEEKDAY_PRIOR_REPORTS) / (own_days + WEEKDAY_PRIOR_REPORTS / overall)
    # The level of the last RECENT_DAYS against the window's, weighed by the reports they hold:
    # a busy series follows a season within weeks, a quiet one keeps the long window's level.
    weekly = (sums + WEEKDAY_PRIOR_REPORTS / 7) / (
        days + WEEKDAY_PRIOR_REPORTS / 7 / overall[..., None]
    )
    fitted = weekly.sum(axis=-1) * (RECENT_DAYS / 7)
    level = (recent + RECENT_PRIOR_REPORTS) / (fitted + RECENT_PRIOR_REPORTS)
    expected = expected * np.where(np.isnan(recent), 1.0, power(level, 1.0 + TREND_REACH))
    means = sums / np.maximum(days, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        pearson = np.where(means > 0, (squares - sums * means) / means, 0.0).sum(axis=-1)
    dof = np.maximum(n - (days > 0).sum(axis=-1), 0.0)
    return expected, dispersion(expected, phi_estimate(pearson, dof, overall)), overall


def libm_power(base: Floats, exponent: float) -> Floats:
    """``base ** exponent`` by the C library's pow, element by element: what numpy computes for a
    single number (a float64 scalar, as one day's fit has), which its vectorised power differs
    from in the last bit for about one value in twenty."""
    return np.array([math.pow(b, exponent) for b in base.ravel().tolist()]).reshape(base.shape)


def phi_estimate(pearson: Floats, dof: Floats, mean: Floats) -> Floats:
    """The variance/mean ratio from a Pearson sum over ``dof`` degrees of freedom, shrunk towards
    PHI_PRIOR by PHI_PRIOR_DAYS pseudo-days plus PHI_PRIOR_REPORTS pseudo-reports' worth of days
    (a dispersion is known from the reports a window holds, not its days)."""
    prior_days = PHI_PRIOR_DAYS + PHI_PRIOR_REPORTS / mean
    return (pearson + PHI_PRIOR * prior_days) / (dof + prior_days)


def dispersion(expected: Floats, phi: Floats) -> Floats:
    """The NB k (variance = mu + k mu^2) that gives the day variance = phi x mu."""
    return np.clip((np.maximum(phi, 1.0) - 1.0) / expected, 0.0, MAX_DISPERSION)


def robust_fit(window: Floats) -> tuple[Floats, Floats, Floats]:
    """Expected count, dispersion k and level from a short history (last axis: the days).

    The largest eighth of the days is dropped (at least one), so a surge that starts in a young
    series' first weeks does not become its normal.
    """
    n = window.shape[-1]
    keep = n - max(1, n // 8)
    kept = np.sort(window, axis=-1)[..., :keep]
    expected = (kept.sum(axis=-1) + PRIOR_REPORTS) / (keep + 1.0)
    spread = ((kept - expected[..., None]) ** 2).sum(axis=-1) / expected
    phi = phi_estimate(spread, np.asarray(keep - 1.0), expected)
    return expected, dispersion(expected, phi), expected
