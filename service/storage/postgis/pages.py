"""Pages of reports on PostGIS: filtered keyset pages, and for a box, the cheaper of two ways
to its page (walking the time index, or fetching its matches first from the cell index)."""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from geoalchemy2.functions import ST_X, ST_Y, ST_MakeEnvelope
from sqlalchemy import (
    ARRAY,
    CTE,
    ColumnElement,
    Connection,
    FromClause,
    Integer,
    Select,
    Text,
    and_,
    bindparam,
    cast,
    false,
    func,
    literal,
    or_,
    select,
    tuple_,
)
from sqlalchemy.dialects.postgresql.psycopg import dialect as psycopg_dialect
from sqlalchemy.engine import Compiled

from service.domain.access import AuditEntry
from service.domain.filters import Filter
from service.domain.grid import GRID_LEVEL, ROLLUP_LEVELS, grid_cell
from service.domain.queries import PageKey, ReportPage, ReportQuery
from service.domain.reports import Report
from service.storage.postgis import access, filters
from service.storage.postgis.reports import COLUMNS, to_report
from service.storage.postgis.tables import reports

_Way = Literal["walk", "matches"]  # in time order, or a box's matches first (see below)


class _Shape(NamedTuple):
    """Which filters a query has: one page statement is built for each shape, then reused with
    the values bound (building and keying a statement cost more than running it on sparse
    pages)."""

    bbox: bool
    start: bool
    end: bool
    segment_id: bool
    segment_ids: bool
    kind: bool
    direction: bool
    posted_by: bool
    after: bool
    descending: bool
    filter: Filter | None  # a statement of its own (not kept: its values are bound in it)

    @classmethod
    def of(cls, query: ReportQuery) -> _Shape:
        return cls(
            query.bbox is not None, query.start is not None, query.end is not None,
            query.segment_id is not None, query.segment_ids is not None, query.kind is not None,
            query.direction is not None, query.posted_by is not None, query.after is not None,
            query.descending, query.filter,
        )  # fmt: skip


def _params(query: ReportQuery, plan: BoxPlan | None = None) -> dict[str, Any]:
    """The values the page statement of ``query``'s shape binds (``plan``: its box's)."""
    params: dict[str, Any] = {
        "fetch": query.limit + 1,
        "start": query.start,
        "end": query.end,
        "segment_id": query.segment_id,
        "segment_ids": None if query.segment_ids is None else sorted(query.segment_ids),
        "kind": query.kind,
        "direction": query.direction,
        "posted_by": query.posted_by,
        "after_at": None if query.after is None else query.after.observed_at,
        "after_id": None if query.after is None else query.after.id,
    }
    if plan is not None:
        params |= plan.params()
    return params


def _conditions(shape: _Shape, *, by_cells: bool = False) -> list[ColumnElement[bool]]:
    """The query's filters; ``by_cells``: the box through the cell index (_in_box_cells)."""
    conditions: list[ColumnElement[bool]] = []
    if shape.bbox and by_cells:
        conditions += _in_box_cells()
    elif shape.bbox:
        # && uses the GiST index but compares float4-rounded boxes, so it also lets in points up
        # to about a metre outside; query_reports tests the fetched rows exactly. (Exact tests in
        # SQL - ST_Intersects, or ranges on ST_X/ST_Y - mislead the planner: 0.3 ms became 14-89
        # ms on hot-spot pages in bench/features.py.)
        envelope = ST_MakeEnvelope(
            bindparam("min_lon"), bindparam("min_lat"), bindparam("max_lon"),
            bindparam("max_lat"), 4326,
        )  # fmt: skip
        conditions.append(reports.c.geom.op("&&")(envelope))
    if shape.start:
        conditions.append(reports.c.observed_at >= bindparam("start"))
    if shape.end:
        conditions.append(reports.c.observed_at < bindparam("end"))
    if shape.segment_id:
        conditions.append(reports.c.segment_id == bindparam("segment_id"))
    if shape.segment_ids:
        ids = cast(bindparam("segment_ids"), ARRAY(Text))
        conditions.append(reports.c.segment_id == func.any(ids))
    if shape.kind:
        conditions.append(reports.c.kind == bindparam("kind"))
    if shape.direction:
        conditions.append(reports.c.direction == bindparam("direction"))
    if shape.posted_by:
        conditions.append(reports.c.key_id == bindparam("posted_by"))
    if shape.filter is not None:
        conditions.append(filters.condition(shape.filter))
    if shape.after:
        key = tuple_(reports.c.observed_at, reports.c.id)
        after = tuple_(bindparam("after_at"), bindparam("after_id"))
        conditions.append(key < after if shape.descending else key > after)
    return conditions


