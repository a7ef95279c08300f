"""Report persistence on PostGIS: exactly-once insert, lookup, filtered keyset pages."""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Sequence
from typing import Any, NamedTuple
from uuid import UUID

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
    column,
    func,
    not_,
    or_,
    select,
    table,
    tuple_,
    union_all,
)
from sqlalchemy.dialects.postgresql.psycopg import dialect as psycopg_dialect
from sqlalchemy.engine import Compiled

from service.domain.access import AuditEntry
from service.domain.reports import (
    IngestOutcome,
    IngestResult,
    Report,
    ReportDraft,
    SnapResult,
    SnapStatus,
)
from service.domain.tiles import GRID_LEVEL, ROLLUP_LEVELS, grid_cell
from service.storage.base import Extent, PageKey, ReportPage, ReportQuery
from service.storage.postgis import access
from service.storage.postgis.rollups import ROLLUP_NEW_ROWS
from service.storage.postgis.tables import reports

# One statement for a whole batch: arrays in, rows out, the primary key deciding what is new, and
# the rollups the map tiles read updated with what was created (rollups.py).
# ON CONFLICT DO NOTHING waits for a concurrent insert of the same id and then skips it, so two
# writers of one id cannot both create it.
#
# The arrays go to psycopg as binary parameters (%(name)b): dumping 19 lists of 500 values as
# text cost ~15 us per report, a fifth of the whole request (bench/ingest.py --profile); binary
# costs ~3. SQLAlchemy's text() has no way to ask for that, so the statement is a driver-level
# one, still with bound parameters only.
_INSERT = f"""
    WITH new AS (
        INSERT INTO reports (id, observed_at, received_at, geom, people_count, kind, direction,
            accuracy_m, notes, device_id, content_hash, snap_status, segment_id, snap_distance_m,
            snap_geom, chainage_km, side, key_id)
        SELECT u.id, u.observed_at, u.received_at, ST_SetSRID(ST_MakePoint(u.lon, u.lat), 4326),
            u.people_count, u.kind, u.direction, u.accuracy_m, u.notes, u.device_id,
            u.content_hash, u.snap_status, u.segment_id, u.snap_distance_m,
            CASE WHEN u.snap_lon IS NULL THEN NULL
                 ELSE ST_SetSRID(ST_MakePoint(u.snap_lon, u.snap_lat), 4326) END,
            u.chainage_km, u.side, %(key_id)s
        FROM unnest(
            %(id)b::uuid[], %(observed_at)b::timestamptz[], %(received_at)b::timestamptz[],
            %(lon)b::float8[], %(lat)b::float8[], %(people_count)b::int[], %(kind)b::text[],
            %(direction)b::text[], %(accuracy_m)b::float8[], %(notes)b::text[],
            %(device_id)b::text[], %(content_hash)b::bytea[], %(snap_status)b::text[],
            %(segment_id)b::text[], %(snap_distance_m)b::float8[], %(snap_lon)b::float8[],
            %(snap_lat)b::float8[], %(chainage_km)b::float8[], %(side)b::text[]
        ) AS u(id, observed_at, received_at, lon, lat, people_count, kind, direction, accuracy_m,
               notes, device_id, content_hash, snap_status, segment_id, snap_distance_m, snap_lon,
               snap_lat, chainage_km, side)
        ON CONFLICT (id) DO NOTHING
        RETURNING id, grid_x, grid_y, kind, people_count, snap_status, segment_id, observed_at,
            side, direction, 1 AS weight
    ),
    {ROLLUP_NEW_ROWS}
    SELECT id FROM new
    """

_COLUMNS = (
    reports.c.id,
    reports.c.observed_at,
    reports.c.received_at,
    ST_X(reports.c.geom).label("lon"),
    ST_Y(reports.c.geom).label("lat"),
    reports.c.people_count,
    reports.c.kind,
    reports.c.direction,
    reports.c.accuracy_m,
    reports.c.notes,
    reports.c.device_id,
    reports.c.content_hash,
    reports.c.snap_status,
    reports.c.segment_id,
    reports.c.snap_distance_m,
    ST_X(reports.c.snap_geom).label("snap_lon"),
    ST_Y(reports.c.snap_geom).label("snap_lat"),
    reports.c.chainage_km,
    reports.c.side,
)


