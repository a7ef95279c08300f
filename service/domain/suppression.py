"""Small-count suppression for a two-way table of report counts and its totals.

The table has rows (groups) and columns (periods); each cell counts reports and the people in
them. Published with it are the row totals (when there is more than one column), the column
totals (when there is more than one row) and the grand total. A figure with 0 < reports < below
is withheld ("small"); then more figures are withheld ("secondary") until no withheld figure can
be worked out from the published ones through the table's sums.

Why bridges. Lay the cells and totals out as one (rows + 1) x (columns + 1) grid, the last row and
column holding the totals. Every relation of the table says that one line of this grid (a row or
a column, totals' lines included) adds up to its last entry. Negate the total row and total column
except the grand total, and every line sums to zero: the grid is a flow with zero net flow at every
node of the complete bipartite graph whose nodes are the grid's lines and whose edges are its
entries. Once the published entries are subtracted, the unknown entries (withheld figures, and the
totals a one-row or one-column table does not publish) are a flow on the graph they form, fixed up
to any flow around its cycles. So an unknown entry is determined exactly when no cycle passes
through it: when it is a bridge of that graph. The reports and the people obey the same relations,
so both are withheld in the same places.

Only the linear relations are modelled. A reader who also uses what else is known of a withheld
figure (counts are never negative, a withheld figure is never zero, a small one is below
``below``) can narrow it to a range, which may be a single value. Secondary suppressions are the
cheapest figures that close a cycle, so the ranges can be narrow; and a reader told which figures
are secondary learns that those are at least ``below``: with cells 1, 5 and 100 in a row whose
total is published, "small" and "secondary" on the first two give away 1 and 5. So ``reason`` is
for tests, logs and analysts, not for the public response.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Generic, Literal, TypeVar

import numpy as np
import numpy.typing as npt

from service.domain.bridges import Forest

R = TypeVar("R", bound=Hashable)
C = TypeVar("C", bound=Hashable)

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

Reason = Literal["small", "secondary"]

# A figure that may not be withheld (a published zero) costs _NEVER; three of them still fit in
# int64, and _EXCLUDED (the bridge's own lines) is dearer than any three.
_NEVER = 1 << 60
_EXCLUDED = 1 << 62


@dataclass(frozen=True, slots=True)
class Figure:
    """One published figure: both counts, or neither when it is suppressed."""

    reports: int | None
    people: int | None
    suppressed: bool
    # Why it is suppressed: small itself, or to protect another. Not for the public response:
    # "secondary" tells a reader the figure is at least `below` (see the module docstring).
    reason: Reason | None = None


@dataclass(frozen=True, slots=True)
class SuppressedTable(Generic[R, C]):
    cells: dict[tuple[R, C], Figure]  # exactly the input cells, in row-major order
    row_totals: dict[R, Figure]  # empty when there is only one column
    column_totals: dict[C, Figure]  # empty when there is only one row
    total: Figure


def suppress(
    cells: Mapping[tuple[R, C], tuple[int, int]],
    rows: Sequence[R],
    columns: Sequence[C],
    *,
    below: int,
) -> SuppressedTable[R, C]:
    """The table as it may be published: figures with 0 < reports < ``below`` suppressed, and
    enough others that none of them can be derived from what is published.

    ``cells`` maps (row, column) to (reports, people); a missing cell is zero, and zero figures are
    never suppressed. ``below`` of 0 or 1 suppresses nothing. The result depends only on the values
    and on the order of ``rows`` and ``columns``.
    """
    grid = _Grid.of(cells, rows, columns)
    table = SuppressedGrid.of(grid.reports, grid.people, below=below)
    row_totals, column_totals = table.row_totals(), table.column_totals()
    return SuppressedTable(
        cells=_cell_figures(grid, table.status),
        row_totals={} if row_totals is None else dict(zip(rows, row_totals, strict=True)),
        column_totals=(
            {} if column_totals is None else dict(zip(columns, column_totals, strict=True))
        ),
        total=table.total(),
    )


@dataclass(frozen=True, slots=True)
class SuppressedGrid:
    """A table and its totals as they may be published, as (rows + 1) x (columns + 1) grids
    (totals in the last row and column) with each entry's status: 0 published, 1 small, 2
    secondary. A big table's cells become figures only when read."""

    reports: IntArray
    people: IntArray
    status: IntArray

    @classmethod
    def of(cls, reports: IntArray, people: IntArray, *, below: int) -> SuppressedGrid:
        """``suppress`` for a table given as grids with totals (see ``with_totals``)."""
        return cls(reports, people, suppressed_status(reports, people, below=below))

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, columns) of the table, totals aside."""
        return self.reports.shape[0] - 1, self.reports.shape[1] - 1

    def figures(self, ii: Sequence[int], jj: Sequence[int]) -> list[Figure]:
        return cell_figures(self.reports, self.people, self.status, ii, jj)

    def row_totals(self) -> list[Figure] | None:
        """Each row's total, or None for a table of one column (its row totals are its cells)."""
        n_rows, n_cols = self.shape
        return self.figures(range(n_rows), [n_cols] * n_rows) if n_cols > 1 else None

    def column_totals(self) -> list[Figure] | None:
        """Each column's total, or None for a table of one row."""
        n_rows, n_cols = self.shape
        return self.figures([n_rows] * n_cols, range(n_cols)) if n_rows > 1 else None

    def total(self) -> Figure:
        n_rows, n_cols = self.shape
        return self.figures([n_rows], [n_cols])[0]


