"""Links and groups on PostGIS (migrations 0015 and 0020): what ``storage.linking`` reads and
writes, the background linker's step, the stored estimates of u and the crowding
(``link_models``), and the links analysts list and review.

Ingest does not link: a statement trigger queues each snapped report it stores in
``link_pending``, and the rollup folder's thread calls ``link_some`` after each fold, in a
transaction of its own, so linking adds nothing to the acknowledgement's path. Everything that
writes links or groups holds ``LINK_LOCK`` (the linker tries it and skips its turn; deletion,
reviews and a border change wait for it), so two writers never regroup one component at once.
"""

from __future__ import annotations

import json
import random
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import Connection

from service.domain.grid import GRID_LEVEL
from service.domain.link_groups import Edge
from service.domain.link_model import EstimatedModel, UnrelatedSample
from service.domain.linking import Levels, Link, LinkRecord, MatchWeight
from service.domain.links import LinkPage, LinkQuery, LinkState, StoredLink, link_id
from service.domain.segments import BorderSegment
from service.storage.linking import (
    KEPT_MODELS,
    LATEST_MODEL,
    MODEL_MARKS,
    GroupRow,
    Linker,
    ScoredPair,
    model_of_row,
)
from service.storage.postgis import segments as segment_queries
from service.storage.postgis.rollups import CELL_DAYS_LEVEL

LINK_LOCK = 0x6C696E6B  # pg_advisory_xact_lock key ("link")
# The stored estimates kept: the latest and a few before it, for operators to compare.
# TABLESAMPLE SYSTEM reads whole pages: read about this many times the reports wanted, then draw
# among them, so that one page's reports (often one batch's) are not the whole sample.
_OVERSAMPLE = 4
_ROW_ESTIMATE = "SELECT reltuples FROM pg_class WHERE oid = 'reports'::regclass"

_RECORD = (
    "SELECT id, observed_at, ST_X(geom), ST_Y(geom), segment_id, people_count, kind,"
    " direction, key_id, device_id FROM reports"
)
# Each span one range of reports_segment_observed, all in one statement.
_NEAR = (
    "SELECT id, observed_at, ST_X(geom), ST_Y(geom), segment_id, people_count, kind,"
    " direction, key_id, device_id"
    " FROM unnest(%(segment)s::text[], %(start)s::timestamptz[], %(end)s::timestamptz[])"
    " AS s(segment, start, stop)"
    " JOIN reports ON reports.segment_id = s.segment"
    " AND reports.observed_at BETWEEN s.start AND s.stop"
)
_LINK = (
    "SELECT id, a, b, segment_a, segment_b, levels, per_field, weight, state, created_at,"
    " reviewed_by, reviewed_at, model_version FROM report_links"
)


def _record(row: Any) -> LinkRecord:
    id_, observed_at, lon, lat, segment_id, people, kind, direction, key_id, device_id = row
    return LinkRecord(
        id_, observed_at, lon, lat, segment_id, people, kind, direction, key_id, device_id
    )  # fmt: skip


