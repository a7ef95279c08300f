"""Links and groups in SQLite (schema steps 9 and 12): what ``storage.linking`` reads and writes,
the stored estimates of u and the crowding (``link_models``), and the links analysts list and
review. Each function runs in the transaction its caller opened."""

from __future__ import annotations

import json
import random
import sqlite3
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from service.domain.link_groups import Edge
from service.domain.link_model import EstimatedModel, UnrelatedSample
from service.domain.linking import Levels, Link, LinkRecord, MatchWeight
from service.domain.links import LinkPage, LinkQuery, LinkState, StoredLink, link_id
from service.domain.reports import Report
from service.domain.segments import BorderSegment
from service.storage.linking import (
    KEPT_MODELS,
    LATEST_MODEL,
    LINK_BATCH,
    MODEL_MARKS,
    GroupRow,
    Linker,
    ScoredPair,
    model_of_row,
)
from service.storage.sqlite import segments as segment_queries
from service.storage.sqlite.rows import from_micros, to_micros

_RECORD = (
    "SELECT id, observed_at, lon, lat, segment_id, people_count, kind, direction, key_id,"
    " device_id FROM reports"
)
_LINK = (
    "SELECT id, a, b, segment_a, segment_b, levels, per_field, weight, state, created_at,"
    " reviewed_by, reviewed_at, model_version FROM report_links"
)


def _record(row: tuple[Any, ...]) -> LinkRecord:
    id_, observed_at, lon, lat, segment_id, people, kind, direction, key_id, device_id = row
    return LinkRecord(
        UUID(id_), from_micros(observed_at), lon, lat, segment_id, people, kind, direction,
        key_id, device_id,
    )  # fmt: skip


def _ids(ids: Collection[UUID]) -> str:
    return json.dumps(sorted(str(i) for i in ids))