def suppressed_status(reports: IntArray, people: IntArray, *, below: int) -> IntArray:
    """``suppress`` on a whole table at once: ``reports`` and ``people`` as (rows + 1) x
    (columns + 1) grids, totals in the last row and column; the status of each entry, 0
    (published), 1 (small) or 2 (secondary). The cells of a big table need no figure each."""
    n_rows, n_cols = reports.shape[0] - 1, reports.shape[1] - 1
    published = np.ones_like(reports, dtype=np.bool_)
    published[:n_rows, n_cols] = n_cols > 1  # a lone column's row totals are its cells
    published[n_rows, :n_cols] = n_rows > 1
    small = published & (reports > 0) & (reports < below)
    if n_rows > 1 and n_cols > 1 and not small.any():  # every figure published, none withheld
        return np.zeros_like(reports)
    withheld = _protect(small | ~published, published=published, reports=reports, people=people)
    secondary = withheld & published & ~small
    return np.where(small, 1, np.where(secondary, 2, 0))


def with_totals(reports: IntArray, people: IntArray) -> tuple[IntArray, IntArray]:
    """(rows + 1) x (columns + 1) grids of a table's cells, with the row and column totals."""
    grids = np.zeros((2, reports.shape[0] + 1, reports.shape[1] + 1), dtype=np.int64)
    grids[0, :-1, :-1], grids[1, :-1, :-1] = reports, people
    grids[:, :-1, -1] = grids[:, :-1, :-1].sum(axis=2)
    grids[:, -1, :] = grids[:, :-1, :].sum(axis=1)
    return grids[0], grids[1]


@dataclass(frozen=True, slots=True)
class _Grid(Generic[R, C]):
    """Reports and people as (rows + 1) x (columns + 1) grids, totals in the last row and column,
    and the input cells in row-major order with their places in the grid."""

    reports: IntArray
    people: IntArray
    cells: list[tuple[tuple[R, C], int, int]]

    @classmethod
    def of(
        cls, cells: Mapping[tuple[R, C], tuple[int, int]], rows: Sequence[R], columns: Sequence[C]
    ) -> _Grid[R, C]:
        row_of = {row: i for i, row in enumerate(rows)}
        column_of = {column: j for j, column in enumerate(columns)}
        if len(row_of) != len(rows) or len(column_of) != len(columns):
            raise ValueError("rows and columns must not repeat")
        keys = list(cells)
        try:
            ii = [row_of[row] for row, _ in keys]
            jj = [column_of[column] for _, column in keys]
        except KeyError as error:
            raise ValueError(f"a cell is outside the table's rows and columns: {error}") from None
        values = np.fromiter(chain.from_iterable(cells.values()), np.int64, count=2 * len(keys))
        if (values < 0).any():
            raise ValueError("counts must not be negative")
        grids = np.zeros((2, len(rows) + 1, len(columns) + 1), dtype=np.int64)
        pairs = values.reshape(-1, 2).T
        grids[:, np.asarray(ii, dtype=np.intp), np.asarray(jj, dtype=np.intp)] = pairs
        grids[:, :-1, -1] = grids[:, :-1, :-1].sum(axis=2)
        grids[:, -1, :] = grids[:, :-1, :].sum(axis=1)
        order = np.lexsort((jj, ii)).tolist()
        return cls(grids[0], grids[1], [(keys[k], ii[k], jj[k]) for k in order])


