"""Small-count suppression: small figures are withheld, published figures are exact, and no
withheld figure follows from the published ones.

The derivability check shares nothing with the service's graph model: it writes the table's sum
relations as a matrix and asks numpy, figure by figure, whether a withheld value is determined.
"""

from __future__ import annotations

import random
from collections.abc import Hashable
from dataclasses import dataclass

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from service.domain.suppression import Figure, SuppressedTable, suppress

PROPERTY = settings(max_examples=300, deadline=None)

Key = tuple[Hashable, ...]


@dataclass(frozen=True)
class Table:
    cells: dict[tuple[tuple[str], str], tuple[int, int]]
    rows: list[tuple[str]]
    columns: list[str]

    def value(self, row: tuple[str], column: str) -> tuple[int, int]:
        return self.cells.get((row, column), (0, 0))

    def row_sum(self, row: tuple[str]) -> tuple[int, int]:
        values = [self.value(row, column) for column in self.columns]
        return sum(r for r, _ in values), sum(p for _, p in values)

    def column_sum(self, column: str) -> tuple[int, int]:
        values = [self.value(row, column) for row in self.rows]
        return sum(r for r, _ in values), sum(p for _, p in values)

    def total(self) -> tuple[int, int]:
        values = [self.value(row, column) for row in self.rows for column in self.columns]
        return sum(r for r, _ in values), sum(p for _, p in values)


def make_table(values: list[list[int | None]], *, people_extra: int = 0) -> Table:
    """A table from a matrix of report counts (None: the cell is missing)."""
    rows = [(f"segment-{i}",) for i in range(len(values))]
    columns = [f"2024-{j + 1:02d}" for j in range(len(values[0]) if values else 0)]
    cells = {
        (rows[i], columns[j]): (n, n + people_extra * (n > 0))
        for i, line in enumerate(values)
        for j, n in enumerate(line)
        if n is not None
    }
    return Table(cells, rows, columns)


def run(table: Table, *, below: int) -> SuppressedTable[tuple[str], str]:
    return suppress(table.cells, table.rows, table.columns, below=below)


def published_figures(
    table: Table, result: SuppressedTable[tuple[str], str]
) -> list[tuple[Key, Figure, tuple[int, int]]]:
    """Every published figure with its key and its true (reports, people)."""
    figures: list[tuple[Key, Figure, tuple[int, int]]] = [
        (("cell", *key), figure, table.cells[key]) for key, figure in result.cells.items()
    ]
    figures += [(("row", row), f, table.row_sum(row)) for row, f in result.row_totals.items()]
    figures += [
        (("column", column), f, table.column_sum(column))
        for column, f in result.column_totals.items()
    ]
    figures.append((("total",), result.total, table.total()))
    return figures


def unknown_relations(
    table: Table, result: SuppressedTable[tuple[str], str]
) -> tuple[np.ndarray, list[Key], set[Key]]:
    """The table's sum relations restricted to the variables a reader does not know, those
    variables, and the ones among them that the response publishes as suppressed.

    Variables: every cell (missing ones included: they are known zeros), every row total, every
    column total and the grand total, published or not. Relations: a row's cells sum to its total,
    a column's cells to its total, the row totals and the column totals each to the grand total.
    Published values belong on the right-hand side, which plays no part in what is determined.
    """
    row_totals = [("row", row) for row in table.rows]
    column_totals = [("column", column) for column in table.columns]
    relations: list[dict[Key, int]] = []
    for row in table.rows:
        relations.append({("cell", row, c): 1 for c in table.columns} | {("row", row): -1})
    for column in table.columns:
        relations.append({("cell", r, column): 1 for r in table.rows} | {("column", column): -1})
    relations.append({key: 1 for key in row_totals} | {("total",): -1})
    relations.append({key: 1 for key in column_totals} | {("total",): -1})

    shown = {key: not f.suppressed for key, f, _ in published_figures(table, result)}
    unpublished = [key for key in [*row_totals, *column_totals] if key not in shown]
    hidden = [key for key, is_shown in shown.items() if not is_shown]
    unknown: list[Key] = [*unpublished, *hidden]  # missing cells are known: zero
    index = {key: k for k, key in enumerate(unknown)}
    matrix = np.zeros((len(relations), len(unknown)))
    for k, relation in enumerate(relations):
        for key, coefficient in relation.items():
            if key in index:
                matrix[k, index[key]] = coefficient
    return matrix, unknown, set(hidden)


