"""The negative-binomial CUSUM (Hoehle & Paul 2008) of a daily count against its baseline.

Each day adds the log-likelihood ratio of the day's count under "a surge of ``shift_sd`` standard
deviations" against "normal" (both negative binomial with the baseline's dispersion). That ratio
is linear in the count, ``slope * count + offset``, so a day is summed up by two numbers fixed when
the day opens, and a change of the day's count costs one multiply-add. The statistic is held
between 0 and a ceiling (1.5 x threshold) so that, after a long surge, it comes back in control
within days instead of weeks; an episode opens when it reaches the threshold and closes when it
falls to half of it.

Thresholds come from one budget of false alerts per week for all series (``params_for``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Final, NamedTuple

import numpy as np
from numpy.typing import NDArray

from service.domain.surges import baseline as bl

DEFAULT_SHIFT_SD: Final = 3.0
QUIET_MEAN: Final = 1.0  # a day whose baseline window averages less is judged as a quiet series'
# Calibration (bench/surges.py --calibrate, docs/surges.md): simulated in-control series
# (negative binomial, weekly and yearly seasons, low/middle/high counts) give a false-alert rate
# per series-day r(h) with log r = a + b h, fitted apart for quiet days and the others. For
# exactly known baselines a CUSUM of likelihood ratios has b = -1 (Wald, Siegmund); estimated
# baselines and over-dispersion leave heavier tails, worst for quiet series, whose dispersion a
# few dozen reports cannot pin down. So the threshold for a rate is taken from the measured fit:
# h = SLOPE * log(days between false alerts of one series) + OFFSET.
CALIBRATION: Final = {"busy": (1.91, -6.61), "quiet": (1.65, -6.11)}

Floats = NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class SurgeParams:
    """The thresholds (quiet series' and the others') and the shift the CUSUM is tuned to.

    An episode opens at the day's threshold and closes at half of it; the statistic is held below
    1.5 times it.
    """

    threshold: float
    quiet_threshold: float
    shift_sd: float = DEFAULT_SHIFT_SD

    def threshold_at(self, level: Floats) -> Floats:
        """The threshold of days whose baseline window averages ``level`` a day."""
        return np.where(level < QUIET_MEAN, self.quiet_threshold, self.threshold)


def params_for(
    *, false_alerts_per_week: float, series: int, shift_sd: float = DEFAULT_SHIFT_SD
) -> SurgeParams:
    """Thresholds that spend the system's weekly budget evenly over ``series`` watched at once."""
    if false_alerts_per_week <= 0 or series <= 0:
        raise ValueError("the budget and the number of series must be positive")
    log_days = math.log(7.0 * series / false_alerts_per_week)
    busy, quiet = (
        max(1.0, a * log_days + b) for a, b in (CALIBRATION["busy"], CALIBRATION["quiet"])
    )
    return SurgeParams(threshold=busy, quiet_threshold=quiet, shift_sd=shift_sd)


def coefficients(expected: Floats, k: Floats, *, shift_sd: float) -> tuple[Floats, Floats]:
    """``(slope, offset)``: a day adds ``slope * count + offset`` to the statistic."""
    surge = expected + shift_sd * np.sqrt(expected + k * expected * expected)
    slope = np.log(surge / expected) + np.log1p(k * expected) - np.log1p(k * surge)
    safe_k = np.where(k > 1e-12, k, 1.0)
    offset = np.where(
        k > 1e-12,
        -np.log1p(safe_k * (surge - expected) / (1.0 + safe_k * expected)) / safe_k,
        -(surge - expected),
    )
    return slope, offset


def step(statistic: float, *, count: int, slope: float, offset: float, threshold: float) -> float:
    """The statistic after a day, from the one before."""
    return min(threshold * 1.5, max(0.0, statistic + slope * count + offset))


def day_baseline(
    history: NDArray[np.int64], *, day_index: int, weekday: int
) -> tuple[float, float, float] | None:
    """Expected count, dispersion and window level of day ``day_index``, from the counts so far.

    ``history`` holds the counts of days ``day_index - len(history)`` .. ``day_index - 1`` (at
    least the window the baseline reads). ``None``: too young to have a baseline.
    """
    if day_index < bl.MIN_HISTORY_DAYS:
        return None
    offset = day_index - len(history)
    if day_index < bl.LONG_HISTORY_DAYS:
        start, stop = bl.short_window(day_index)
        window = history[start - offset : stop - offset].astype(np.float64)
        mu, k, level = bl.robust_fit(window)
        return float(mu), float(k), float(level)
    start, stop = bl.long_window(day_index)
    values = history[start - offset : stop - offset].astype(np.float64)
    weekdays = (weekday - (day_index - np.arange(start, stop))) % 7
    sums = np.bincount(weekdays, weights=values, minlength=7).astype(np.float64)
    squares = np.bincount(weekdays, weights=values * values, minlength=7).astype(np.float64)
    days = np.bincount(weekdays, minlength=7).astype(np.float64)
    recent = values[-bl.RECENT_DAYS :].sum() if len(values) > bl.RECENT_DAYS else np.nan
    fit = bl.weekday_fit(sums, squares, days, np.asarray(weekday), np.asarray(recent, float))
    return float(fit[0]), float(fit[1]), float(fit[2])


