"""Report persistence on PostGIS: exactly-once insert, lookup, filtered keyset pages."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from geoalchemy2.functions import ST_X, ST_Y
from sqlalchemy import (
    Connection,
    bindparam,
    func,
    select,
)

from service.domain.errors import BorderChanged
from service.domain.queries import Extent
from service.domain.reports import (
    IngestOutcome,
    IngestResult,
    Report,
    ReportDraft,
    SnapResult,
    SnapStatus,
)
from service.storage.postgis.rollups import PENDING_NEW_ROWS
from service.storage.postgis.tables import reports

# One statement for a whole batch: arrays in, rows out, the primary key deciding what is new, and
# each created report appended to rollup_pending for the rollups (rollups.py: no rollup row is
# written here, so concurrent writers share no row).
# ON CONFLICT DO NOTHING waits for a concurrent insert of the same id and then skips it, so two
# writers of one id cannot both create it.
#
# With %(version)s, the reports are stored only if the border is still that version (migration
# 0009), and the statement's first row says which version it saw. No row lock is needed for that:
# a border change raises the version first, then locks reports against every writer. A writer
# that got in before the lock is re-snapped by the change; one that waited for it runs on a
# snapshot taken after the change committed (PostgreSQL takes a statement's snapshot after its
# table locks), so it sees the new version and writes nothing. (A FOR SHARE on the one row made
# every ingest write that row's lock, and concurrent ones share it through a multixact.)
#
# The arrays go to psycopg as binary parameters (%(name)b): dumping 19 lists of 500 values as
# text cost ~15 us per report, a fifth of the whole request (bench/ingest.py --profile); binary
# costs ~3. SQLAlchemy's text() has no way to ask for that, so the statement is a driver-level
# one, still with bound parameters only.
_INSERT = f"""
    WITH border AS (SELECT version FROM border_version),
    new AS (
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
        WHERE %(version)s::bigint IS NULL OR %(version)s::bigint = (SELECT version FROM border)
        ON CONFLICT (id) DO NOTHING
        RETURNING id, grid_x, grid_y, kind, people_count, snap_status, segment_id, observed_at,
            side, direction
    ),
    {PENDING_NEW_ROWS}
    SELECT (SELECT version FROM border), NULL::uuid
    UNION ALL
    SELECT NULL, id FROM new
    """

COLUMNS = (
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
    conn: Connection,
    batch: Sequence[Report],
    posted_by: str | None = None,
    border_version: int | None = None,
) -> list[IngestResult]:
    """Insert new reports; classify the rest as duplicates or conflicts against what is stored.
    With ``border_version``, raise BorderChanged (storing nothing) if the border is another."""
    first_of: dict[UUID, int] = {}
    for position, report in enumerate(batch):
        first_of.setdefault(report.id, position)
    unique = [batch[p] for p in sorted(first_of.values())]
    created: set[UUID] = set()
    if unique:
        params = _arrays(unique) | {"key_id": posted_by, "version": border_version}
        # Straight from psycopg: SQLAlchemy's execute costs more than the rest of a single
        # report's statement.
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(_INSERT, params)
            rows = cursor.fetchall()
        finally:
            cursor.close()
        (version,) = (v for v, id_ in rows if id_ is None)
        if border_version is not None and version != border_version:
            raise BorderChanged("the border changed since these reports were snapped")
        created = {id_ for _, id_ in rows if id_ is not None}
    others = {r.id for r in batch if r.id not in created} | {
        r.id for p, r in enumerate(batch) if first_of[r.id] != p
    }
    stored = {rep.id: (rep, digest, key) for rep, digest, key in _fetch(conn, others)}
    results: list[IngestResult] = []
    for position, report in enumerate(batch):
        if report.id in created and first_of[report.id] == position:
            results.append(IngestResult(IngestOutcome.CREATED, report))
            continue
        existing, digest, key = stored.get(report.id, (None, b"", posted_by))
        if existing is None:
            existing, digest = report, report.draft.content_hash()  # created earlier in this call
        same = digest == report.draft.content_hash()
        outcome = IngestOutcome.DUPLICATE if same else IngestOutcome.CONFLICT
        results.append(IngestResult(outcome, existing, same_poster=key == posted_by))
    return results


def _fetch(conn: Connection, ids: set[UUID]) -> list[tuple[Report, bytes, str | None]]:
    """The stored report, content hash and posting key of each of ``ids`` that exists."""
    if not ids:
        return []
    stmt = select(*COLUMNS, reports.c.key_id).where(
        reports.c.id.in_(bindparam("ids", expanding=True))
    )
    return [
        (to_report(row), row.content_hash, row.key_id)
        for row in conn.execute(stmt, {"ids": list(ids)})
    ]


def get_report(conn: Connection, report_id: UUID, posted_by: str | None = None) -> Report | None:
    stmt = select(*COLUMNS).where(reports.c.id == report_id)
    if posted_by is not None:
        stmt = stmt.where(reports.c.key_id == posted_by)
    row = conn.execute(stmt).first()
    return None if row is None else to_report(row)


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


_STATUS = {status.value: status for status in SnapStatus}


def to_report(row: Any) -> Report:  # a Row or a tuple; SQLAlchemy types rows by their width
    """The report of a row that starts with COLUMNS (any columns after them are ignored)."""
    # Positional unpacking, in COLUMNS order: by-name access costs more than the rest of the
    # row's work. Sessions run in UTC (make_engine), so times arrive as UTC already.
    (id_, observed_at, received_at, lon, lat, people_count, kind, direction, accuracy_m, notes,
     device_id, _digest, status, segment_id, distance_m, snap_lon, snap_lat, chainage_km,
     side, *_) = row  # fmt: skip
    draft = ReportDraft(
        id_, observed_at, lon, lat, people_count, kind, direction, accuracy_m, notes, device_id
    )
    snap = SnapResult(
        _STATUS[status], segment_id, distance_m, snap_lon, snap_lat, chainage_km, side
    )
    return Report(draft=draft, received_at=received_at, snap=snap)