def derivable(table: Table, result: SuppressedTable[tuple[str], str]) -> list[Key]:
    """The suppressed figures that the published ones determine through the table's sums: a
    variable is determined iff its unit vector lies in the row space of the relations restricted
    to the unknown variables (adding it leaves the rank unchanged)."""
    matrix, unknown, suppressed = unknown_relations(table, result)
    rank = np.linalg.matrix_rank(matrix)
    found = []
    for k, key in enumerate(unknown):
        unit = np.zeros((1, len(unknown)))
        unit[0, k] = 1.0
        if key in suppressed and np.linalg.matrix_rank(np.vstack([matrix, unit])) == rank:
            found.append(key)
    return found


def derivable_by_null_space(table: Table, result: SuppressedTable[tuple[str], str]) -> list[Key]:
    """As ``derivable``, for big tables: a variable is determined iff every solution of the
    homogeneous system leaves it at zero, i.e. its row of a null-space basis is zero."""
    matrix, unknown, suppressed = unknown_relations(table, result)
    _, singular, vt = np.linalg.svd(matrix)
    rank = int((singular > 1e-9 * singular.max()).sum()) if singular.size else 0
    null_space = vt[rank:].T
    return [
        key
        for key, weights in zip(unknown, null_space, strict=True)
        if key in suppressed and np.abs(weights).max(initial=0.0) < 1e-9
    ]


@st.composite
def tables(draw: st.DrawFn) -> Table:
    n_rows = draw(st.integers(1, 8))
    n_columns = draw(st.integers(1, 8))
    count = st.one_of(
        st.none(), st.just(0), st.integers(1, 4), st.integers(1, 12), st.integers(13, 400)
    )
    values = [[draw(count) for _ in range(n_columns)] for _ in range(n_rows)]
    table = make_table(values)
    extra = st.integers(0, 30)
    cells = {key: (n, n + draw(extra) * (n > 0)) for key, (n, _) in table.cells.items()}
    return Table(cells, table.rows, table.columns)


@PROPERTY
@given(table=tables(), below=st.integers(0, 10))
def test_small_figures_are_suppressed_and_the_rest_published_exactly(
    table: Table, below: int
) -> None:
    result = run(table, below=below)
    assert list(result.cells) == [
        (r, c) for r in table.rows for c in table.columns if (r, c) in table.cells
    ]
    assert bool(result.row_totals) == (len(table.columns) > 1)
    assert bool(result.column_totals) == (len(table.rows) > 1)
    for key, figure, (reports, people) in published_figures(table, result):
        if 0 < reports < below:
            assert figure.suppressed and figure.reason == "small", key
        if figure.suppressed:
            assert (figure.reports, figure.people) == (None, None), key
            assert reports > 0, key  # zeros are always published
        else:
            assert (figure.reports, figure.people, figure.reason) == (reports, people, None), key


@PROPERTY
@given(table=tables(), below=st.integers(0, 10))
def test_no_suppressed_figure_can_be_derived_from_published_ones(table: Table, below: int) -> None:
    result = run(table, below=below)
    assert derivable(table, result) == []


def test_the_checker_finds_a_figure_derivable_from_its_row() -> None:
    # The check above must be able to fail: hide one cell of a row whose total is published.
    table = make_table([[3, 10], [20, 30]])
    result = run(table, below=0)
    key = (table.rows[0], table.columns[0])
    cells = dict(result.cells) | {key: Figure(None, None, suppressed=True, reason="small")}
    leaky = SuppressedTable(cells, result.row_totals, result.column_totals, result.total)
    assert derivable(table, leaky) == [("cell", *key)]
    assert derivable_by_null_space(table, leaky) == [("cell", *key)]


def test_a_small_cell_in_a_two_by_two_table_takes_the_other_cells_with_it() -> None:
    table = make_table([[2, 10], [10, 10]])
    result = run(table, below=5)
    reasons = [figure.reason for figure in result.cells.values()]
    assert reasons == ["small", "secondary", "secondary", "secondary"]
    # Cells are given up before totals: every total stays published.
    totals = [*result.row_totals.values(), *result.column_totals.values(), result.total]
    assert [f.reports for f in totals] == [12, 20, 12, 20, 32]


def test_one_row_hides_a_second_cell_and_keeps_the_totals() -> None:
    table = make_table([[3, 20, 10]], people_extra=1)
    result = run(table, below=5)
    assert [f.reason for f in result.cells.values()] == ["small", None, "secondary"]
    assert result.column_totals == {}
    assert list(result.row_totals.values()) == [Figure(33, 36, suppressed=False)]
    assert result.total == Figure(33, 36, suppressed=False)
    assert derivable(table, result) == []