def _cell_figures(grid: _Grid[R, C], status: IntArray) -> dict[tuple[R, C], Figure]:
    """The figure of every input cell, in the grid's row-major order."""
    ii = [i for _, i, _ in grid.cells]
    jj = [j for _, _, j in grid.cells]
    figures = cell_figures(grid.reports, grid.people, status, ii, jj)
    return {key: figure for (key, _, _), figure in zip(grid.cells, figures, strict=True)}


_WITHHELD = {
    1: Figure(None, None, suppressed=True, reason="small"),
    2: Figure(None, None, suppressed=True, reason="secondary"),
}


def cell_figures(
    reports: IntArray, people: IntArray, status: IntArray, ii: Sequence[int], jj: Sequence[int]
) -> list[Figure]:
    """The figures of grid entries (ii[k], jj[k]), read for all at once (a big table has
    thousands); equal figures share one instance."""
    if not len(ii):
        return []
    at = (np.asarray(ii, dtype=np.intp), np.asarray(jj, dtype=np.intp))
    shown: dict[tuple[int, int], Figure] = {}
    out = []
    for state, value in zip(
        status[at].tolist(), zip(reports[at].tolist(), people[at].tolist(), strict=True),
        strict=True,
    ):  # fmt: skip
        if state:
            out.append(_WITHHELD[state])
            continue
        figure = shown.get(value)
        if figure is None:
            figure = shown[value] = Figure(*value, suppressed=False)
        out.append(figure)
    return out


def _protect(
    unknown: BoolArray, *, published: BoolArray, reports: IntArray, people: IntArray
) -> BoolArray:
    """``unknown`` grown, cheaply, until none of its published entries is a bridge.

    Each bridge gets the cheapest 4-cycle through it (a cycle of four grid entries in two rows and
    two columns): the fewest published totals, then the fewest reports. Such a cycle always exists
    among non-zero entries, because a non-zero cell has non-zero totals and a non-zero total a
    non-zero cell. A bridge already put on a cycle by an earlier choice is skipped.
    """
    unknown = unknown.copy()
    nonzero = (reports > 0) | (people > 0)
    is_total = np.zeros_like(unknown)
    is_total[-1, :] = is_total[:, -1] = True
    penalty = 3 * int(reports[-1, -1]) + 1  # dearer than the reports of any three figures
    cost = np.where(nonzero & published, reports + penalty * is_total, _NEVER)
    cost[unknown] = 0
    while True:  # one round covers every bridge; the next only confirms it
        forest = Forest.of(unknown)
        todo = [(i, j) for i, j in forest.bridges if published[i, j]]
        if not todo:
            return unknown
        for i, j in todo:
            if forest.is_covered(i, j):
                continue
            i2, j2 = _cheapest_rectangle(cost, i, j)
            for a, b in ((i, j2), (i2, j), (i2, j2)):
                unknown[a, b] = True
                cost[a, b] = 0
            forest.cover_cycle([("row", i), ("column", j), ("row", i2), ("column", j2)])


def _cheapest_rectangle(cost: IntArray, i: int, j: int) -> tuple[int, int]:
    """(i2, j2) minimising the cost of entries (i, j2), (i2, j), (i2, j2); first in row-major
    order among equals."""
    total = cost + cost[i, :][None, :] + cost[:, j][:, None]
    total[i, :] = _EXCLUDED
    total[:, j] = _EXCLUDED
    i2, j2 = divmod(int(np.argmin(total)), total.shape[1])
    if total[i2, j2] >= _NEVER:  # impossible for counts that are never negative
        raise AssertionError(f"no cycle can protect grid entry {(i, j)}")
    return i2, j2