class SqliteLinkTx:
    """``LinkTx`` over one SQLite connection in a write transaction."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def border_version(self) -> int:
        return segment_queries.border_version(self.conn)

    def segments(self) -> list[BorderSegment]:
        return segment_queries.list_segments(self.conn)

    def records(self, ids: Collection[UUID]) -> list[LinkRecord]:
        rows = self.conn.execute(
            _RECORD + " WHERE id IN (SELECT value FROM json_each(?))", (_ids(ids),)
        )
        return [_record(row) for row in rows]

    def records_near(self, spans: Sequence[tuple[str, datetime, datetime]]) -> list[LinkRecord]:
        out: list[LinkRecord] = []
        for segment, start, end in spans:  # one range of reports_by_segment each
            rows = self.conn.execute(
                _RECORD + " WHERE segment_id = ? AND observed_at BETWEEN ? AND ?",
                (segment, to_micros(start), to_micros(end)),
            )
            out += [_record(row) for row in rows]
        return out

    def add_links(self, links: Sequence[Link], *, at: datetime, model_version: int) -> None:
        # Each report's segment read by the insert itself (primary key lookups): no statement
        # of its own.
        segment = "(SELECT segment_id FROM reports WHERE id = ?)"
        self.conn.executemany(
            "INSERT INTO report_links (id, a, b, segment_a, segment_b, levels, per_field, weight,"
            f" created_at, model_version) VALUES (?, ?, ?, {segment}, {segment}, ?, ?, ?, ?, ?)"
            " ON CONFLICT (a, b) DO NOTHING",
            [
                (
                    str(link_id(k.a, k.b)),
                    str(k.a),
                    str(k.b),
                    str(k.a),
                    str(k.b),
                    json.dumps(list(k.weight.levels)),
                    json.dumps(dict(k.weight.per_field)),
                    k.weight.total,
                    to_micros(at),
                    model_version,
                )
                for k in links
            ],
        )

    def edges_touching(self, ids: Collection[UUID]) -> list[Edge[UUID]]:
        rows = self.conn.execute(
            "SELECT a, b, weight, state FROM report_links WHERE state != 'rejected' AND"
            " (a IN (SELECT value FROM json_each(:ids)) OR b IN (SELECT value FROM json_each(:ids)))",
            {"ids": _ids(ids)},
        )
        return [
            Edge(UUID(a), UUID(b), weight, 1 if state == LinkState.CONFIRMED else 0)
            for a, b, weight, state in rows
        ]

    def set_groups(self, ids: Collection[UUID], rows: Sequence[GroupRow]) -> None:
        # Only the rows that change are written and counted: a regrouping that leaves a group as
        # it was (a new link inside it) writes nothing.
        stored = {
            UUID(r): (UUID(g), bool(a), p)
            for r, g, a, p in self.conn.execute(
                "SELECT report_id, group_id, is_anchor, group_people FROM report_groups"
                " WHERE report_id IN (SELECT value FROM json_each(?))",
                (_ids(ids),),
            )
        }
        wanted = {r.report_id: (r.group_id, r.is_anchor, r.group_people) for r in rows}
        gone = {k: v for k, v in stored.items() if wanted.get(k) != v}
        came = {k: v for k, v in wanted.items() if stored.get(k) != v}
        if not gone and not came:
            return
        _count_groups(
            self.conn,
            [(k, -1, a, p) for k, (_, a, p) in gone.items()]
            + [(k, 1, a, p) for k, (_, a, p) in came.items()],
        )
        if gone:
            self.conn.execute(
                "DELETE FROM report_groups WHERE report_id IN (SELECT value FROM json_each(?))",
                (_ids(gone),),
            )
        if came:
            self.conn.executemany(
                "INSERT INTO report_groups (report_id, group_id, is_anchor, group_people)"
                " VALUES (?, ?, ?, ?)",
                [(str(k), str(g), int(a), p) for k, (g, a, p) in sorted(came.items())],
            )

    def linked_between(self, start: datetime, end: datetime) -> list[UUID]:
        rows = self.conn.execute(
            "SELECT r.id FROM reports r WHERE r.observed_at >= ? AND r.observed_at < ?"
            " AND EXISTS (SELECT 1 FROM report_links l WHERE l.state != 'rejected'"
            " AND (l.a = r.id OR l.b = r.id))",
            (to_micros(start), to_micros(end)),
        )
        return [UUID(x) for (x,) in rows]

    def model_marks(self) -> tuple[int, int]:
        confirmed, version = self.conn.execute(MODEL_MARKS).fetchone()
        return int(confirmed), int(version)

    def confirmed_levels(self) -> list[Levels]:
        rows = self.conn.execute("SELECT levels FROM report_links WHERE state = 'confirmed'")
        return [tuple(json.loads(levels)) for (levels,) in rows]

    def latest_model(self) -> EstimatedModel | None:
        row = self.conn.execute(LATEST_MODEL).fetchone()
        return None if row is None else model_of_row(row, from_micros(row[1]))

    def save_model(self, model: EstimatedModel) -> int:
        values = model.as_json()
        (version,) = self.conn.execute(
            "INSERT INTO link_models (estimated_at, border_version, reports, pairs, u, crowding)"
            " VALUES (?, ?, ?, ?, ?, ?) RETURNING version",
            (
                to_micros(model.estimated_at), model.border_version, model.reports, model.pairs,
                json.dumps(values["u"]), json.dumps(values["crowding"]),
            ),
        ).fetchone()  # fmt: skip
        self.conn.execute("DELETE FROM link_models WHERE version <= ?", (version - KEPT_MODELS,))
        return int(version)

    def random_records(self, size: int, *, seed: int) -> list[LinkRecord]:
        # Uniform rowids in [1, max], looked up by primary key: each snapped report is equally
        # likely, and a draw reads only the rows drawn (rejection sampling: a rowid of no row, or
        # of a report beyond reach, is drawn again). A small table is read whole.
        (top,) = self.conn.execute("SELECT max(row_no) FROM reports").fetchone()
        if top is None:
            return []
        if top <= 4 * size:
            rows = self.conn.execute(
                _RECORD + " WHERE segment_id IS NOT NULL ORDER BY row_no"
            ).fetchall()
            return [_record(row) for row in random.Random(seed).sample(rows, min(size, len(rows)))]
        rng = random.Random(seed)
        tried: set[int] = set()
        found: list[LinkRecord] = []
        for _ in range(8):  # each round draws twice what is missing
            wanted = [
                n for n in rng.sample(range(1, top + 1), 2 * (size - len(found))) if n not in tried
            ]
            tried.update(wanted)
            for start in range(0, len(wanted), LINK_BATCH):
                found += [
                    _record(row)
                    for row in self.conn.execute(
                        _RECORD + " WHERE row_no IN (SELECT value FROM json_each(?))"
                        " AND segment_id IS NOT NULL",
                        (json.dumps(wanted[start : start + LINK_BATCH]),),
                    )
                ]
            if len(found) >= size:
                break
        # Drawn in row order within each chunk: a cut of the list would favour older reports.
        return rng.sample(found, min(size, len(found)))

    def proposed_behind(self, version: int, limit: int) -> list[ScoredPair]:
        rows = self.conn.execute(
            "SELECT a, b, levels, segment_a, segment_b FROM report_links"
            " WHERE state = 'proposed' AND model_version < ? ORDER BY model_version LIMIT ?",
            (version, limit),
        )
        return [
            ScoredPair(UUID(a), UUID(b), tuple(json.loads(levels)), seg_a, seg_b)
            for a, b, levels, seg_a, seg_b in rows
        ]

    def rescore(
        self,
        kept: Sequence[tuple[UUID, UUID, MatchWeight]],
        dropped: Sequence[tuple[UUID, UUID]],
        *,
        model_version: int,
    ) -> None:
        self.conn.executemany(
            "UPDATE report_links SET per_field = ?, weight = ?, model_version = ?"
            " WHERE a = ? AND b = ? AND state = 'proposed'",
            [
                (json.dumps(dict(w.per_field)), w.total, model_version, str(a), str(b))
                for a, b, w in kept
            ],
        )
        self.conn.executemany(
            "DELETE FROM report_links WHERE a = ? AND b = ? AND state = 'proposed'",
            [(str(a), str(b)) for a, b in dropped],
        )


# The stored estimates kept: the latest and a few before it, for operators to compare.


# The UTC period of each table of what linking changes in the counts (schema step 11), from
# observed_at (integer microseconds since the epoch).
_GROUP_PERIODS = {
    "group_days": "r.observed_at - r.observed_at % 86400000000",
    "group_months": (
        "CAST(strftime('%s', strftime('%Y-%m-01', r.observed_at / 1000000, 'unixepoch'))"
        " AS INTEGER) * 1000000"
    ),
}


def _count_groups(conn: sqlite3.Connection, changes: Sequence[tuple[UUID, int, bool, int]]) -> None:
    """Count group rows into group_days and group_months (sign 1: a row written) or out of them
    (-1: a row deleted); each change is (report_id, sign, is_anchor, group_people), its report
    stored. One statement per table for every change of a call; rows that come to nothing go."""
    values = json.dumps([[str(k), sign, int(a), p] for k, sign, a, p in changes])
    for table, period in _GROUP_PERIODS.items():
        emptied = conn.execute(
            f"INSERT INTO {table} (period, segment_id, side, kind, direction, groups, people)"
            f" SELECT {period}, coalesce(r.segment_id, ''),"
            " coalesce(r.side, ''), r.kind, coalesce(r.direction, ''),"
            " sum(d.sign * (d.anchor - 1)), sum(d.sign * (d.people - r.people_count))"
            " FROM (SELECT value ->> 0 AS id, value ->> 1 AS sign, value ->> 2 AS anchor,"
            " value ->> 3 AS people FROM json_each(?)) d JOIN reports r ON r.id = d.id"
            " WHERE true GROUP BY 1, 2, 3, 4, 5"
            " HAVING sum(d.sign * (d.anchor - 1)) != 0"
            " OR sum(d.sign * (d.people - r.people_count)) != 0"
            " ON CONFLICT (period, segment_id, side, kind, direction) DO UPDATE"
            " SET groups = groups + excluded.groups, people = people + excluded.people"
            " RETURNING period, segment_id, side, kind, direction, groups, people",
            (values,),
        ).fetchall()
        if empty := [row[:5] for row in emptied if row[5] == 0 and row[6] == 0]:
            conn.executemany(
                f"DELETE FROM {table} WHERE period = ? AND segment_id = ? AND side = ?"
                " AND kind = ? AND direction = ? AND groups = 0 AND people = 0",
                empty,
            )


def release_groups(conn: sqlite3.Connection, linker: Linker, before: datetime) -> list[GroupRow]:
    """The groups a release of the reports observed before ``before`` counts where they differ
    from the stored ones (``Linker.groups_before``)."""
    return linker.groups_before(SqliteLinkTx(conn), before)


def link_reports(
    conn: sqlite3.Connection,
    linker: Linker,
    reports: Sequence[Report],
    *,
    posted_by: str | None,
    at: datetime,
) -> int:
    """Link reports just stored with ``posted_by``'s key, in ingest's transaction (their records
    made from the reports themselves: the stored rows hold the same values)."""
    records = [LinkRecord.from_report(r, key_id=posted_by) for r in reports]
    return linker.link(SqliteLinkTx(conn), [r.id for r in records], at=at, records=records)


def forget_report(conn: sqlite3.Connection, linker: Linker, report_id: UUID) -> None:
    """A deleted report's links go, and its old component is grouped again."""
    key = str(report_id)
    others = conn.execute(
        "SELECT CASE WHEN a = ? THEN b ELSE a END FROM report_links WHERE a = ? OR b = ?",
        (key, key, key),
    ).fetchall()
    conn.execute("DELETE FROM report_links WHERE a = ? OR b = ?", (key, key))
    row = conn.execute(
        "DELETE FROM report_groups WHERE report_id = ? RETURNING is_anchor, group_people", (key,)
    ).fetchone()
    if row is not None:
        _count_groups(conn, [(report_id, -1, bool(row[0]), row[1])])
    linker.regroup(SqliteLinkTx(conn), {UUID(x) for (x,) in others})


