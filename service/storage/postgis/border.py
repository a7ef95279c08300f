"""A border change on PostGIS: new segments, every report re-snapped, rollups recounted, in one
transaction (readers see the old border or the new one, never a mix)."""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

from sqlalchemy import Connection

from service.domain.errors import BorderChanged
from service.domain.segments import BorderSegment
from service.storage.base import OnProgress, Resnap
from service.storage.postgis import rollups, segments

BATCH = 20_000
_PAGE = """
    SELECT id, ST_X(geom), ST_Y(geom) FROM reports WHERE id > %(after)s ORDER BY id LIMIT %(n)s
"""
_UPDATE = """
    UPDATE reports AS r
    SET snap_status = u.status, segment_id = u.segment_id, snap_distance_m = u.distance,
        snap_geom = CASE WHEN u.lon IS NULL THEN NULL
                         ELSE ST_SetSRID(ST_MakePoint(u.lon, u.lat), 4326) END,
        chainage_km = u.chainage, side = u.side
    FROM unnest(%(id)s::uuid[], %(status)s::text[], %(segment_id)s::text[], %(distance)s::float8[],
                %(lon)s::float8[], %(lat)s::float8[], %(chainage)s::float8[], %(side)s::text[])
        AS u(id, status, segment_id, distance, lon, lat, chainage, side)
    WHERE r.id = u.id
"""


def replace_border(
    conn: Connection,
    batch: Sequence[BorderSegment],
    resnap: Resnap,
    on_progress: OnProgress | None,
    *,
    expected_version: int | None = None,
) -> int:
    # Re-snapping every report is maintenance, not a request: no statement timeout.
    conn.exec_driver_sql("SET LOCAL statement_timeout = 0")
    # Held until commit: a second process replacing the border waits here, then sees the version
    # the first one left and gives up rather than replace the border twice.
    if expected_version is not None and segments.border_version(conn, for_update=True) != (
        expected_version
    ):
        raise BorderChanged("the border was replaced by another process")
    # The segments (and the border's version) first, before any lock on reports: an ingest that
    # read the version FOR SHARE finishes before this goes on; one that reads it later waits,
    # then sees the new version and snaps its reports again.
    segments.replace_segments(conn, batch)
    # Writers that do not check the version wait (and answer 503 past their statement timeout:
    # the client retries) rather than store a report snapped to the border being replaced.
    conn.exec_driver_sql("LOCK TABLE reports IN EXCLUSIVE MODE")
    total = int(conn.exec_driver_sql("SELECT count(*) FROM reports").scalar_one())
    done, after = 0, UUID(int=0)
    while True:
        rows = conn.exec_driver_sql(_PAGE, {"after": after, "n": BATCH}).all()
        if not rows:
            break
        snaps = resnap([r[1] for r in rows], [r[2] for r in rows])
        conn.exec_driver_sql(
            _UPDATE,
            {
                "id": [r[0] for r in rows],
                "status": [s.status.value for s in snaps],
                "segment_id": [s.segment_id for s in snaps],
                "distance": [s.distance_m for s in snaps],
                "lon": [s.snapped_lon for s in snaps],
                "lat": [s.snapped_lat for s in snaps],
                "chainage": [s.chainage_km for s in snaps],
                "side": [s.side for s in snaps],
            },
        )
        done += len(rows)
        after = rows[-1][0]
        if on_progress is not None:
            on_progress(done, total)
    rollups.rebuild(conn)
    return done