def _in_box_cells() -> list[ColumnElement[bool]]:
    """Exactly the reports inside the box, as read from the cell index alone (migration 0010):
    the grid columns and rows under the box (BoxPlan); then a report whose grid cell lies
    inside the box's edge cells is in, and the rest have their position tested (reading it from
    the index costs more than the integers: a border box's count took 0.8 ms where testing every
    position took 1.3-1.7)."""
    lon, lat = ST_X(reports.c.geom), ST_Y(reports.c.geom)
    x, y = reports.c.grid_x, reports.c.grid_y
    return [
        (x.op(">>")(_BOX_CELL_SHIFT)) == func.any(cast(bindparam("cell_columns"), ARRAY(Integer))),
        y.between(bindparam("row0"), bindparam("row1")),
        or_(
            and_(x > bindparam("inner_x0"), x < bindparam("inner_x1"),
                 y > bindparam("inner_y0"), y < bindparam("inner_y1")),
            and_(lon.between(bindparam("min_lon"), bindparam("max_lon")),
                 lat.between(bindparam("min_lat"), bindparam("max_lat"))),
        ),
    ]  # fmt: skip


def query_reports(
    conn: Connection, query: ReportQuery, audit: AuditEntry | None = None
) -> ReportPage:
    """A page of ``query``; with ``audit``, that entry is written by the page's own statement.

    On a connection in autocommit mode (the store's reads), that is one round trip and one
    transaction for both: the page and the record of its reading commit together or not at all.
    (If a box's matches turn out more than its count said, the page is read again, walking, and
    the entry stays with the first read.)
    """
    if query.limit < 1:  # as the SQLite store says (the contract, tests/storage)
        raise ValueError(f"limit must be at least 1, not {query.limit}")
    shape = _Shape.of(query)
    if query.bbox is None:
        rows = _run(conn, shape, "walk", _params(query), audit)
    else:
        plan = BoxPlan.of(query.bbox, limit=query.limit, reltuples=_reltuples(conn))
        params = _params(query, plan)
        way: _Way = "matches" if plan.matches_first(_cell_counts(conn)) else "walk"
        rows = _run(conn, shape, way, params, audit)
        if way == "matches" and rows and rows[0][-1]:  # more matches than the cap
            rows = _run(conn, shape, "walk", params, None)
    fetched = [to_report(row) for row in rows[: query.limit]]
    page = fetched if query.bbox is None else [r for r in fetched if _inside(r, query.bbox)]
    # The next page starts after the last row fetched, kept or not: a page may come out a row
    # short, but no report inside the box is ever skipped.
    more = len(rows) > query.limit
    last = fetched[-1] if fetched else None
    next_key = PageKey(last.draft.observed_at, last.id) if more and last else None
    return ReportPage(reports=page, next_key=next_key)


def _run(
    conn: Connection, shape: _Shape, way: _Way, params: dict[str, Any], audit: AuditEntry | None
) -> list[Any]:
    """The rows of the page statement of this shape and way, with ``audit`` written by it."""
    compiled, sql = _page_sql(shape, way, audited=audit is not None)
    if audit is not None:
        params = params | access.audit_params(audit)
    values = dict(compiled.construct_params(params) or {})
    # Straight from psycopg: SQLAlchemy's execution and rows cost more than a sparse page's query.
    # Rows come back binary: parsing 100 rows' text took 0.3 ms more.
    cursor = conn.connection.dbapi_connection.cursor(binary=True)  # type: ignore[union-attr]
    try:
        cursor.execute(sql, values)
        return list(cursor.fetchall())
    finally:
        cursor.close()


# Two ways to a page of a box (docs/postgis.md, "Pages of a box", says why and what each costs):
# walk the (observed_at, id) index in time order, testing each report, or fetch every match from
# the cell index first (migration 0010) and sort them. The way is chosen here, from a count of
# the box's reports made from the tile rollup's cells (BoxPlan.matches_first), and only that way
# is sent; fetching matches first stops at a cap and says so, and the page is walked after all.
_WALK_US_PER_ROW = 0.5
_MATCH_US_PER_ROW = 0.55
_WALK_PER_MATCH = _WALK_US_PER_ROW / _MATCH_US_PER_ROW
_CELL_LEVEL = min(ROLLUP_LEVELS)
_CELL_ROWS_MAX = 1_000
_BOX_CELL_SHIFT = 12  # the cell index's columns: level-24 grid columns >> 12 (migration 0010)
_RELTUPLES_KEPT_S = 60.0
_CELL_COUNTS_KEPT_S = 60.0


