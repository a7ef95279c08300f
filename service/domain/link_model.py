"""The stores' u and crowding (issue #20, docs/linking.md "Model in the stores"): estimated from
a random sample of the stored reports, each looked for as if observed whole days earlier or later.

Such a day-shifted pair cannot be one group (a group's reports are at most the time window apart,
and the shift is longer than twice the window), yet it has the local density of unrelated
reports: u is the level shares of one random such candidate per sampled report
(``linking.estimate_u``), a segment's crowding the mean number of such candidates its sampled
reports have (``linking.estimate_crowding``). Below ``MIN_U_PAIRS`` pairs nothing is estimated:
the stores keep ``DEFAULT_U`` and no crowding term.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any
from uuid import UUID

import numpy as np

from service.domain.linking import (
    FIELDS,
    Levels,
    LevelShares,
    LinkRecord,
    estimate_crowding,
    shares_of,
)

# Fewer unrelated pairs than this and u is not estimated. The rarest level of u (two unrelated
# reports within 100 m) has a share of about 4e-4 (DEFAULT_U); smoothing adds half a pair to
# every level, so below ~1,000 pairs the smoothing alone would raise that share past DEFAULT_U's
# and cut the weight of the closest pairs by bits that come from no data.
MIN_U_PAIRS = 1_000
# Shifts are drawn from this many consecutive whole days, either way.
SHIFT_SPAN_DAYS = 7


def shift_days(max_hours: float) -> tuple[int, int]:
    """The smallest and largest whole-day shift drawn: the smallest is longer than twice the
    time window, so that no report of the sampled report's own group (within ``max_hours`` of
    it) can be a candidate of the shifted one (1-7 days with the 6 h default)."""
    first = int(2 * max_hours // 24) + 1
    return first, first + SHIFT_SPAN_DAYS - 1


def draw_shift(rng: random.Random, max_hours: float) -> int:
    """A random shift in whole days, earlier or later (``shift_days``)."""
    first, last = shift_days(max_hours)
    return rng.randint(first, last) * rng.choice((-1, 1))


def shifted(record: LinkRecord, days: int) -> LinkRecord:
    """The record as if observed ``days`` whole days later (earlier when negative)."""
    return dataclasses.replace(record, observed_at=record.observed_at + timedelta(days=days))


@dataclass(frozen=True, slots=True)
class SampledReport:
    """One sampled report: its segment, the shift it was looked for with, how many candidates
    the shifted report had among the stored reports, the one drawn (None: none) and the levels
    of that pair, the shift taken out (``compare(shifted(report, days), chosen)``)."""

    report_id: UUID
    segment_id: str
    days: int
    candidates: int
    chosen: UUID | None
    levels: Levels | None


@dataclass(frozen=True, slots=True)
class UnrelatedSample:
    """A day-shifted sample of a store's snapped reports, and the border version it was drawn
    under (crowding is per segment)."""

    reports: tuple[SampledReport, ...]
    border_version: int

    @property
    def pairs(self) -> int:
        return sum(1 for s in self.reports if s.levels is not None)


@dataclass(frozen=True, slots=True)
class EstimatedModel:
    """u and each segment's crowding as a store holds them: its version (0 until stored), when
    and under which border they were estimated, and from how many sampled reports and pairs."""

    version: int
    estimated_at: datetime
    border_version: int
    reports: int
    pairs: int
    u: LevelShares
    crowding: Mapping[str, float]

    def as_json(self) -> dict[str, Any]:
        """u and crowding as JSON values (the stores keep them as text)."""
        return {
            "u": {name: list(self.u.of(name)) for name in FIELDS},
            "crowding": dict(self.crowding),
        }


def estimate_model(
    sample: UnrelatedSample, *, at: datetime, min_pairs: int = MIN_U_PAIRS
) -> EstimatedModel | None:
    """u and the crowding from ``sample`` (not yet stored: version 0); None when it holds fewer
    than ``min_pairs`` unrelated pairs."""
    levels = [s.levels for s in sample.reports if s.levels is not None]
    if len(levels) < min_pairs:
        return None
    return EstimatedModel(
        version=0,
        estimated_at=at,
        border_version=sample.border_version,
        reports=len(sample.reports),
        pairs=len(levels),
        u=shares_of(np.array(levels, dtype=np.int64)),
        crowding=MappingProxyType(
            estimate_crowding((s.segment_id, s.candidates) for s in sample.reports)
        ),
    )


def model_from_json(
    *,
    version: int,
    estimated_at: datetime,
    border_version: int,
    reports: int,
    pairs: int,
    u: Mapping[str, Sequence[float]],
    crowding: Mapping[str, float],
) -> EstimatedModel:
    """A stored model read back (``as_json``'s values)."""
    shares = LevelShares(**{name: tuple(float(x) for x in u[name]) for name in FIELDS})
    return EstimatedModel(
        version, estimated_at, border_version, reports, pairs, shares,
        MappingProxyType({str(k): float(v) for k, v in crowding.items()}),
    )  # fmt: skip
