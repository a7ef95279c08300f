"""Published figures: reports and people, or neither when the public release's rule hides them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class Figure:
    """One figure of an answer: both counts, or neither when ``suppressed`` (hidden by the
    public release's rule, service/domain/release.py)."""

    reports: int | None
    people: int | None
    suppressed: bool


@dataclass(frozen=True, slots=True)
class ExactTable:
    """A table of exact counts (groups x buckets) with its margins, for callers who read
    everything: every figure shown as it is."""

    reports: IntArray
    people: IntArray

    def figures(self, ii: list[int], jj: list[int]) -> list[Figure]:
        r, p = self.reports[ii, jj].tolist(), self.people[ii, jj].tolist()
        return [Figure(a, b, False) for a, b in zip(r, p, strict=True)]

    def row_totals(self) -> list[Figure] | None:
        """Per group, over the buckets (None for one bucket: the cell says it)."""
        if self.reports.shape[1] <= 1:
            return None
        return _figures(self.reports.sum(axis=1), self.people.sum(axis=1))

    def column_totals(self) -> list[Figure] | None:
        """Per bucket, over the groups (None for one group)."""
        if self.reports.shape[0] <= 1:
            return None
        return _figures(self.reports.sum(axis=0), self.people.sum(axis=0))

    def total(self) -> Figure:
        return Figure(int(self.reports.sum()), int(self.people.sum()), False)


def _figures(reports: IntArray, people: IntArray) -> list[Figure]:
    return [Figure(a, b, False) for a, b in zip(reports.tolist(), people.tolist(), strict=True)]
