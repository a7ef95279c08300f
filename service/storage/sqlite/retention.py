"""Retention on SQLite: older reports lose their precise fields and keep what is counted, in the
caller's one write transaction.

A purged report moves to the centre of its cell at the finest rollup level (15: cells of about
1.2 km at the equator), so ``count_days``/``count_months`` and every tile below zoom 10 stay the
same: the rows they count keep their cells, segment, side, kind, direction, period and people.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime

from service.domain.grid import GRID_LEVEL, PURGE_LEVEL, cell_centre, grid_cell
from service.storage.sqlite.rows import to_micros

BATCH = 20_000
# The finest level the rollups count: the cluster cells of every tile below zoom 10.
LEVEL = PURGE_LEVEL
_SHIFT = GRID_LEVEL - LEVEL

# Through the partial index of unpurged reports (schema step 4): a purged row leaves it at once,
# so each page is simply the first of those left.
_PAGE = "SELECT row_no, lon, lat FROM reports WHERE purged = 0 AND observed_at < ? LIMIT ?"
_PURGE = (
    "UPDATE reports SET lon = ?, lat = ?, notes = NULL, device_id = NULL, accuracy_m = NULL,"
    " snap_lon = NULL, snap_lat = NULL, snap_distance_m = NULL, chainage_km = NULL, purged = 1"
    " WHERE row_no = ?"
)
_MOVE_IN_RTREE = (
    "UPDATE reports_rtree SET min_lon = ?, max_lon = ?, min_lat = ?, max_lat = ? WHERE row_no = ?"
)


def purge_precise(conn: sqlite3.Connection, before: datetime) -> int:
    done = 0
    cutoff = to_micros(before)
    while True:
        rows = conn.execute(_PAGE, (cutoff, BATCH)).fetchall()
        if not rows:
            return done
        moves = []
        for row_no, lon, lat in rows:
            gx, gy = grid_cell(lon, lat)
            moves.append((*cell_centre(LEVEL, gx >> _SHIFT, gy >> _SHIFT), row_no))
        conn.executemany(_PURGE, moves)
        conn.executemany(_MOVE_IN_RTREE, [(x, x, y, y, row_no) for x, y, row_no in moves])
        done += len(rows)