def test_one_column_hides_a_second_cell_and_keeps_the_totals() -> None:
    table = make_table([[30], [4], [7], [9]])
    result = run(table, below=5)
    assert [f.reason for f in result.cells.values()] == [None, "small", "secondary", None]
    assert result.row_totals == {}
    assert list(result.column_totals.values()) == [Figure(50, 50, suppressed=False)]
    assert result.total == Figure(50, 50, suppressed=False)


def test_a_small_single_cell_hides_the_total_it_equals() -> None:
    result = run(make_table([[3]]), below=5)
    assert [f.reason for f in result.cells.values()] == ["small"]
    assert result.row_totals == {} and result.column_totals == {}
    assert result.total == Figure(None, None, suppressed=True, reason="small")


def test_a_single_cell_of_enough_reports_is_published() -> None:
    result = run(make_table([[5]], people_extra=2), below=5)
    assert list(result.cells.values()) == [Figure(5, 7, suppressed=False)]
    assert result.total == Figure(5, 7, suppressed=False)


def test_a_small_lone_cell_in_one_row_hides_its_column_total_and_grand_total() -> None:
    # The only non-zero cell: every total equals it, so every total is small too.
    table = make_table([[0, 0], [0, 2]])
    result = run(table, below=5)
    assert [f.reports for f in result.cells.values()] == [0, 0, 0, None]
    assert [f.reports for f in result.row_totals.values()] == [0, None]
    assert [f.reports for f in result.column_totals.values()] == [0, None]
    assert result.total.suppressed
    assert derivable(table, result) == []


def test_an_all_zero_table_is_published_as_zeros() -> None:
    result = run(make_table([[0, 0, 0], [0, None, 0]]), below=5)
    figures = [*result.cells.values(), *result.row_totals.values()]
    figures += [*result.column_totals.values(), result.total]
    assert figures and all(f == Figure(0, 0, suppressed=False) for f in figures)
    assert len(result.cells) == 5  # the missing cell stays missing


def test_an_empty_table_has_a_zero_total() -> None:
    result = suppress({}, [], ["2024-01", "2024-02"], below=5)
    assert result.cells == {} and result.row_totals == {}
    assert result.total == Figure(0, 0, suppressed=False)


def test_a_table_without_small_counts_is_published_whole() -> None:
    table = make_table([[5, 50, 0], [7, None, 100]])
    result = run(table, below=5)
    assert not any(f.suppressed for _, f, _ in published_figures(table, result))


@given(table=tables(), below=st.integers(-3, 1))
def test_below_one_or_less_suppresses_nothing(table: Table, below: int) -> None:
    result = run(table, below=below)
    for key, figure, (reports, people) in published_figures(table, result):
        assert (figure.reports, figure.people, figure.suppressed) == (reports, people, False), key


@given(table=tables(), below=st.integers(2, 10), seed=st.integers(0, 2**32 - 1))
def test_the_result_depends_only_on_the_values_not_on_the_order_of_cells(
    table: Table, below: int, seed: int
) -> None:
    shuffled = list(table.cells.items())
    random.Random(seed).shuffle(shuffled)
    first = run(table, below=below)
    assert run(table, below=below) == first
    again = suppress(dict(shuffled), table.rows, table.columns, below=below)
    assert again == first and list(again.cells) == list(first.cells)


def test_a_large_table_is_protected() -> None:
    # 500 segments x 60 months with a sprinkling of small cells. suppress() takes 30-60 ms for
    # tables of this size (more for more small cells); this test's checks take far longer.
    rng = np.random.default_rng(6)
    counts = rng.choice(
        [0, 1, 2, 3, 4, 8, 40, 300],
        p=[0.3, 0.005, 0.005, 0.005, 0.005, 0.23, 0.23, 0.22],
        size=(500, 60),
    )
    table = make_table(counts.tolist(), people_extra=2)
    result = run(table, below=5)
    figures = published_figures(table, result)
    assert all(f.suppressed for _, f, (n, _) in figures if 0 < n < 5)
    assert all((f.reports, f.people) == value for _, f, value in figures if not f.suppressed)
    assert any(f.reason == "secondary" for _, f, _ in figures)
    assert derivable_by_null_space(table, result) == []