def sample_unrelated(
    conn: sqlite3.Connection, linker: Linker, size: int, *, seed: int
) -> UnrelatedSample:
    return linker.sample_unrelated(SqliteLinkTx(conn), size, seed=seed)


def save_model(conn: sqlite3.Connection, model: EstimatedModel) -> int:
    return SqliteLinkTx(conn).save_model(model)


def latest_model(conn: sqlite3.Connection) -> EstimatedModel | None:
    return SqliteLinkTx(conn).latest_model()


def rescore_links(conn: sqlite3.Connection, linker: Linker, limit: int) -> int:
    return linker.rescore_some(SqliteLinkTx(conn), limit)


def relink_all(conn: sqlite3.Connection, linker: Linker, *, at: datetime) -> None:
    """After a border change: drop the proposed links and every group, keep the reviewed links,
    and link every report again (in the border change's transaction)."""
    conn.execute("DELETE FROM report_links WHERE state = 'proposed'")
    conn.execute("DELETE FROM report_groups")
    conn.execute("DELETE FROM group_days")
    conn.execute("DELETE FROM group_months")
    tx = SqliteLinkTx(conn)
    reviewed = conn.execute("SELECT a, b FROM report_links WHERE state = 'confirmed'").fetchall()
    linker.regroup(tx, {UUID(x) for pair in reviewed for x in pair})
    ids = [
        UUID(x)
        for (x,) in conn.execute(
            "SELECT id FROM reports WHERE segment_id IS NOT NULL ORDER BY observed_at, id"
        )
    ]
    for start in range(0, len(ids), 1_000):
        linker.link(tx, ids[start : start + 1_000], at=at)