def _reltuples(conn: Connection) -> float:
    """The number of reports as of the last ANALYZE (-1 before the first), read at most once a
    minute per connection."""
    now = time.monotonic()
    kept = conn.info.get("reports_reltuples")
    if kept is None or now - kept[0] > _RELTUPLES_KEPT_S:
        value = conn.exec_driver_sql(
            "SELECT reltuples FROM pg_class WHERE oid = 'reports'::regclass"
        ).scalar_one()
        kept = conn.info["reports_reltuples"] = (now, float(value))
    return float(kept[1])


def _cell_counts(conn: Connection) -> dict[tuple[int, int], int]:
    """Reports per rollup cell at _CELL_LEVEL ((cx, cy) -> reports), read at most once a minute
    per connection (17,000 cells for 1M reports along the CA-US border: ~1 MB)."""
    now = time.monotonic()
    kept = conn.info.get("cell_counts")
    if kept is None or now - kept[0] > _CELL_COUNTS_KEPT_S:
        rows = conn.exec_driver_sql(
            "SELECT cx, cy, sum(reports) FROM tile_cells WHERE level = %(level)s"
            " GROUP BY cx, cy",  # a row per kind
            {"level": _CELL_LEVEL},
        )
        kept = conn.info["cell_counts"] = (now, {(cx, cy): int(n) for cx, cy, n in rows})
    counts: dict[tuple[int, int], int] = kept[1]
    return counts


@dataclass(frozen=True, slots=True)
class BoxPlan:
    """A box as a page statement reads it, and what chooses the way: its edges in degrees; for
    the cell index, the grid columns (>> _BOX_CELL_SHIFT) and rows under it, a cell more each way
    (a position on a cell's edge may round either way), and the grid cells inside its edge cells
    whatever the rounding; the rollup cells under it (cx0-cx1, cy0-cy1 at _CELL_LEVEL) and its
    edges in those cells' units; the rows a page fetches, the table's size (reltuples) and the
    cap on matches fetched first. Grid y runs south."""

    min_lon: float
    min_lat: float
    max_lon: float
    max_lat: float
    cell_columns: list[int]
    row0: int
    row1: int
    inner_x0: int
    inner_x1: int
    inner_y0: int
    inner_y1: int
    cx0: int
    cx1: int
    cy0: int
    cy1: int
    x0: float
    x1: float
    y0: float
    y1: float
    fetch: int
    reltuples: float
    cap: int

    @classmethod
    def of(
        cls, bbox: tuple[float, float, float, float], *, limit: int, reltuples: float
    ) -> BoxPlan:
        min_lon, min_lat, max_lon, max_lat = bbox
        gx0, gy1 = grid_cell(min_lon, min_lat)
        gx1, gy0 = grid_cell(max_lon, max_lat)
        last = (1 << GRID_LEVEL) - 1
        shift = GRID_LEVEL - _CELL_LEVEL
        size = float(1 << shift)
        return cls(
            min_lon, min_lat, max_lon, max_lat,
            cell_columns=list(range(max(gx0 - 1, 0) >> _BOX_CELL_SHIFT,
                                    (min(gx1 + 1, last) >> _BOX_CELL_SHIFT) + 1)),
            row0=max(gy0 - 1, 0), row1=min(gy1 + 1, last),
            inner_x0=gx0 + 1, inner_x1=gx1 - 1, inner_y0=gy0 + 1, inner_y1=gy1 - 1,
            cx0=gx0 >> shift, cx1=gx1 >> shift, cy0=gy0 >> shift, cy1=gy1 >> shift,
            x0=gx0 / size, x1=(gx1 + 1) / size, y0=gy0 / size, y1=(gy1 + 1) / size,
            fetch=limit + 1,
            reltuples=reltuples,
            cap=2 * math.ceil(math.sqrt(_WALK_PER_MATCH * (limit + 1) * max(reltuples, 0.0))),
        )  # fmt: skip

    def params(self) -> dict[str, Any]:
        """The values the page statements bind for the box (_conditions, _in_box_cells)."""
        return {
            "min_lon": self.min_lon, "min_lat": self.min_lat,
            "max_lon": self.max_lon, "max_lat": self.max_lat,
            "cell_columns": self.cell_columns, "row0": self.row0, "row1": self.row1,
            "inner_x0": self.inner_x0, "inner_x1": self.inner_x1,
            "inner_y0": self.inner_y0, "inner_y1": self.inner_y1,
            "cap": self.cap,
        }  # fmt: skip

    def matches_first(self, counts: dict[tuple[int, int], int]) -> bool:
        """Whether the box's count (from the rollup's cells ``counts``: those inside it whole,
        those on its edges by the share of their area inside it) says to fetch its matches
        first: at most sqrt(walk cost per match x rows fetched x table size)."""
        columns = range(self.cx0, self.cx1 + 1)
        rows = range(self.cy0, self.cy1 + 1)
        if len(columns) * len(rows) > 4 * _CELL_ROWS_MAX:
            return False
        cells, in_box = 0, 0.0
        for cx in columns:
            share_x = min(cx + 1, self.x1) - max(cx, self.x0)
            for cy in rows:
                reports_in_cell = counts.get((cx, cy))
                if reports_in_cell is None:
                    continue
                cells += 1
                in_box += reports_in_cell * share_x * (min(cy + 1, self.y1) - max(cy, self.y0))
        if cells >= _CELL_ROWS_MAX:
            return False
        total = max(self.reltuples, in_box)
        return in_box <= math.sqrt(_WALK_PER_MATCH * self.fetch * total)