def _arrays(batch: Sequence[Report]) -> dict[str, list[Any]]:
    return {
        "id": [r.draft.id for r in batch],
        "observed_at": [r.draft.observed_at for r in batch],
        "received_at": [r.received_at for r in batch],
        "lon": [r.draft.lon for r in batch],
        "lat": [r.draft.lat for r in batch],
        "people_count": [r.draft.people_count for r in batch],
        "kind": [r.draft.kind for r in batch],
        "direction": [r.draft.direction for r in batch],
        "accuracy_m": [r.draft.accuracy_m for r in batch],
        "notes": [r.draft.notes for r in batch],
        "device_id": [r.draft.device_id for r in batch],
        "content_hash": [r.draft.content_hash() for r in batch],
        "snap_status": [r.snap.status.value for r in batch],
        "segment_id": [r.snap.segment_id for r in batch],
        "snap_distance_m": [r.snap.distance_m for r in batch],
        "snap_lon": [r.snap.snapped_lon for r in batch],
        "snap_lat": [r.snap.snapped_lat for r in batch],
        "chainage_km": [r.snap.chainage_km for r in batch],
        "side": [r.snap.side for r in batch],
    }


def add_reports(
    conn: Connection, batch: Sequence[Report], posted_by: str | None = None
) -> list[IngestResult]:
    """Insert new reports; classify the rest as duplicates or conflicts against what is stored."""
    first_of: dict[UUID, int] = {}
    for position, report in enumerate(batch):
        first_of.setdefault(report.id, position)
    unique = [batch[p] for p in sorted(first_of.values())]
    created: set[UUID] = set()
    if unique:
        params = _arrays(unique) | {"key_id": posted_by}
        created = {row[0] for row in conn.exec_driver_sql(_INSERT, params)}
    others = {r.id for r in batch if r.id not in created} | {
        r.id for p, r in enumerate(batch) if first_of[r.id] != p
    }
    stored = {rep.id: (rep, digest) for rep, digest in _fetch(conn, others)}
    results: list[IngestResult] = []
    for position, report in enumerate(batch):
        if report.id in created and first_of[report.id] == position:
            results.append(IngestResult(IngestOutcome.CREATED, report))
            continue
        existing, digest = stored.get(report.id, (None, b""))
        if existing is None:
            existing, digest = report, report.draft.content_hash()  # created earlier in this call
        same = digest == report.draft.content_hash()
        outcome = IngestOutcome.DUPLICATE if same else IngestOutcome.CONFLICT
        results.append(IngestResult(outcome, existing))
    return results


def _fetch(conn: Connection, ids: set[UUID]) -> list[tuple[Report, bytes]]:
    if not ids:
        return []
    stmt = select(*_COLUMNS).where(reports.c.id.in_(bindparam("ids", expanding=True)))
    return [(_to_report(row), row.content_hash) for row in conn.execute(stmt, {"ids": list(ids)})]


def get_report(conn: Connection, report_id: UUID, posted_by: str | None = None) -> Report | None:
    stmt = select(*_COLUMNS).where(reports.c.id == report_id)
    if posted_by is not None:
        stmt = stmt.where(reports.c.key_id == posted_by)
    row = conn.execute(stmt).first()
    return None if row is None else _to_report(row)


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

    @classmethod
    def of(cls, query: ReportQuery) -> _Shape:
        return cls(
            query.bbox is not None, query.start is not None, query.end is not None,
            query.segment_id is not None, query.segment_ids is not None, query.kind is not None,
            query.direction is not None, query.posted_by is not None, query.after is not None,
            query.descending,
        )  # fmt: skip


def _params(query: ReportQuery, *, reltuples: float = -1.0) -> dict[str, Any]:
    """The values the page statement of ``query``'s shape binds (``reltuples``: for a box)."""
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
    if query.bbox is not None:
        params |= _box_params(query.bbox, limit=query.limit, reltuples=reltuples)
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
    if shape.after:
        key = tuple_(reports.c.observed_at, reports.c.id)
        after = tuple_(bindparam("after_at"), bindparam("after_id"))
        conditions.append(key < after if shape.descending else key > after)
    return conditions


