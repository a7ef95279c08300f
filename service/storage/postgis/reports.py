"""Report persistence on PostGIS: exactly-once insert, lookup, filtered keyset pages."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from geoalchemy2.functions import ST_X, ST_Y, ST_MakeEnvelope
from sqlalchemy import (
    ColumnElement,
    Connection,
    FromClause,
    and_,
    bindparam,
    func,
    select,
    tuple_,
)

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


def _conditions(query: ReportQuery) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if query.bbox is not None:
        # && uses the GiST index but compares float4-rounded boxes, so it also lets in points up
        # to about a metre outside; query_reports tests the fetched rows exactly. (Exact tests in
        # SQL - ST_Intersects, or ranges on ST_X/ST_Y - mislead the planner: 0.3 ms became 14-89
        # ms on hot-spot pages in bench/features.py.)
        conditions.append(reports.c.geom.op("&&")(ST_MakeEnvelope(*query.bbox, 4326)))
    if query.start is not None:
        conditions.append(reports.c.observed_at >= query.start)
    if query.end is not None:
        conditions.append(reports.c.observed_at < query.end)
    if query.segment_id is not None:
        conditions.append(reports.c.segment_id == query.segment_id)
    if query.segment_ids is not None:
        conditions.append(reports.c.segment_id.in_(sorted(query.segment_ids)))
    if query.kind is not None:
        conditions.append(reports.c.kind == query.kind)
    if query.direction is not None:
        conditions.append(reports.c.direction == query.direction)
    if query.posted_by is not None:
        conditions.append(reports.c.key_id == query.posted_by)
    if query.after is not None:
        key = tuple_(reports.c.observed_at, reports.c.id)
        after = tuple_(query.after.observed_at, query.after.id)
        conditions.append(key < after if query.descending else key > after)
    return conditions


def query_reports(conn: Connection, query: ReportQuery) -> ReportPage:
    rows = None
    if query.bbox is not None:
        cap = _matches_first_cap(conn, query.bbox, limit=query.limit)
        if cap is not None:
            rows = _fetch_matches_first(conn, query, cap=cap)
    if rows is None:
        rows = _fetch_in_time_order(conn, query)
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
# - matches first: every match through the GiST index (a bitmap scan), then the top limit+1.
#   That reads n rows whatever the page size, each on a heap page of its own.
#
# On bench/features.py's data (1M reports, warm cache) a walked row costs ~0.35 us and a match
# fetched first ~1.85 us, so the two cost the same at n* = sqrt(0.19 (limit+1) N): ~4,400 matches
# for pages of 100, ~44,000 for pages of 10,000. A hot-spot box (82,000 matches) walks 1,200 rows
# in 0.3 ms, where fetching its matches takes 150+ ms; a box on a quiet stretch of border
# (2,500-3,800) walks 27,000-40,000 rows in 10-18 ms, where its matches take 4-6 ms.
#
# PostgreSQL makes this choice itself, and errs both ways here: its costs (random_page_cost 4,
# for pages that are all cached) favour the walk several-fold, so it walked every border box; and
# its n (PostGIS's histogram, a few hundred cells over the whole extent) is too coarse for
# clustered data: of 80 random boxes, five that clip a hot spot were estimated at 1,200-5,400
# reports (the figures move with each ANALYZE) and held 31,000-81,000. So n is counted instead,
# from the rollups ingest keeps for the map tiles (tile_cells at their coarsest level, cells of
# ~6 x 6 km here): cells inside the box whole, edge cells by the share of their area inside it.
# On the same 80 boxes that was within 10% of the true count for 65 and within 25% for 74; the
# worst, 2.5x low, was a box of 39,000 counted as 15,900, still 3.6 n*. Counting costs a round
# trip and ~0.1 ms of database time; it reads at most _CELL_ROWS_MAX rollup rows, and a box over
# more rows than that (a regional view) is left to the planner.
#
# The rollups may lag the reports (a bulk COPY before `crossings db rebuild-rollups`): fetching
# matches first stops at 2 n* of them, and the page is walked after all, so a wrong count costs
# milliseconds, never a scan of a hot spot.
_WALK_US_PER_ROW = 0.35
_MATCH_US_PER_ROW = 1.85
_CELL_LEVEL = min(ROLLUP_LEVELS)
_CELL_ROWS_MAX = 1_000
_BOX_COUNT = f"""
    SELECT (SELECT reltuples FROM pg_class WHERE oid = 'reports'::regclass), count(*),
           coalesce(sum(reports * (least(cx + 1, %(x1)s) - greatest(cx, %(x0)s))
                                * (least(cy + 1, %(y1)s) - greatest(cy, %(y0)s))), 0)
    FROM (SELECT cx, cy, reports FROM tile_cells
          WHERE level = {_CELL_LEVEL} AND cx BETWEEN %(cx0)s AND %(cx1)s
            AND cy BETWEEN %(cy0)s AND %(cy1)s
          LIMIT {_CELL_ROWS_MAX}) AS cells
    """


def _matches_first_cap(
    conn: Connection, bbox: tuple[float, float, float, float], *, limit: int
) -> int | None:
    """How many matches to fetch first at most, when that beats walking in time order; else None."""
    reltuples, cell_rows, in_box = conn.exec_driver_sql(_BOX_COUNT, _cell_range(bbox)).one()
    if cell_rows >= _CELL_ROWS_MAX:
        return None
    total = max(reltuples, in_box)  # reltuples is -1 before the first ANALYZE
    breakeven = math.sqrt(_WALK_US_PER_ROW / _MATCH_US_PER_ROW * (limit + 1) * total)
    return 2 * math.ceil(breakeven) if in_box <= breakeven else None


def _cell_range(bbox: tuple[float, float, float, float]) -> dict[str, float]:
    """The rollup cells under ``bbox`` (cx0-cx1, cy0-cy1) and its edges in cell units, from the
    grid cells that reports inside it have (grid y runs south)."""
    min_lon, min_lat, max_lon, max_lat = bbox
    gx0, gy1 = grid_cell(min_lon, min_lat)
    gx1, gy0 = grid_cell(max_lon, max_lat)
    shift = GRID_LEVEL - _CELL_LEVEL
    size = float(1 << shift)
    return {
        "cx0": gx0 >> shift, "cx1": gx1 >> shift, "cy0": gy0 >> shift, "cy1": gy1 >> shift,
        "x0": gx0 / size, "x1": (gx1 + 1) / size, "y0": gy0 / size, "y1": (gy1 + 1) / size,
    }  # fmt: skip


def _order(table: FromClause, *, descending: bool) -> tuple[ColumnElement[Any], ...]:
    if descending:
        return table.c.observed_at.desc(), table.c.id.desc()
    return table.c.observed_at, table.c.id


def _fetch_in_time_order(conn: Connection, query: ReportQuery) -> Sequence[Any]:
    """The page's limit+1 rows, as the planner chooses to find them (for a box: usually walking
    the (observed_at, id) index)."""
    stmt = (
        select(*_COLUMNS)
        .where(and_(True, *_conditions(query)))
        .order_by(*_order(reports, descending=query.descending))
        .limit(query.limit + 1)
    )
    return conn.execute(stmt).all()


def _fetch_matches_first(conn: Connection, query: ReportQuery, *, cap: int) -> Sequence[Any] | None:
    """The page's limit+1 rows from every match (at most ``cap`` of them), or None if more match.

    MATERIALIZED fences the matches off from the ORDER BY ... LIMIT, which would otherwise lead
    the planner back to the time walk. (Their own LIMIT could in principle tempt it into a scan
    that stops early; on 1,500 random selective boxes it read them through the GiST index every
    time.) They carry only their keys, and the page's rows are read again by primary key: ~15%
    cheaper than carrying every column of every match through the sort.
    """
    matches = (
        select(reports.c.observed_at, reports.c.id)
        .where(and_(True, *_conditions(query)))
        .limit(cap + 1)
        .cte("matches")
        .prefix_with("MATERIALIZED")
    )
    page = (
        select(matches.c.observed_at, matches.c.id)
        .order_by(*_order(matches, descending=query.descending))
        .limit(query.limit + 1)
        .subquery("page")
    )
    matched = select(func.count()).select_from(matches).scalar_subquery()
    stmt = (
        select(*_COLUMNS, matched)
        .select_from(page.join(reports, reports.c.id == page.c.id))
        .order_by(*_order(page, descending=query.descending))
    )
    rows = conn.execute(stmt).all()
    if rows and rows[0][-1] > cap:
        return None
    return [row[:-1] for row in rows]


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