def _stored(row: tuple[Any, ...]) -> StoredLink:
    (id_, a, b, seg_a, seg_b, levels, per_field, weight, state, created_at, by, reviewed_at,
     version) = row  # fmt: skip
    return StoredLink(
        UUID(id_), UUID(a), UUID(b), seg_a, seg_b, tuple(json.loads(levels)),
        json.loads(per_field), weight, LinkState(state), from_micros(created_at), by,
        None if reviewed_at is None else from_micros(reviewed_at), version,
    )  # fmt: skip


def list_links(conn: sqlite3.Connection, query: LinkQuery) -> LinkPage:
    clauses: list[str] = []
    params: dict[str, Any] = {"limit": query.limit + 1}
    if query.state is not None:
        clauses.append("state = :state")
        params["state"] = query.state.value
    if query.segment_id is not None:
        clauses.append("(segment_a = :segment OR segment_b = :segment)")
        params["segment"] = query.segment_id
    if query.since is not None:
        clauses.append("created_at >= :since")
        params["since"] = to_micros(query.since)
    if query.after is not None:
        clauses.append("(created_at, id) > (:after_at, :after_id)")
        params.update(after_at=to_micros(query.after[0]), after_id=str(query.after[1]))
    where = " WHERE " + " AND ".join(clauses) if clauses else ""
    rows = conn.execute(_LINK + where + " ORDER BY created_at, id LIMIT :limit", params)
    links = [_stored(row) for row in rows]
    more = len(links) > query.limit
    links = links[: query.limit]
    return LinkPage(links, (links[-1].created_at, links[-1].id) if more else None)


def review_link(
    conn: sqlite3.Connection,
    linker: Linker,
    link: UUID,
    *,
    state: LinkState,
    reviewed_by: str | None,
    at: datetime,
) -> StoredLink | None:
    """Confirm or reject a link and regroup its reports' component; None: no such link."""
    found = conn.execute(
        "UPDATE report_links SET state = ?, reviewed_by = ?, reviewed_at = ? WHERE id = ?"
        " RETURNING a, b",
        (state.value, reviewed_by, to_micros(at), str(link)),
    ).fetchone()
    if found is None:
        return None
    linker.regroup(SqliteLinkTx(conn), {UUID(found[0]), UUID(found[1])})
    return _stored(conn.execute(_LINK + " WHERE id = ?", (str(link),)).fetchone())


def group_ids(conn: sqlite3.Connection, ids: Collection[UUID]) -> dict[UUID, UUID]:
    """The group of each of ``ids`` that is in a group of two or more."""
    rows = conn.execute(
        "SELECT report_id, group_id FROM report_groups"
        " WHERE report_id IN (SELECT value FROM json_each(?))",
        (_ids(ids),),
    )
    return {UUID(r): UUID(g) for r, g in rows}