def _in_box_cells() -> list[ColumnElement[bool]]:
    """Exactly the reports inside the box, as read from the cell index alone (migration 0010):
    the grid columns and rows under the box (_box_params); then a report whose grid cell lies
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
    """
    reltuples = -1.0 if query.bbox is None else _reltuples(conn)
    compiled, sql = _page_sql(_Shape.of(query), audited=audit is not None)
    params = dict(compiled.construct_params(_params(query, reltuples=reltuples)) or {})
    if audit is not None:
        params |= access.audit_params(audit)
    # Straight from psycopg: SQLAlchemy's execution and rows cost more than a sparse page's query.
    # Rows come back binary: parsing 100 rows' text took 0.3 ms more.
    cursor = conn.connection.dbapi_connection.cursor(binary=True)  # type: ignore[union-attr]
    try:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    finally:
        cursor.close()
    fetched = [_to_report(row) for row in rows[: query.limit]]
    page = fetched if query.bbox is None else [r for r in fetched if _inside(r, query.bbox)]
    # The next page starts after the last row fetched, kept or not: a page may come out a row
    # short, but no report inside the box is ever skipped.
    more = len(rows) > query.limit
    last = fetched[-1] if fetched else None
    next_key = PageKey(last.draft.observed_at, last.id) if more and last else None
    return ReportPage(reports=page, next_key=next_key)


# Two ways to a page of a bbox query, the first limit+1 matches in (observed_at, id) order:
#
# - in time order: walk the (observed_at, id) index, testing each report, until limit+1 match.
#   With n of N reports in the box, spread over time, that reads about (limit+1) * N / n rows;
# - matches first: every match, read from the cell index alone (migration 0010: a few columns
#   of grid cells, a range of grid rows in each, every position tested exactly), then the top
#   limit+1 by key, whose rows alone are read from the table. That reads n entries (and the few
#   beside the box in its edge cells) whatever the page size.
#
# On bench/features.py's data (1M reports, warm cache) a walked row costs ~0.5 us and a match
# ~0.55 us, so the two cost the same at n* = sqrt(0.9 (limit+1) N): ~9,500 matches for pages of
# 100, ~95,000 for pages of 10,000. A hot-spot box (82,000 matches) walks 1,000-1,500 rows in
# 1.5 ms, where its matches take 40-50 ms; a box on a quiet stretch of border (2,500-3,800) walks
# 29,000-46,000 rows in 13-28 ms, where its matches take 2-3 ms. (Through the GiST index, before
# the cell index, a match cost ~1.85 us: a heap page each.)
#
# PostgreSQL makes this choice itself, and errs both ways here: its costs (random_page_cost 4,
# for pages that are all cached) favour the walk several-fold, so it walked every border box; and
# its n (PostGIS's histogram, a few hundred cells over the whole extent) is too coarse for
# clustered data: of 80 random boxes, five that clip a hot spot were estimated at 1,200-5,400
# reports (the figures move with each ANALYZE) and held 31,000-81,000. So n is counted instead,
# from the rollups ingest keeps for the map tiles (tile_cells at their coarsest level, cells of
# ~6 x 6 km here): cells inside the box whole, edge cells by the share of their area inside it.
# On the same 80 boxes that was within 10% of the true count for 65 and within 25% for 74; the
# worst, 2.5x low, was a box of 39,000 counted as 15,900, still 3.6 n*. Counting reads at most
# _CELL_ROWS_MAX rollup rows, and a box over more rows than that (a regional view) is left to
# the planner.
#
# The count, the choice and the page are one statement (_page_statement): a round trip of its
# own for the count cost more than the count itself. PostgreSQL runs the way not chosen not at
# all (its gate is a one-time filter, from an InitPlan).
#
# The rollups may lag the reports (a bulk COPY before `crossings db rebuild-rollups`): fetching
# matches first stops at 2 n* of them, and the page is walked after all, so a wrong count costs
# milliseconds, never a scan of a hot spot. That cap is a constant to the planner (from N as of
# the last ANALYZE, kept with the connection for a minute): a LIMIT it cannot see leads it to
# plan for a tenth of the matches, and for boxes it overestimates, that was a sequential scan.
_WALK_US_PER_ROW = 0.5
_MATCH_US_PER_ROW = 0.55
_CELL_LEVEL = min(ROLLUP_LEVELS)
_CELL_ROWS_MAX = 1_000
_BOX_CELL_SHIFT = 12  # the cell index's columns: level-24 grid columns >> 12 (migration 0010)
_RELTUPLES_KEPT_S = 60.0
_tile_cells = table("tile_cells", column("level"), column("cx"), column("cy"), column("reports"))


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


