"""Published figures: reports and people, and groups and people_est (linked reports counted once,
docs/linking.md), or none when the public release's rule hides them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class Figure:
    """One figure of an answer: the counts, or none when ``suppressed`` (hidden by the public
    release's rule, service/domain/release.py). ``groups`` and ``people_est`` may be hidden on
    their own (None) in a public figure whose reports are shown."""

    reports: int | None
    people: int | None
    suppressed: bool
    groups: int | None = None
    people_est: int | None = None


@dataclass(frozen=True, slots=True)
class ExactTable:
    """A table of exact counts (groups x buckets) with its margins, for callers who read
    everything: every figure shown as it is."""

    reports: IntArray
    people: IntArray
    groups: IntArray
    people_est: IntArray

    def _columns(self) -> tuple[IntArray, IntArray, IntArray, IntArray]:
        return self.reports, self.people, self.groups, self.people_est

    def figures(self, ii: list[int], jj: list[int]) -> list[Figure]:
        r, p, g, e = (a[ii, jj].tolist() for a in self._columns())
        return [Figure(a, b, False, c, d) for a, b, c, d in zip(r, p, g, e, strict=True)]

    def row_totals(self) -> list[Figure] | None:
        """Per group, over the buckets (None for one bucket: the cell says it)."""
        if self.reports.shape[1] <= 1:
            return None
        return _figures(*(a.sum(axis=1) for a in self._columns()))

    def column_totals(self) -> list[Figure] | None:
        """Per bucket, over the groups (None for one group)."""
        if self.reports.shape[0] <= 1:
            return None
        return _figures(*(a.sum(axis=0) for a in self._columns()))

    def total(self) -> Figure:
        r, p, g, e = (int(a.sum()) for a in self._columns())
        return Figure(r, p, False, g, e)


def _figures(
    reports: IntArray, people: IntArray, groups: IntArray, people_est: IntArray
) -> list[Figure]:
    columns = (reports.tolist(), people.tolist(), groups.tolist(), people_est.tolist())
    return [Figure(a, b, False, c, d) for a, b, c, d in zip(*columns, strict=True)]