class PostgisLinkTx:
    """``LinkTx`` over one PostGIS connection in a transaction holding LINK_LOCK."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def border_version(self) -> int:
        return segment_queries.border_version(self.conn)

    def segments(self) -> list[BorderSegment]:
        return segment_queries.list_segments(self.conn)

    def records(self, ids: Collection[UUID]) -> list[LinkRecord]:
        rows = self.conn.exec_driver_sql(
            _RECORD + " WHERE id = ANY(%(ids)s::uuid[])", {"ids": list(ids)}
        )
        return [_record(row) for row in rows]

    def records_near(self, spans: Sequence[tuple[str, datetime, datetime]]) -> list[LinkRecord]:
        if not spans:
            return []
        rows = self.conn.exec_driver_sql(
            _NEAR,
            {
                "segment": [s[0] for s in spans],
                "start": [s[1] for s in spans],
                "end": [s[2] for s in spans],
            },
        )
        return [_record(row) for row in rows]

    def add_links(self, links: Sequence[Link], *, at: datetime, model_version: int) -> None:
        self.conn.exec_driver_sql(
            """
            INSERT INTO report_links (id, a, b, segment_a, segment_b, levels, per_field, weight,
                                      created_at, model_version)
            SELECT l.id, l.a, l.b, ra.segment_id, rb.segment_id, l.levels::smallint[],
                   l.per_field, l.weight, %(at)s, %(version)s
            FROM unnest(%(id)s::uuid[], %(a)s::uuid[], %(b)s::uuid[], %(levels)s::text[],
                        %(per_field)s::text[], %(weight)s::float8[])
                 AS l(id, a, b, levels, per_field, weight)
            LEFT JOIN reports ra ON ra.id = l.a
            LEFT JOIN reports rb ON rb.id = l.b
            ORDER BY l.a, l.b
            ON CONFLICT (a, b) DO NOTHING
            """,
            {
                "id": [link_id(k.a, k.b) for k in links],
                "a": [k.a for k in links],
                "b": [k.b for k in links],
                "levels": ["{" + ",".join(map(str, k.weight.levels)) + "}" for k in links],
                "per_field": [json.dumps(dict(k.weight.per_field)) for k in links],
                "weight": [k.weight.total for k in links],
                "at": at,
                "version": model_version,
            },
        )

    def edges_touching(self, ids: Collection[UUID]) -> list[Edge[UUID]]:
        rows = self.conn.exec_driver_sql(
            "SELECT a, b, weight, state FROM report_links WHERE state != 'rejected'"
            " AND (a = ANY(%(ids)s::uuid[]) OR b = ANY(%(ids)s::uuid[]))",
            {"ids": list(ids)},
        )
        return [
            Edge(a, b, weight, 1 if state == LinkState.CONFIRMED else 0)
            for a, b, weight, state in rows
        ]

    def set_groups(self, ids: Collection[UUID], rows: Sequence[GroupRow]) -> None:
        _count_groups(self.conn, ids, sign=-1)
        self.conn.exec_driver_sql(
            "DELETE FROM report_groups WHERE report_id = ANY(%(ids)s::uuid[])", {"ids": list(ids)}
        )
        if rows:
            self.conn.exec_driver_sql(
                "INSERT INTO report_groups (report_id, group_id, is_anchor, group_people)"
                " SELECT * FROM unnest(%(r)s::uuid[], %(g)s::uuid[], %(anchor)s::boolean[],"
                " %(people)s::int[])",
                {
                    "r": [r.report_id for r in rows],
                    "g": [r.group_id for r in rows],
                    "anchor": [r.is_anchor for r in rows],
                    "people": [r.group_people for r in rows],
                },
            )
            _count_groups(self.conn, [r.report_id for r in rows], sign=1)

    def linked_between(self, start: datetime, end: datetime) -> list[UUID]:
        rows = self.conn.exec_driver_sql(
            "SELECT r.id FROM reports r WHERE r.observed_at >= %(start)s"
            " AND r.observed_at < %(end)s AND EXISTS (SELECT 1 FROM report_links l"
            " WHERE l.state != 'rejected' AND (l.a = r.id OR l.b = r.id))",
            {"start": start, "end": end},
        )
        return [x for (x,) in rows]

    def model_marks(self) -> tuple[int, int]:
        confirmed, version = self.conn.exec_driver_sql(MODEL_MARKS).one()
        return int(confirmed), int(version)

    def confirmed_levels(self) -> list[Levels]:
        rows = self.conn.exec_driver_sql(
            "SELECT levels FROM report_links WHERE state = 'confirmed'"
        )
        return [tuple(levels) for (levels,) in rows]

    def latest_model(self) -> EstimatedModel | None:
        row = self.conn.exec_driver_sql(LATEST_MODEL).first()
        return None if row is None else model_of_row(row, row[1])

    def save_model(self, model: EstimatedModel) -> int:
        values = model.as_json()
        version = self.conn.exec_driver_sql(
            "INSERT INTO link_models (estimated_at, border_version, reports, pairs, u, crowding)"
            " VALUES (%(at)s, %(border)s, %(reports)s, %(pairs)s, %(u)s, %(crowding)s)"
            " RETURNING version",
            {
                "at": model.estimated_at, "border": model.border_version,
                "reports": model.reports, "pairs": model.pairs,
                "u": json.dumps(values["u"]), "crowding": json.dumps(values["crowding"]),
            },
        ).scalar_one()  # fmt: skip
        self.conn.exec_driver_sql(
            "DELETE FROM link_models WHERE version <= %(v)s", {"v": version - KEPT_MODELS}
        )
        return int(version)

    def random_records(self, size: int, *, seed: int) -> list[LinkRecord]:
        # Whole pages at random (TABLESAMPLE SYSTEM: only the pages drawn are read), about
        # _OVERSAMPLE times the reports wanted by the planner's row estimate, and reports drawn
        # among them: every report is equally likely. A table never analysed (just restored or
        # imported: no estimate) is analysed first, which reads a bounded sample of its own; the
        # LIMIT bounds what a stale estimate (far below the table's size) would read; a small
        # table is read whole.
        rows = self.conn.exec_driver_sql(_ROW_ESTIMATE).scalar_one()
        if rows <= 0:
            self.conn.exec_driver_sql("ANALYZE reports")
            rows = self.conn.exec_driver_sql(_ROW_ESTIMATE).scalar_one()
        percent = 100.0 if rows <= 0 else min(100.0, 100.0 * _OVERSAMPLE * size / rows)
        found = self.conn.exec_driver_sql(
            _RECORD + " TABLESAMPLE SYSTEM (%(percent)s::real) REPEATABLE (%(seed)s::float8)"
            " WHERE segment_id IS NOT NULL LIMIT %(most)s",
            {"percent": percent, "seed": seed % 2**31, "most": max(2 * _OVERSAMPLE * size, 10_000)},
        )
        records = sorted((_record(row) for row in found), key=lambda r: r.id)
        return random.Random(seed).sample(records, min(size, len(records)))

    def proposed_behind(self, version: int, limit: int) -> list[ScoredPair]:
        rows = self.conn.exec_driver_sql(
            "SELECT a, b, levels, segment_a, segment_b FROM report_links"
            " WHERE state = 'proposed' AND model_version < %(v)s ORDER BY model_version"
            " LIMIT %(n)s",
            {"v": version, "n": limit},
        )
        return [ScoredPair(a, b, tuple(levels), sa, sb) for a, b, levels, sa, sb in rows]

    def rescore(
        self,
        kept: Sequence[tuple[UUID, UUID, MatchWeight]],
        dropped: Sequence[tuple[UUID, UUID]],
        *,
        model_version: int,
    ) -> None:
        if kept:
            self.conn.exec_driver_sql(
                "UPDATE report_links l SET per_field = k.per_field, weight = k.weight,"
                " model_version = %(v)s"
                " FROM unnest(%(a)s::uuid[], %(b)s::uuid[], %(per_field)s::text[],"
                " %(weight)s::float8[]) AS k(a, b, per_field, weight)"
                " WHERE l.a = k.a AND l.b = k.b AND l.state = 'proposed'",
                {
                    "v": model_version,
                    "a": [a for a, _, _ in kept],
                    "b": [b for _, b, _ in kept],
                    "per_field": [json.dumps(dict(w.per_field)) for _, _, w in kept],
                    "weight": [w.total for _, _, w in kept],
                },
            )
        if dropped:
            self.conn.exec_driver_sql(
                "DELETE FROM report_links l USING unnest(%(a)s::uuid[], %(b)s::uuid[]) AS d(a, b)"
                " WHERE l.a = d.a AND l.b = d.b AND l.state = 'proposed'",
                {"a": [a for a, _ in dropped], "b": [b for _, b in dropped]},
            )


# What the group rows of some reports change in the counts (migration 0017): per UTC day and
# level-12 cell in group_days, per UTC month in group_months; upserted in key order, as the
# rollups are.
_CELL = GRID_LEVEL - CELL_DAYS_LEVEL
_GROUP_TABLES = {
    "group_days": (
        "date_trunc('day', r.observed_at, 'UTC')",
        f", r.grid_x >> {_CELL}, r.grid_y >> {_CELL}",
        ", cx, cy",
    ),
    "group_months": ("date_trunc('month', r.observed_at, 'UTC')", "", ""),
}


def _count_sql(table: str) -> str:
    period, cell_values, cells = _GROUP_TABLES[table]
    places = "1, 2, 3, 4, 5" + (", 6, 7" if cells else "")
    return f"""
        INSERT INTO {table} AS t (period, segment_id, side, kind, direction{cells}, groups, people)
        SELECT {period}, coalesce(r.segment_id, ''), coalesce(r.side::text, ''), r.kind,
               coalesce(r.direction::text, ''){cell_values},
               %(sign)s * sum(g.is_anchor::int - 1), %(sign)s * sum(g.group_people - r.people_count)
        FROM report_groups g JOIN reports r ON r.id = g.report_id
        WHERE g.report_id = ANY(%(ids)s::uuid[])
        GROUP BY {places}
        ORDER BY {places}
        ON CONFLICT (period, segment_id, side, kind, direction{cells}) DO UPDATE
        SET groups = t.groups + excluded.groups, people = t.people + excluded.people
        RETURNING t.period
    """


def _count_groups(conn: Connection, ids: Collection[UUID], *, sign: int) -> None:
    """Count the group rows of ``ids`` into group_days and group_months (``sign`` 1) or out of
    them (-1): called just after they are written and just before they are deleted, with their
    reports stored. Rows that come to nothing go."""
    if not ids:
        return
    for table in _GROUP_TABLES:
        touched = conn.exec_driver_sql(_count_sql(table), {"ids": list(ids), "sign": sign})
        periods = sorted({period for (period,) in touched})
        conn.exec_driver_sql(
            f"DELETE FROM {table} WHERE period = ANY(%(p)s::timestamptz[])"
            " AND groups = 0 AND people = 0",
            {"p": periods},
        )


def _lock(conn: Connection) -> None:
    conn.exec_driver_sql("SELECT pg_advisory_xact_lock(%(k)s)", {"k": LINK_LOCK})


def link_some(
    conn: Connection, linker: Linker, limit: int, *, at: datetime, wait: bool = False
) -> int | None:
    """Link up to ``limit`` queued reports, in the caller's transaction: how many were taken off
    the queue, or None when another transaction holds the link lock (``wait``: wait for it)."""
    if wait:
        _lock(conn)
    elif not conn.exec_driver_sql(
        "SELECT pg_try_advisory_xact_lock(%(k)s)", {"k": LINK_LOCK}
    ).scalar():
        return None
    ids = [
        id_
        for (id_,) in conn.exec_driver_sql(
            "DELETE FROM link_pending WHERE id = ANY(ARRAY(SELECT id FROM link_pending"
            " LIMIT %(n)s)) RETURNING id",
            {"n": limit},
        )
    ]
    if ids:
        linker.link(PostgisLinkTx(conn), ids, at=at)
    return len(ids)


def release_groups(conn: Connection, linker: Linker, before: datetime) -> list[GroupRow]:
    """The groups a release of the reports observed before ``before`` counts where they differ
    from the stored ones (``Linker.groups_before``), holding the link lock until the caller's
    transaction ends: the cut reads the groups as they were when these were made."""
    _lock(conn)
    return linker.groups_before(PostgisLinkTx(conn), before)


def forget_report(conn: Connection, linker: Linker, report_id: UUID) -> None:
    """A deleted report's links go, and its old component is grouped again."""
    _lock(conn)
    conn.exec_driver_sql("DELETE FROM link_pending WHERE id = %(id)s", {"id": report_id})
    others = conn.exec_driver_sql(
        "DELETE FROM report_links WHERE a = %(id)s OR b = %(id)s"
        " RETURNING CASE WHEN a = %(id)s THEN b ELSE a END",
        {"id": report_id},
    ).all()
    _count_groups(conn, [report_id], sign=-1)
    conn.exec_driver_sql("DELETE FROM report_groups WHERE report_id = %(id)s", {"id": report_id})
    linker.regroup(PostgisLinkTx(conn), {x for (x,) in others})


