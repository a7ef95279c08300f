"""The public release on SQLite: cut from the reports in one write transaction, read in one.
Groups and people_est count each group of linked reports once, at its anchor: report_groups, but
where a group reaches reports younger than the cut, the groups the released reports make among
themselves (storage/linking.py: Linker.groups_before)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import date, datetime, timedelta

from service.domain.release import ReleaseInfo, ReleaseRow, day_start
from service.storage.linking import GroupRow
from service.storage.sqlite.rows import from_micros, to_micros

_EPOCH = date(1970, 1, 1)
_DAY_US = 86_400_000_000


def _day(number: int) -> date:
    return _EPOCH + timedelta(days=number)


def _number(d: date) -> int:
    return (d - _EPOCH).days


def cut_release(
    conn: sqlite3.Connection, through: date, cut_at: datetime, groups: Sequence[GroupRow] = ()
) -> ReleaseInfo:
    """Cut the release of the days before ``through``; ``groups``: the group rows that count in
    place of the stored ones (storage.linking.Linker.groups_before)."""
    conn.execute(
        "CREATE TEMP TABLE IF NOT EXISTS release_groups (report_id TEXT PRIMARY KEY,"
        " is_anchor INTEGER NOT NULL, group_people INTEGER NOT NULL)"
    )
    conn.execute("DELETE FROM release_groups")
    conn.executemany(
        "INSERT INTO release_groups (report_id, is_anchor, group_people) VALUES (?, ?, ?)",
        [(str(g.report_id), int(g.is_anchor), g.group_people) for g in groups],
    )
    conn.execute("DELETE FROM release_cells")
    conn.execute(
        "INSERT INTO release_cells (day, segment_id, kind, direction, side, reports, people,"
        " groups, people_est)"
        f" SELECT r.observed_at / {_DAY_US}, r.segment_id, r.kind, r.direction, r.side,"
        "        count(*), sum(r.people_count),"
        "        sum(CASE WHEN o.report_id IS NOT NULL THEN o.is_anchor"
        "            ELSE g.report_id IS NULL OR g.is_anchor END),"
        "        sum(coalesce(o.group_people, g.group_people, r.people_count))"
        " FROM reports r LEFT JOIN temp.release_groups o ON o.report_id = r.id"
        " LEFT JOIN report_groups g ON g.report_id = r.id"
        " WHERE r.observed_at < ? GROUP BY 1, 2, 3, 4, 5",
        (to_micros(day_start(through)),),
    )
    conn.execute("DELETE FROM release_groups")
    conn.execute(
        "INSERT INTO release_info (only_row, release_id, cut_at, through, first_day)"
        " VALUES (1, 1, ?, ?, (SELECT min(day) FROM release_cells))"
        " ON CONFLICT (only_row) DO UPDATE SET release_id = release_id + 1,"
        " cut_at = excluded.cut_at, through = excluded.through, first_day = excluded.first_day",
        (to_micros(cut_at), _number(through)),
    )
    info = release_info(conn)
    assert info is not None  # written just above, in this transaction
    return info


def release_info(conn: sqlite3.Connection) -> ReleaseInfo | None:
    row = conn.execute("SELECT release_id, cut_at, through, first_day FROM release_info").fetchone()
    if row is None:
        return None
    release_id, cut_at, through, first = row
    return ReleaseInfo(
        int(release_id), from_micros(cut_at), _day(through), None if first is None else _day(first)
    )


def read_release(conn: sqlite3.Connection) -> tuple[ReleaseInfo, list[ReleaseRow]] | None:
    info = release_info(conn)
    if info is None:
        return None
    cells = conn.execute(
        "SELECT day, segment_id, kind, direction, side, reports, people, groups, people_est"
        " FROM release_cells"
    )
    rows = [ReleaseRow(_day(d), s, k, di, si, r, p, g, e) for d, s, k, di, si, r, p, g, e in cells]
    return info, rows
