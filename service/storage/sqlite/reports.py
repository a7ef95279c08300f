"""Reports in SQLite: exactly-once inserts, lookups, and filtered keyset pages.

Each function runs inside the transaction its caller (SqliteStore) opened on ``conn``.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from datetime import date
from typing import Any, NamedTuple

from service.domain.queries import Extent, PageKey, ReportPage, ReportQuery
from service.domain.reports import IngestOutcome, IngestResult, Report
from service.storage.sqlite import filters
from service.storage.sqlite.rows import (
    REPORT_COLUMNS,
    ReportRow,
    from_micros,
    report_from_row,
    report_row,
    to_micros,
)

_SELECT = "SELECT " + REPORT_COLUMNS + " FROM reports"
_INSERT = (
    "INSERT INTO reports ("
    + REPORT_COLUMNS
    + ") VALUES ("
    + ", ".join("?" * len(ReportRow._fields))
    + ")"
)
_HASH_COLUMN = ReportRow._fields.index("content_hash")
_SELECT_BY_IDS = (
    "SELECT "
    + REPORT_COLUMNS
    + ", key_id FROM reports WHERE id IN (SELECT value FROM json_each(?))"
)
# New rows get rowids above the old maximum (SQLite's rule while it is below 2**63 - 1), so this
# indexes exactly the rows the batch inserted. The R*Tree rounds each stored box outward to
# float32, so a point's box always contains the point.
_INDEX_NEW_ROWS = (
    "INSERT INTO reports_rtree (row_no, min_lon, max_lon, min_lat, max_lat)"
    " SELECT row_no, lon, lon, lat, lat FROM reports WHERE row_no > ?"
)

# Query clauses: constant text; values always travel as named parameters.
_RTREE_BOX = (
    "min_lon <= :box_max_lon AND max_lon >= :box_min_lon"
    " AND min_lat <= :box_max_lat AND max_lat >= :box_min_lat"
)
_IN_RTREE_BOX = "row_no IN (SELECT row_no FROM reports_rtree WHERE " + _RTREE_BOX + ")"
_COUNT_IN_RTREE_BOX = (
    "SELECT count(*) FROM (SELECT 1 FROM reports_rtree WHERE " + _RTREE_BOX + " LIMIT :cap)"
)
_IN_BOX = "lon BETWEEN :min_lon AND :max_lon AND lat BETWEEN :min_lat AND :max_lat"
_FROM_START = "observed_at >= :start"
_BEFORE_END = "observed_at < :end"
_ON_SEGMENT = "segment_id = :segment_id"
_OF_KIND = "kind = :kind"
_IN_SEGMENTS = "segment_id IN (SELECT value FROM json_each(:segment_ids))"
_OF_DIRECTION = "direction = :direction"
_AFTER_KEY = "(observed_at, id) > (:after_observed_at, :after_id)"
_BEFORE_KEY = "(observed_at, id) < (:after_observed_at, :after_id)"
_ORDER_AND_LIMIT = " ORDER BY observed_at, id LIMIT :limit"
_ORDER_DESC_AND_LIMIT = " ORDER BY observed_at DESC, id DESC LIMIT :limit"


def add_reports(
    conn: sqlite3.Connection, reports: Sequence[Report], posted_by: str | None = None
) -> list[IngestResult]:
    """One result per report, in order; inserts those whose id is new (see ReportStore).

    Runs under the write lock (BEGIN IMMEDIATE), so the ids read here cannot change before the
    insert: a plain INSERT cannot meet an existing id, and if it ever did the unique key would
    roll the whole batch back rather than store a second copy.
    """
    known = _stored_by_id(conn, {str(r.id) for r in reports})
    results: list[IngestResult] = []
    rows: list[ReportRow] = []
    for report in reports:
        key, digest = str(report.id), report.draft.content_hash()
        stored = known.get(key)
        if stored is None:
            known[key] = (digest, report, posted_by)
            rows.append(report_row(report, digest))
            results.append(IngestResult(IngestOutcome.CREATED, report))
        else:
            outcome = IngestOutcome.DUPLICATE if stored[0] == digest else IngestOutcome.CONFLICT
            results.append(IngestResult(outcome, stored[1], same_poster=stored[2] == posted_by))
    if rows:
        (last_row_no,) = conn.execute("SELECT coalesce(max(row_no), 0) FROM reports").fetchone()
        conn.executemany(_INSERT, rows)
        conn.execute(_INDEX_NEW_ROWS, (last_row_no,))
        if posted_by is not None:
            conn.execute("UPDATE reports SET key_id = ? WHERE row_no > ?", (posted_by, last_row_no))
        count_rows(conn, after_row_no=last_row_no)
    return results


# The UTC period each rollup counts by, from observed_at (integer microseconds since the epoch).
_PERIOD_OF = {
    "count_days": "observed_at - observed_at % 86400000000",
    "count_months": (
        "CAST(strftime('%s', strftime('%Y-%m-01', observed_at / 1000000, 'unixepoch'))"
        " AS INTEGER) * 1000000"
    ),
}


def count_rows(conn: sqlite3.Connection, *, after_row_no: int) -> None:
    """Add the reports with row_no > ``after_row_no`` to the count rollups, in the caller's
    transaction, so that they commit or roll back together with the reports themselves."""
    _count(conn, "row_no > ?", after_row_no, sign=1)


def delete_report(conn: sqlite3.Connection, report_id: str) -> Counted | None:
    """Delete a report and count it out of the rollups, in the caller's transaction: where it
    was counted (None: no such report)."""
    row = conn.execute(
        "SELECT row_no, segment_id, kind, observed_at FROM reports WHERE id = ?", (report_id,)
    ).fetchone()
    if row is None:
        return None
    row_no, segment_id, kind, observed_at = row
    _count(conn, "row_no = ?", row_no, sign=-1)
    conn.execute("DELETE FROM reports WHERE row_no = ?", (row_no,))
    conn.execute("DELETE FROM reports_rtree WHERE row_no = ?", (row_no,))
    for table in _PERIOD_OF:
        conn.execute(f"DELETE FROM {table} WHERE reports = 0")
    return Counted(segment_id, kind, from_micros(observed_at).date())


class Counted(NamedTuple):
    """Where a report was counted: its segment (None beyond the border), kind and UTC day."""

    segment_id: str | None
    kind: str
    day: date


def _count(conn: sqlite3.Connection, where: str, value: int, *, sign: int) -> None:
    for table, period in _PERIOD_OF.items():
        conn.execute(
            f"INSERT INTO {table} (segment_id, period, side, kind, direction, reports, people)"
            f" SELECT coalesce(segment_id, ''), {period}, coalesce(side, ''), kind,"
            f" coalesce(direction, ''), {int(sign)} * count(*), {int(sign)} * sum(people_count)"
            f" FROM reports WHERE {where} GROUP BY 1, 2, 3, 4, 5"
            " ON CONFLICT (segment_id, period, side, kind, direction) DO UPDATE"
            " SET reports = reports + excluded.reports, people = people + excluded.people",
            (value,),
        )


def rebuild_counts(conn: sqlite3.Connection) -> None:
    for table in _PERIOD_OF:
        conn.execute(f"DELETE FROM {table}")
    count_rows(conn, after_row_no=0)


def _stored_by_id(
    conn: sqlite3.Connection, ids: set[str]
) -> dict[str, tuple[bytes, Report, str | None]]:
    """The content hash, report and posting key stored under each of ``ids`` that exists."""
    rows = conn.execute(_SELECT_BY_IDS, (json.dumps(sorted(ids)),)).fetchall()
    return {row[0]: (row[_HASH_COLUMN], report_from_row(row[:-1]), row[-1]) for row in rows}


def get_report(
    conn: sqlite3.Connection, report_id: str, posted_by: str | None = None
) -> Report | None:
    if posted_by is None:
        row = conn.execute(_SELECT + " WHERE id = ?", (report_id,)).fetchone()
    else:
        row = conn.execute(
            _SELECT + " WHERE id = ? AND key_id = ?", (report_id, posted_by)
        ).fetchone()
    return None if row is None else report_from_row(row)


def query_reports(conn: sqlite3.Connection, query: ReportQuery) -> ReportPage:
    """Up to ``query.limit`` matching reports after ``query.after``, and where the next page starts.

    One extra row is fetched to tell whether a next page exists, so ``next_key`` is None on the
    last page rather than pointing at an empty one.
    """
    if query.limit < 1:
        raise ValueError(f"limit must be at least 1, not {query.limit}")
    clauses, params = _where(conn, query)
    if query.bbox is not None and _is_sparse_box(conn, params):
        clauses.append(_IN_RTREE_BOX)
    where = " WHERE " + " AND ".join(clauses) if clauses else ""
    params["limit"] = query.limit + 1
    order = _ORDER_DESC_AND_LIMIT if query.descending else _ORDER_AND_LIMIT
    rows = conn.execute(_SELECT + where + order, params).fetchall()
    reports = [report_from_row(row) for row in rows[: query.limit]]
    if len(rows) <= query.limit:
        return ReportPage(reports=reports, next_key=None)
    last = reports[-1]
    return ReportPage(reports=reports, next_key=PageKey(last.draft.observed_at, last.id))


_EXTENT = (
    "SELECT min(observed_at), max(observed_at), min(lon), min(lat), max(lon), max(lat) FROM reports"
)


def report_extent(conn: sqlite3.Connection) -> Extent:
    first, last, *box = conn.execute(_EXTENT).fetchone()
    return Extent(
        bbox=None if box[0] is None else (box[0], box[1], box[2], box[3]),
        first_observed=None if first is None else from_micros(first),
        last_observed=None if last is None else from_micros(last),
    )


def _where(conn: sqlite3.Connection, query: ReportQuery) -> tuple[list[str], dict[str, Any]]:
    """The query's conditions and their values (a filter's functions registered on ``conn``)."""
    clauses: list[str] = []
    params: dict[str, Any] = {}
    if query.bbox is not None:
        min_lon, min_lat, max_lon, max_lat = query.bbox
        clauses.append(_IN_BOX)  # exact, inclusive; the R*Tree only ever narrows the search
        params.update(min_lon=min_lon, min_lat=min_lat, max_lon=max_lon, max_lat=max_lat)
        params.update(
            box_min_lon=_widen_down(min_lon),
            box_min_lat=_widen_down(min_lat),
            box_max_lon=_widen_up(max_lon),
            box_max_lat=_widen_up(max_lat),
        )
    if query.start is not None:
        clauses.append(_FROM_START)
        params["start"] = to_micros(query.start)
    if query.end is not None:
        clauses.append(_BEFORE_END)
        params["end"] = to_micros(query.end)
    if query.segment_id is not None:
        clauses.append(_ON_SEGMENT)
        params["segment_id"] = query.segment_id
    if query.segment_ids is not None:
        clauses.append(_IN_SEGMENTS)
        params["segment_ids"] = json.dumps(sorted(query.segment_ids))
    if query.kind is not None:
        clauses.append(_OF_KIND)
        params["kind"] = query.kind
    if query.direction is not None:
        clauses.append(_OF_DIRECTION)
        params["direction"] = query.direction
    if query.posted_by is not None:
        clauses.append("key_id = :posted_by")
        params["posted_by"] = query.posted_by
    if query.filter is not None:
        condition = filters.condition(query.filter)
        condition.register(conn)
        clauses.append(condition.sql)
        params.update(condition.params)
    if query.after is not None:
        clauses.append(_BEFORE_KEY if query.descending else _AFTER_KEY)
        params["after_observed_at"] = to_micros(query.after.observed_at)
        params["after_id"] = str(query.after.id)
    return clauses, params


# A box holding few reports is found fastest through the R*Tree and then sorted; a box holding
# many is found fastest walking the (observed_at, id) order and testing lon/lat on the way, which
# stops after one page instead of sorting the whole box.
RTREE_MAX_ROWS = 5_000


def _is_sparse_box(conn: sqlite3.Connection, params: dict[str, Any]) -> bool:
    box = {k: v for k, v in params.items() if k.startswith("box_")}
    (count,) = conn.execute(_COUNT_IN_RTREE_BOX, {**box, "cap": RTREE_MAX_ROWS}).fetchone()
    return int(count) < RTREE_MAX_ROWS


# The R*Tree keeps float32 boxes, a coarser grid than the REAL columns. Its coarse test runs on a
# box widened by more than a float32 rounding step (2**-24 relative, or the smallest normal
# float32 near zero); the exact BETWEEN on lon/lat then decides, with inclusive edges.
_RELATIVE_MARGIN = 2.0**-20
_ABSOLUTE_MARGIN = 2.0**-126


def _widen_down(value: float) -> float:
    return value - abs(value) * _RELATIVE_MARGIN - _ABSOLUTE_MARGIN


def _widen_up(value: float) -> float:
    return value + abs(value) * _RELATIVE_MARGIN + _ABSOLUTE_MARGIN


def count_matched(conn: sqlite3.Connection, *, query: ReportQuery) -> int | None:
    """With no filter, the number of reports from the month rollup (kept in the same transaction
    as the reports: a sum over a few rows per segment and month); else None (not counted)."""
    if not query.filters_nothing():
        return None
    (total,) = conn.execute("SELECT coalesce(sum(reports), 0) FROM count_months").fetchone()
    return int(total)
