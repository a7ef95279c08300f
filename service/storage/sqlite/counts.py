"""Aggregate counts on SQLite: the same signed sum as on PostGIS (see postgis/counts.py), with
the parts passed as JSON arrays and times as integer microseconds. SQLite keeps no rollup with
positions: a box counts the reports of every part, each period read as the range it covers."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from datetime import datetime
from typing import Any

from service.domain.aggregation import CountQuery, CountRow, RangePart, period_end
from service.storage.rows import rows_of
from service.storage.sqlite.rows import from_micros, to_micros

# A rollup's period: every report in it one group of its own people ...
_ROLLUP = """
    SELECT json_extract(v.value, '$[1]') AS bucket, json_extract(v.value, '$[2]') AS sign, c.segment_id, c.side, c.kind,
           c.direction, c.reports, c.people, c.reports AS groups, c.people AS people_est
    FROM json_each(:{name}) AS v
    JOIN {table} c ON c.period = json_extract(v.value, '$[0]')
    WHERE true{filters}
"""
# ... and what linking changes in that, from group_days or group_months.
_GROUP_COUNTS = """
    SELECT json_extract(v.value, '$[1]') AS bucket, json_extract(v.value, '$[2]') AS sign, c.segment_id, c.side, c.kind,
           c.direction, 0 AS reports, 0 AS people, c.groups, c.people AS people_est
    FROM json_each(:{name}) AS v
    JOIN {table} c ON c.period = json_extract(v.value, '$[0]')
    WHERE true{filters}
"""
# A range's reports, each a group of its own or counted where its group counts (report_groups).
_RANGES = """
    SELECT json_extract(v.value, '$[2]') AS bucket, json_extract(v.value, '$[3]') AS sign, coalesce(r.segment_id, '') AS segment_id,
           coalesce(r.side, '') AS side, r.kind, coalesce(r.direction, '') AS direction,
           1 AS reports, r.people_count AS people, g.report_id IS NULL OR g.is_anchor AS groups,
           coalesce(g.group_people, r.people_count) AS people_est
    FROM json_each(:ranges) AS v
    JOIN reports r ON r.observed_at >= json_extract(v.value, '$[0]') AND r.observed_at < json_extract(v.value, '$[1]')
    LEFT JOIN report_groups g ON g.report_id = r.id
    WHERE true{filters}
"""
_BOX = " AND r.lon BETWEEN :w AND :e AND r.lat BETWEEN :s AND :n"


def _filters(query: CountQuery, alias: str) -> str:
    out = ""
    if query.kind is not None:
        out += f" AND {alias}.kind = :kind"
    if query.segment_ids is not None:
        out += f" AND {alias}.segment_id IN (SELECT value FROM json_each(:segment_ids))"
    return out


def count_reports(conn: sqlite3.Connection, query: CountQuery) -> list[CountRow]:
    if query.bbox is not None and query.periods:
        as_ranges = tuple(
            RangePart(p.period, period_end(p.grain, p.period), p.bucket, p.sign)
            for p in query.periods
        )
        query = dataclasses.replace(query, periods=(), ranges=as_ranges + query.ranges)
    params: dict[str, Any] = {
        "kind": query.kind,
        "segment_ids": None if query.segment_ids is None else json.dumps(sorted(query.segment_ids)),
    }
    sources = []
    for name, table, grain in (("months", "count_months", "month"), ("days", "count_days", "day")):
        chosen = [
            [to_micros(p.period), p.bucket, p.sign] for p in query.periods if p.grain == grain
        ]
        if chosen:
            params[name] = json.dumps(chosen)
            filters = _filters(query, "c")
            sources.append(_ROLLUP.format(name=name, table=table, filters=filters))
            grouped = f"group_{grain}s"
            sources.append(_GROUP_COUNTS.format(name=name, table=grouped, filters=filters))
    if query.ranges:
        params["ranges"] = json.dumps(
            [[to_micros(r.start), to_micros(r.end), r.bucket, r.sign] for r in query.ranges]
        )
        filters = _filters(query, "r")
        if query.bbox is not None:
            w, s, e, n = query.bbox
            params |= {"w": w, "s": s, "e": e, "n": n}
            filters += _BOX
        sources.append(_RANGES.format(filters=filters))
    if not sources:
        return []
    keys = "".join(f", {k}" for k in query.keys)
    sql = (
        f"SELECT bucket{keys}, sum(sign * reports), sum(sign * people), sum(sign * groups),"
        " sum(sign * people_est)"
        f" FROM ({' UNION ALL '.join(sources)}) GROUP BY bucket{keys}"
    )
    width = len(query.keys)
    return rows_of(conn.execute(sql, params), width=width)


def observed_range(conn: sqlite3.Connection) -> tuple[datetime, datetime] | None:
    first, last = conn.execute("SELECT min(observed_at), max(observed_at) FROM reports").fetchone()
    return None if first is None else (from_micros(first), from_micros(last))