# A day's CUSUM terms from its baseline: (expected, slope, offset, threshold).
DayTerms = tuple[float, float, float, float]


class FitRequest(NamedTuple):
    """A day whose baseline is to be fitted: ``history[:at]`` holds the counts before it (as
    ``day_baseline`` takes them), ``day_index`` its age in days and ``weekday`` its weekday.
    (A tuple: thousands are made a detection, and a frozen dataclass is slow to make.)"""

    history: NDArray[np.int64]
    at: int
    day_index: int
    weekday: int


def day_terms(requests: Sequence[FitRequest], params: SurgeParams) -> list[DayTerms]:
    """Each day's expected count and CUSUM terms (slope, offset, threshold), for many days of many
    series at once: bit for bit what ``day_baseline`` and ``coefficients`` give one day at a time
    (the counts are whole numbers, so the window sums are exact in any order, and the rest is the
    same elementwise arithmetic on rows; tests/domain/test_surge_batch.py holds it), in a few
    numpy calls instead of some twenty per day."""
    out: list[DayTerms | None] = [None] * len(requests)
    long: list[int] = []
    short: dict[int, list[int]] = {}
    for i, r in enumerate(requests):
        if r.day_index < bl.MIN_HISTORY_DAYS:
            out[i] = (0.0, 0.0, 0.0, params.threshold)
        elif r.day_index < bl.LONG_HISTORY_DAYS:
            if r.at - r.day_index < 0:  # the window is not all held (never, as the ring grows)
                out[i] = _one_day(r, params)
            else:
                short.setdefault(r.day_index, []).append(i)
        elif r.at - min(bl.WINDOW_DAYS, r.day_index - bl.GUARD_DAYS) - bl.GUARD_DAYS < 0:
            out[i] = _one_day(r, params)
        else:
            long.append(i)
    fitted: list[tuple[list[int], Floats, Floats, Floats]] = []
    if long:
        fitted.append((long, *_long_fits([requests[i] for i in long])))
    for day_index, rows in short.items():
        lo, hi = bl.short_window(day_index)
        window = np.array(
            [requests[i].history[requests[i].at - day_index :][lo:hi] for i in rows],
            dtype=np.float64,
        ).reshape(len(rows), hi - lo)
        fitted.append((rows, *bl.robust_fit(window)))
    for rows, mu, k, level in fitted:
        slope, offset = coefficients(mu, k, shift_sd=params.shift_sd)
        threshold = params.threshold_at(level)
        for j, i in enumerate(rows):
            out[i] = (float(mu[j]), float(slope[j]), float(offset[j]), float(threshold[j]))
    return [terms for terms in out if terms is not None]