def _box_params(
    bbox: tuple[float, float, float, float], *, limit: int, reltuples: float
) -> dict[str, Any]:
    """The box, the rollup cells under it (cx0-cx1, cy0-cy1) and its edges in cell units, from
    the grid cells that reports inside it have (grid y runs south); and the cap on matches."""
    min_lon, min_lat, max_lon, max_lat = bbox
    gx0, gy1 = grid_cell(min_lon, min_lat)
    gx1, gy0 = grid_cell(max_lon, max_lat)
    # For the cell index, a cell more each way: a position on a cell's edge may round either way.
    last = (1 << GRID_LEVEL) - 1
    columns = list(range(max(gx0 - 1, 0) >> _BOX_CELL_SHIFT,
                         (min(gx1 + 1, last) >> _BOX_CELL_SHIFT) + 1))  # fmt: skip
    shift = GRID_LEVEL - _CELL_LEVEL
    size = float(1 << shift)
    walk_per_match = _WALK_US_PER_ROW / _MATCH_US_PER_ROW
    return {
        "min_lon": min_lon, "min_lat": min_lat, "max_lon": max_lon, "max_lat": max_lat,
        "cell_columns": columns, "row0": max(gy0 - 1, 0), "row1": min(gy1 + 1, last),
        # Cells inside the box whatever the rounding: a cell's width inside its edge cells.
        "inner_x0": gx0 + 1, "inner_x1": gx1 - 1, "inner_y0": gy0 + 1, "inner_y1": gy1 - 1,
        "cx0": gx0 >> shift, "cx1": gx1 >> shift, "cy0": gy0 >> shift, "cy1": gy1 >> shift,
        "x0": gx0 / size, "x1": (gx1 + 1) / size, "y0": gy0 / size, "y1": (gy1 + 1) / size,
        "walk_per_match": walk_per_match, "reltuples": reltuples,
        "cap": 2 * math.ceil(math.sqrt(walk_per_match * (limit + 1) * max(reltuples, 0.0))),
    }  # fmt: skip


def _plan() -> CTE:
    """One row: whether the box's count (from the rollups) says to fetch its matches first.
    Binds the box's cells and the table's size (_box_params), and ``fetch``, the rows a page
    reads."""
    cells = (
        select(_tile_cells.c.cx, _tile_cells.c.cy, _tile_cells.c.reports)
        .where(
            _tile_cells.c.level == _CELL_LEVEL,
            _tile_cells.c.cx.between(bindparam("cx0"), bindparam("cx1")),
            _tile_cells.c.cy.between(bindparam("cy0"), bindparam("cy1")),
        )
        .limit(_CELL_ROWS_MAX)
        .subquery("cells")
    )
    share_x = func.least(cells.c.cx + 1, bindparam("x1")) - func.greatest(
        cells.c.cx, bindparam("x0")
    )
    share_y = func.least(cells.c.cy + 1, bindparam("y1")) - func.greatest(
        cells.c.cy, bindparam("y0")
    )
    counted = select(
        func.count().label("cell_rows"),
        func.coalesce(func.sum(cells.c.reports * share_x * share_y), 0).label("in_box"),
    ).subquery("counted")
    total = func.greatest(bindparam("reltuples"), counted.c.in_box)
    breakeven = func.sqrt(bindparam("walk_per_match") * bindparam("fetch") * total)
    return (
        select(
            and_(counted.c.cell_rows < _CELL_ROWS_MAX, counted.c.in_box <= breakeven).label("first")
        )
        .cte("plan")
        .prefix_with("MATERIALIZED")
    )


def _order(table: FromClause, *, descending: bool) -> tuple[ColumnElement[Any], ...]:
    if descending:
        return table.c.observed_at.desc(), table.c.id.desc()
    return table.c.observed_at, table.c.id


def _walk(shape: _Shape, *gate: ColumnElement[bool]) -> Select[Any]:
    """The page's rows (``fetch`` of them), as the planner chooses to find them (for a box:
    usually walking the (observed_at, id) index)."""
    return (
        select(*_COLUMNS)
        .where(and_(True, *gate, *_conditions(shape)))
        .order_by(*_order(reports, descending=shape.descending))
        .limit(bindparam("fetch"))
    )


def _matches(shape: _Shape, *gate: ColumnElement[bool]) -> CTE:
    """The keys of the box's matches, at most ``cap`` + 1 of them.

    MATERIALIZED fences the matches off from the ORDER BY ... LIMIT, which would otherwise lead
    the planner back to the time walk. (Their own LIMIT could in principle tempt it into a scan
    that stops early; on 1,500 random selective boxes it read them through the GiST index every
    time, and bench/features.py's boxes read them through the cell index.) They carry only their
    keys, and the page's rows are read again by primary key: ~15%
    cheaper than carrying every column of every match through the sort."""
    return (
        select(reports.c.observed_at, reports.c.id)
        .where(and_(True, *gate, *_conditions(shape, by_cells=True)))
        .limit(bindparam("cap") + 1)
        .cte("matches")
        .prefix_with("MATERIALIZED")
    )


