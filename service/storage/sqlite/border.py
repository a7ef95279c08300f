"""A border change on SQLite: new segments, every report re-snapped, rollups recounted, in the
caller's one write transaction."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from service.domain.errors import BorderChanged
from service.domain.segments import BorderSegment
from service.storage.base import OnProgress, Resnap
from service.storage.sqlite import reports, segments

BATCH = 20_000
_PAGE = "SELECT row_no, lon, lat FROM reports WHERE row_no > ? ORDER BY row_no LIMIT ?"
_UPDATE = (
    "UPDATE reports SET snap_status = ?, segment_id = ?, snap_distance_m = ?, snap_lon = ?,"
    " snap_lat = ?, chainage_km = ?, side = ? WHERE row_no = ?"
)


def replace_border(
    conn: sqlite3.Connection,
    batch: Sequence[BorderSegment],
    resnap: Resnap,
    on_progress: OnProgress | None,
    *,
    expected_version: int | None = None,
) -> int:
    # In the write transaction (BEGIN IMMEDIATE): no other border change can come between.
    if expected_version is not None and segments.border_version(conn) != expected_version:
        raise BorderChanged("the border was replaced by another process")
    segments.replace_segments(conn, batch)
    (total,) = conn.execute("SELECT count(*) FROM reports").fetchone()
    done = after = 0
    while True:
        rows = conn.execute(_PAGE, (after, BATCH)).fetchall()
        if not rows:
            break
        snaps = resnap([r[1] for r in rows], [r[2] for r in rows])
        conn.executemany(
            _UPDATE,
            [
                (
                    s.status.value,
                    s.segment_id,
                    s.distance_m,
                    s.snapped_lon,
                    s.snapped_lat,
                    s.chainage_km,
                    s.side,
                    row[0],
                )
                for s, row in zip(snaps, rows, strict=True)
            ],
        )
        done += len(rows)
        after = rows[-1][0]
        if on_progress is not None:
            on_progress(done, total)
    reports.rebuild_counts(conn)
    return done