def sample_unrelated(conn: Connection, linker: Linker, size: int, *, seed: int) -> UnrelatedSample:
    return linker.sample_unrelated(PostgisLinkTx(conn), size, seed=seed)


def save_model(conn: Connection, model: EstimatedModel) -> int:
    """Store a new estimate, under the link lock (one version at a time)."""
    _lock(conn)
    return PostgisLinkTx(conn).save_model(model)


def latest_model(conn: Connection) -> EstimatedModel | None:
    return PostgisLinkTx(conn).latest_model()


def rescore_links(conn: Connection, linker: Linker, limit: int) -> int:
    """Rescore up to ``limit`` proposed links under the current estimate, holding the link lock."""
    _lock(conn)
    return linker.rescore_some(PostgisLinkTx(conn), limit)


def relink_all(conn: Connection, linker: Linker) -> None:
    """After a border change (in its transaction): drop the proposed links and every group, keep
    the reviewed links, regroup the confirmed ones now and queue every snapped report for the
    background linker."""
    _lock(conn)
    conn.exec_driver_sql("DELETE FROM report_links WHERE state = 'proposed'")
    conn.exec_driver_sql("DELETE FROM report_groups")
    conn.exec_driver_sql("DELETE FROM group_days")
    conn.exec_driver_sql("DELETE FROM group_months")
    reviewed = conn.exec_driver_sql("SELECT a, b FROM report_links WHERE state = 'confirmed'").all()
    linker.regroup(PostgisLinkTx(conn), {x for pair in reviewed for x in pair})
    conn.exec_driver_sql(
        "INSERT INTO link_pending (id) SELECT id FROM reports WHERE segment_id IS NOT NULL"
        " ON CONFLICT DO NOTHING"
    )


