"""The public release on PostGIS: cut from the reports in one transaction, read in one snapshot."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection, Row, text

from service.domain.release import ReleaseInfo, ReleaseRow, day_start
from service.storage.linking import GroupRow

# One cut at a time, whichever process starts it: a second waits and then cuts again from the
# reports as they are then (never from a half-replaced table).
_CUT_LOCK = text("SELECT pg_advisory_xact_lock(hashtext('crossings.release'))")
_CLEAR = text("DELETE FROM release_cells")
_FILL = text(
    """
    INSERT INTO release_cells (day, segment_id, kind, direction, side, reports, people, groups,
                               people_est)
    SELECT (r.observed_at AT TIME ZONE 'UTC')::date, r.segment_id, r.kind, r.direction, r.side,
           count(*), sum(r.people_count),
           -- each group of linked reports once, at its anchor (docs/linking.md); the groups
           -- among the released reports (release_groups) where they differ from the stored
           count(*) FILTER (WHERE CASE WHEN o.report_id IS NOT NULL THEN o.is_anchor
                                       ELSE g.report_id IS NULL OR g.is_anchor END),
           sum(coalesce(o.group_people, g.group_people, r.people_count))
    FROM reports r
    LEFT JOIN release_groups o ON o.report_id = r.id
    LEFT JOIN report_groups g ON g.report_id = r.id
    WHERE r.observed_at < :through
    GROUP BY 1, 2, 3, 4, 5
    """
)
_INFO = text(
    """
    INSERT INTO release_info (release_id, cut_at, through, first_day)
    VALUES (1, :cut_at, :through, (SELECT min(day) FROM release_cells))
    ON CONFLICT (only_row) DO UPDATE
       SET release_id = release_info.release_id + 1, cut_at = excluded.cut_at,
           through = excluded.through, first_day = excluded.first_day
    RETURNING release_id, cut_at, through, first_day
    """
)
_READ_INFO = text("SELECT release_id, cut_at, through, first_day FROM release_info")
_READ_CELLS = text(
    "SELECT day, segment_id, kind, direction, side, reports, people, groups, people_est"
    " FROM release_cells"
)


def _info(row: Row[Any]) -> ReleaseInfo:
    return ReleaseInfo(int(row.release_id), row.cut_at, row.through, row.first_day)


def cut_release(
    conn: Connection, through: date, cut_at: datetime, groups: Sequence[GroupRow] = ()
) -> ReleaseInfo:
    """Cut the release of the days before ``through``; ``groups``: the group rows that count in
    place of the stored ones (storage.linking.Linker.groups_before)."""
    # A background job over every report: not bound by the requests' statement timeout.
    conn.execute(text("SET LOCAL statement_timeout = 0"))
    conn.execute(_CUT_LOCK)
    conn.exec_driver_sql(
        "CREATE TEMP TABLE release_groups (report_id uuid PRIMARY KEY, is_anchor boolean NOT NULL,"
        " group_people integer NOT NULL) ON COMMIT DROP"
    )
    if groups:
        conn.exec_driver_sql(
            "INSERT INTO release_groups SELECT * FROM unnest(%(r)s::uuid[], %(a)s::boolean[],"
            " %(p)s::int[])",
            {
                "r": [g.report_id for g in groups],
                "a": [g.is_anchor for g in groups],
                "p": [g.group_people for g in groups],
            },
        )
    conn.execute(_CLEAR)
    conn.execute(_FILL, {"through": day_start(through)})
    return _info(conn.execute(_INFO, {"cut_at": cut_at, "through": through}).one())


def vacuum(conn: Connection) -> None:
    conn.execute(text("VACUUM release_cells"))


def release_info(conn: Connection) -> ReleaseInfo | None:
    row = conn.execute(_READ_INFO).one_or_none()
    return None if row is None else _info(row)


def read_release(conn: Connection) -> tuple[ReleaseInfo, list[ReleaseRow]] | None:
    """The current cut and its cells, read from one snapshot."""
    conn.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"))
    info = release_info(conn)
    if info is None:
        return None
    rows = [
        ReleaseRow(day, segment_id, kind, direction, side, int(r), int(p), int(g), int(e))
        for day, segment_id, kind, direction, side, r, p, g, e in conn.execute(_READ_CELLS)
    ]
    return info, rows