def _long_fits(requests: Sequence[FitRequest]) -> tuple[Floats, Floats, Floats]:
    """``day_baseline``'s NB fit of days with a long history, as rows: each window right-aligned
    in WINDOW_DAYS columns (a younger series' shorter window left-padded with days it did not
    have). Column j falls on weekday (day's weekday + j) % 7, as WINDOW_DAYS + GUARD_DAYS is
    whole weeks."""
    n = len(requests)
    values = np.zeros((n, bl.WINDOW_DAYS))
    held = np.zeros((n, bl.WINDOW_DAYS))
    weekday = np.empty(n, dtype=np.int64)
    recent = np.empty(n)
    for row, r in enumerate(requests):
        length = min(bl.WINDOW_DAYS, r.day_index - bl.GUARD_DAYS)
        stop = r.at - bl.GUARD_DAYS
        values[row, bl.WINDOW_DAYS - length :] = r.history[stop - length : stop]
        held[row, bl.WINDOW_DAYS - length :] = 1.0
        weekday[row] = r.weekday
        recent[row] = 0.0 if length > bl.RECENT_DAYS else np.nan
    weeks = (n, bl.WINDOW_DAYS // 7, 7)
    by_column = [
        a.reshape(weeks).sum(axis=1) for a in (values, values * values, held)
    ]  # whole numbers: exact
    # weekday w's column (mod 7) in a row whose day falls on weekday d is (w - d) % 7
    pick = (np.arange(7)[None, :] - weekday[:, None]) % 7
    sums, squares, days = (np.take_along_axis(a, pick, axis=1) for a in by_column)
    recent = np.where(np.isnan(recent), np.nan, values[:, -bl.RECENT_DAYS :].sum(axis=1))
    return bl.weekday_fit(sums, squares, days, weekday, recent, power=bl.libm_power)


def _one_day(request: FitRequest, params: SurgeParams) -> DayTerms:
    """One day's terms as the incremental step always made them (the reference)."""
    fit = day_baseline(
        request.history[: request.at], day_index=request.day_index, weekday=request.weekday
    )
    if fit is None:
        return (0.0, 0.0, 0.0, params.threshold)
    a, b = coefficients(np.asarray(fit[0]), np.asarray(fit[1]), shift_sd=params.shift_sd)
    return (fit[0], float(a), float(b), float(params.threshold_at(np.asarray(fit[2]))))


@dataclass(frozen=True, slots=True)
class BatchRun:
    """Every day of every series at once (arrays series x days)."""

    expected: Floats
    threshold: Floats
    statistic: Floats
    opened: NDArray[np.bool_]
    is_open: NDArray[np.bool_]


def baselines(
    counts: NDArray[np.int64], *, first_day: date
) -> tuple[Floats, Floats, Floats, Floats]:
    """Expected count, dispersion, window level and a has-baseline mask (1/0), every series-day."""
    n_series, n_days = counts.shape
    x = counts.astype(np.float64)
    weekday = (first_day.weekday() + np.arange(n_days)) % 7
    onehot = np.eye(7)[weekday]  # days x 7
    zeros = np.zeros((n_series, 1, 7))
    sums = np.concatenate([zeros, np.cumsum(x[:, :, None] * onehot, axis=1)], axis=1)
    squares = np.concatenate([zeros, np.cumsum((x * x)[:, :, None] * onehot, axis=1)], axis=1)
    ndays = np.concatenate([np.zeros((1, 7)), np.cumsum(onehot, axis=0)], axis=0)
    expected = np.ones((n_series, n_days))
    k = np.zeros((n_series, n_days))
    level = np.ones((n_series, n_days))
    known = np.zeros(n_days)
    totals = np.concatenate([np.zeros((n_series, 1)), np.cumsum(x, axis=1)], axis=1)
    long_days = np.arange(bl.LONG_HISTORY_DAYS, n_days)
    if len(long_days):
        stop = long_days - bl.GUARD_DAYS
        start = np.maximum(0, stop - bl.WINDOW_DAYS)
        mu, disp, lvl = bl.weekday_fit(
            sums[:, stop] - sums[:, start],
            squares[:, stop] - squares[:, start],
            np.broadcast_to(ndays[stop] - ndays[start], (n_series, len(long_days), 7)),
            np.broadcast_to(weekday[long_days], (n_series, len(long_days))),
            recent_sums(totals, start=start, stop=stop),
        )
        expected[:, long_days], k[:, long_days], level[:, long_days] = mu, disp, lvl
        known[long_days] = 1.0
    for day in range(bl.MIN_HISTORY_DAYS, min(bl.LONG_HISTORY_DAYS, n_days)):
        lo, hi = bl.short_window(day)
        expected[:, day], k[:, day], level[:, day] = bl.robust_fit(x[:, lo:hi])
        known[day] = 1.0
    return expected, k, level, known


def recent_sums(totals: Floats, *, start: NDArray[np.int64], stop: NDArray[np.int64]) -> Floats:
    """Each window's last RECENT_DAYS total (NaN for windows not longer than that)."""
    recent = totals[:, stop] - totals[:, np.maximum(stop - bl.RECENT_DAYS, 0)]
    return np.where(stop - start > bl.RECENT_DAYS, recent, np.nan)


def run_batch(counts: NDArray[np.int64], *, first_day: date, params: SurgeParams) -> BatchRun:
    """The statistic and episodes of series that all begin on ``first_day`` (the reference the
    incremental ``observe`` agrees with, and what bench/surges.py evaluates)."""
    expected, k, level, known = baselines(counts, first_day=first_day)
    slope, offset = coefficients(expected, k, shift_sd=params.shift_sd)
    threshold = params.threshold_at(level)
    slope, offset = slope * known, offset * known
    n_series, n_days = counts.shape
    statistic = np.zeros((n_series, n_days))
    opened = np.zeros((n_series, n_days), dtype=bool)
    is_open = np.zeros((n_series, n_days), dtype=bool)
    s = np.zeros(n_series)
    now_open = np.zeros(n_series, dtype=bool)
    for day in range(n_days):
        h = threshold[:, day]
        s = np.minimum(
            h * 1.5, np.maximum(0.0, s + slope[:, day] * counts[:, day] + offset[:, day])
        )
        opens = ~now_open & (s >= h)
        now_open = (now_open & (s > h / 2)) | opens
        statistic[:, day], opened[:, day], is_open[:, day] = s, opens, now_open
    return BatchRun(
        expected=expected, threshold=threshold, statistic=statistic, opened=opened, is_open=is_open
    )