def _order(table: FromClause, *, descending: bool) -> tuple[ColumnElement[Any], ...]:
    if descending:
        return table.c.observed_at.desc(), table.c.id.desc()
    return table.c.observed_at, table.c.id


def _walk(shape: _Shape) -> Select[Any]:
    """The page's rows (``fetch`` of them), as the planner chooses to find them (for a box:
    usually walking the (observed_at, id) index)."""
    return (
        select(*COLUMNS, false().label("beyond"))
        .where(and_(True, *_conditions(shape)))
        .order_by(*_order(reports, descending=shape.descending))
        .limit(bindparam("fetch"))
    )


def _matches(shape: _Shape) -> CTE:
    """The keys of the box's matches, at most ``cap`` + 1 of them.

    MATERIALIZED fences the matches off from the ORDER BY ... LIMIT, which would otherwise lead
    the planner back to the time walk. (Their own LIMIT could in principle tempt it into a scan
    that stops early; on 1,500 random selective boxes it read them through the GiST index every
    time, and bench/features.py's boxes read them through the cell index.) They carry only their
    keys, and the page's rows are read again by primary key: ~15%
    cheaper than carrying every column of every match through the sort."""
    return (
        select(reports.c.observed_at, reports.c.id)
        .where(and_(True, *_conditions(shape, by_cells=True)))
        .limit(bindparam("cap") + 1)
        .cte("matches")
        .prefix_with("MATERIALIZED")
    )


def _matches_page(shape: _Shape, matches: CTE, *extra: ColumnElement[Any]) -> Select[Any]:
    """The page's rows (``fetch`` of them) from the matches, in page order, with ``extra``
    columns after the report's."""
    page = (
        select(matches.c.observed_at, matches.c.id)
        .order_by(*_order(matches, descending=shape.descending))
        .limit(bindparam("fetch"))
        .subquery("page")
    )
    return (
        select(*COLUMNS, *extra)
        .select_from(page.join(reports, reports.c.id == page.c.id))
        .order_by(*_order(page, descending=shape.descending))
    )


def _page_statement(shape: _Shape, way: _Way) -> Select[Any]:
    """The statement of a page of this shape read this way ("walk" or "matches"), with every
    value bound (_params). Its rows end in a flag: whether the box has more matches than the cap
    (then the page is not to be trusted; always false for the walk)."""
    if way == "walk":
        return _walk(shape)
    matches = _matches(shape)
    beyond = select(literal(1)).select_from(matches).offset(bindparam("cap")).exists()
    return _matches_page(shape, matches, beyond.label("beyond"))


_DIALECT = psycopg_dialect()  # type: ignore[no-untyped-call]


def _page_sql(shape: _Shape, way: _Way, *, audited: bool) -> tuple[Compiled, str]:
    """The page statement of this shape and way compiled (once, but for a filter's: its values
    are bound in it, and filters are too many to keep), and its SQL."""
    if shape.filter is not None:
        return _compile(shape, way, audited=audited)
    return _kept_page_sql(shape, way, audited=audited)


@functools.cache
def _kept_page_sql(shape: _Shape, way: _Way, *, audited: bool) -> tuple[Compiled, str]:
    return _compile(shape, way, audited=audited)


def _compile(shape: _Shape, way: _Way, *, audited: bool) -> tuple[Compiled, str]:
    """The page statement compiled, and its SQL: with ``audited``, with a data-modifying CTE
    that writes the audit entry (access.audit_cte)."""
    statement = _page_statement(shape, way)
    if audited:
        statement = statement.add_cte(access.audit_cte())
    compiled = statement.compile(dialect=_DIALECT)
    return compiled, compiled.string


def _inside(report: Report, bbox: tuple[float, float, float, float]) -> bool:
    min_lon, min_lat, max_lon, max_lat = bbox
    return min_lon <= report.draft.lon <= max_lon and min_lat <= report.draft.lat <= max_lat