def pending_links(conn: Connection) -> int:
    return int(conn.exec_driver_sql("SELECT count(*) FROM link_pending").scalar_one())


def _stored(row: Any) -> StoredLink:
    (id_, a, b, seg_a, seg_b, levels, per_field, weight, state, created_at, by, reviewed_at,
     version) = row  # fmt: skip
    return StoredLink(
        id_, a, b, seg_a, seg_b, tuple(levels), json.loads(per_field), weight, LinkState(state),
        created_at, by, reviewed_at, version,
    )  # fmt: skip


def list_links(conn: Connection, query: LinkQuery) -> LinkPage:
    clauses: list[str] = []
    params: dict[str, Any] = {"limit": query.limit + 1}
    if query.state is not None:
        clauses.append("state = %(state)s")
        params["state"] = query.state.value
    if query.segment_id is not None:
        clauses.append("(segment_a = %(segment)s OR segment_b = %(segment)s)")
        params["segment"] = query.segment_id
    if query.since is not None:
        clauses.append("created_at >= %(since)s")
        params["since"] = query.since
    if query.after is not None:
        clauses.append("(created_at, id) > (%(after_at)s, %(after_id)s)")
        params.update(after_at=query.after[0], after_id=query.after[1])
    where = " WHERE " + " AND ".join(clauses) if clauses else ""
    rows = conn.exec_driver_sql(_LINK + where + " ORDER BY created_at, id LIMIT %(limit)s", params)
    links = [_stored(row) for row in rows]
    more = len(links) > query.limit
    links = links[: query.limit]
    return LinkPage(links, (links[-1].created_at, links[-1].id) if more else None)


def review_link(
    conn: Connection,
    linker: Linker,
    link: UUID,
    *,
    state: LinkState,
    reviewed_by: str | None,
    at: datetime,
) -> StoredLink | None:
    """Confirm or reject a link and regroup its reports' component; None: no such link."""
    _lock(conn)
    found = conn.exec_driver_sql(
        "UPDATE report_links SET state = %(state)s, reviewed_by = %(by)s, reviewed_at = %(at)s"
        " WHERE id = %(id)s RETURNING a, b",
        {"state": state.value, "by": reviewed_by, "at": at, "id": link},
    ).first()
    if found is None:
        return None
    linker.regroup(PostgisLinkTx(conn), {found[0], found[1]})
    return _stored(conn.exec_driver_sql(_LINK + " WHERE id = %(id)s", {"id": link}).one())


def group_ids(conn: Connection, ids: Collection[UUID]) -> dict[UUID, UUID]:
    rows = conn.exec_driver_sql(
        "SELECT report_id, group_id FROM report_groups WHERE report_id = ANY(%(ids)s::uuid[])",
        {"ids": list(ids)},
    )
    return {r: g for r, g in rows}
