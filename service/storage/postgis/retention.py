"""Retention on PostGIS: older reports lose their precise fields and keep what is counted.

A purged report moves to the centre of its level-15 grid cell (about 1.2 km at the equator), so
``segment_totals``, ``count_days``, ``count_months``, ``count_segment_months``, ``cell_days``
(level-12 cells) and ``tile_cells`` at levels 12 and 15 stay exactly right without being touched:
the rows they count keep their cells, segment, side, kind, direction, period and people. Only
``tile_cells`` finer than level 15 are counted again.
"""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

from sqlalchemy import Connection

from service.domain.grid import GRID_LEVEL, PURGE_LEVEL, ROLLUP_LEVELS, cell_centre
from service.storage.postgis import rollups

BATCH = 20_000
# The finest level the rollups count: cells there and at every coarser level stay the same, and
# they are the cluster cells of every tile below zoom 10.
LEVEL = PURGE_LEVEL
_SHIFT = GRID_LEVEL - LEVEL

# Keyset pages through the partial index of unpurged reports (migration 0005). Rows this
# transaction has purged stay in that index, dead, until vacuumed: starting each page after the
# last one keeps them from being walked again.
_PAGE = """
    SELECT id, observed_at, grid_x, grid_y FROM reports
    WHERE NOT purged AND observed_at < %(before)s
      AND (observed_at, id) > (%(after_t)s, %(after_id)s)
    ORDER BY observed_at, id
    LIMIT %(n)s
"""
# grid_x/grid_y are generated from the new geom: RETURNING them proves the cells did not move.
_PURGE = """
    UPDATE reports AS r
    SET geom = ST_SetSRID(ST_MakePoint(u.lon, u.lat), 4326), notes = NULL, device_id = NULL,
        accuracy_m = NULL, snap_geom = NULL, snap_distance_m = NULL, chainage_km = NULL,
        purged = true
    FROM unnest(%(id)s::uuid[], %(lon)s::float8[], %(lat)s::float8[]) AS u(id, lon, lat)
    WHERE r.id = u.id
    RETURNING r.id, r.grid_x, r.grid_y
"""
_BEFORE_ALL = datetime(1, 1, 1, tzinfo=UTC)


def _recount_finer_cells(conn: Connection, on_counted: rollups.OnCounted | None) -> None:
    """Tile cells finer than the purge level move with the purged reports: count them again.

    What is pending is folded first (pending rows keep the cells the reports had when stored),
    and no fold runs until this transaction ends; reports that ingest stores meanwhile are left
    out of the recount, as they wait in rollup_pending."""
    rollups.fold_all(conn, on_counted=on_counted)
    for level in (lv for lv in ROLLUP_LEVELS if lv > LEVEL):
        conn.exec_driver_sql("DELETE FROM tile_cells WHERE level = %(level)s", {"level": level})
        conn.exec_driver_sql(
            f"""
            INSERT INTO tile_cells (level, cx, cy, kind, reports, people)
            SELECT %(level)s, grid_x >> {GRID_LEVEL} - %(level)s, grid_y >> {GRID_LEVEL} - %(level)s,
                   kind, count(*), sum(people_count)
            FROM reports r
            WHERE NOT EXISTS (SELECT 1 FROM {rollups.PENDING} p WHERE p.id = r.id)
            GROUP BY 2, 3, 4
            """,
            {"level": level},
        )


def purge_precise(
    conn: Connection, before: datetime, on_counted: rollups.OnCounted | None = None
) -> int:
    """Coarsen the positions of reports observed before ``before`` (the folded pending reports
    are told to ``on_counted``, as a fold's are)."""
    done = 0
    after_t, after_id = _BEFORE_ALL, UUID(int=0)
    while True:
        params = {"before": before, "after_t": after_t, "after_id": after_id, "n": BATCH}
        rows = conn.exec_driver_sql(_PAGE, params).all()
        if not rows:
            if done:
                _recount_finer_cells(conn, on_counted)
            return done
        cells = {id_: (gx >> _SHIFT, gy >> _SHIFT) for id_, _, gx, gy in rows}
        centres = [cell_centre(LEVEL, *cells[id_]) for id_, *_ in rows]
        moved = conn.exec_driver_sql(
            _PURGE,
            {
                "id": [row[0] for row in rows],
                "lon": [lon for lon, _ in centres],
                "lat": [lat for _, lat in centres],
            },
        ).all()
        for id_, gx, gy in moved:
            if (gx >> _SHIFT, gy >> _SHIFT) != cells[id_]:
                # Rolls the whole purge back: the rollups would no longer match the reports.
                raise RuntimeError(f"report {id_} left its level-{LEVEL} cell when purged")
        done += len(moved)
        after_t, after_id = rows[-1][1], rows[-1][0]