def _matches_page(shape: _Shape, matches: CTE, *gate: ColumnElement[bool]) -> Select[Any]:
    """The page's rows (``fetch`` of them) from the matches, in page order."""
    page = (
        select(matches.c.observed_at, matches.c.id)
        .where(and_(True, *gate))
        .order_by(*_order(matches, descending=shape.descending))
        .limit(bindparam("fetch"))
        .subquery("page")
    )
    return (
        select(*_COLUMNS)
        .select_from(page.join(reports, reports.c.id == page.c.id))
        .order_by(*_order(page, descending=shape.descending))
    )


@functools.cache
def _page_statement(shape: _Shape) -> Select[Any]:
    """The statement of a page of this shape, with every value bound (_params)."""
    if not shape.bbox:
        return _walk(shape)
    plan = _plan()
    matches = _matches(shape, select(plan.c.first).scalar_subquery())
    # Matches first only when the count said so and they were no more than the cap.
    counted = select(func.count()).select_from(matches).scalar_subquery()
    way = (
        select(and_(plan.c.first, counted <= bindparam("cap")).label("first"))
        .cte("way")
        .prefix_with("MATERIALIZED")
    )
    first = select(way.c.first).scalar_subquery()
    rows = union_all(_matches_page(shape, matches, first), _walk(shape, not_(first))).subquery()
    return select(rows).order_by(*_order(rows, descending=shape.descending))


_DIALECT = psycopg_dialect()  # type: ignore[no-untyped-call]


@functools.cache
def _page_sql(shape: _Shape, *, audited: bool) -> tuple[Compiled, str]:
    """The page statement of this shape compiled once, and its SQL: with ``audited``, led by a
    data-modifying CTE that writes the audit entry (access.AUDIT_INSERT)."""
    compiled = _page_statement(shape).compile(dialect=_DIALECT)
    sql = compiled.string
    if audited:
        head = f"WITH audit AS ({access.AUDIT_INSERT} RETURNING 1)"
        if sql.startswith("WITH "):
            sql = f"{head}, {sql.removeprefix('WITH ')}"
        else:
            assert sql.startswith("SELECT "), sql[:40]
            sql = f"{head} {sql}"
    return compiled, sql


def report_extent(conn: Connection) -> Extent:
    # min/max observed_at walk the btree; the box needs a scan (ST_Extent over every point).
    row = conn.execute(
        select(
            func.min(reports.c.observed_at),
            func.max(reports.c.observed_at),
            func.ST_XMin(func.ST_Extent(reports.c.geom)),
            func.ST_YMin(func.ST_Extent(reports.c.geom)),
            func.ST_XMax(func.ST_Extent(reports.c.geom)),
            func.ST_YMax(func.ST_Extent(reports.c.geom)),
        )
    ).one()
    first, last, *box = row
    bbox = None if box[0] is None else (box[0], box[1], box[2], box[3])
    return Extent(bbox=bbox, first_observed=first, last_observed=last)


def _inside(report: Report, bbox: tuple[float, float, float, float]) -> bool:
    min_lon, min_lat, max_lon, max_lat = bbox
    return min_lon <= report.draft.lon <= max_lon and min_lat <= report.draft.lat <= max_lat


_STATUS = {status.value: status for status in SnapStatus}


def _to_report(row: Any) -> Report:  # a Row; SQLAlchemy types rows by their column count
    # Positional unpacking, in _COLUMNS order: by-name access costs more than the rest of the
    # row's work. Sessions run in UTC (make_engine), so times arrive as UTC already.
    (id_, observed_at, received_at, lon, lat, people_count, kind, direction, accuracy_m, notes,
     device_id, _digest, status, segment_id, distance_m, snap_lon, snap_lat, chainage_km,
     side) = row  # fmt: skip
    draft = ReportDraft(
        id_, observed_at, lon, lat, people_count, kind, direction, accuracy_m, notes, device_id
    )
    snap = SnapResult(
        _STATUS[status], segment_id, distance_m, snap_lon, snap_lat, chainage_km, side
    )
    return Report(draft=draft, received_at=received_at, snap=snap)
