"""Border segments in SQLite: a small static set, replaced whole and read back in load order."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence

from service.domain.errors import InvalidSegmentFile
from service.domain.segments import BorderSegment
from service.storage.sqlite.rows import (
    SEGMENT_COLUMNS,
    SegmentRow,
    segment_from_row,
    segment_row,
)

_INSERT = (
    "INSERT INTO segments ("
    + SEGMENT_COLUMNS
    + ") VALUES ("
    + ", ".join("?" * len(SegmentRow._fields))
    + ")"
)
_SELECT_IN_ORDER = "SELECT " + SEGMENT_COLUMNS + " FROM segments ORDER BY load_order"


def count_segments(conn: sqlite3.Connection) -> int:
    (count,) = conn.execute("SELECT count(*) FROM segments").fetchone()
    return int(count)


def border_version(conn: sqlite3.Connection) -> int:
    (version,) = conn.execute("SELECT version FROM border_version").fetchone()
    return int(version)


def replace_segments(conn: sqlite3.Connection, segments: Sequence[BorderSegment]) -> None:
    """Delete every segment and insert ``segments``; the caller's transaction makes it atomic.

    Raises InvalidSegmentFile for a repeated segment_id or properties that are not JSON values,
    after which the caller rolls back and the old set stays.
    """
    conn.execute("UPDATE border_version SET version = version + 1")
    conn.execute("DELETE FROM segments")
    try:
        conn.executemany(_INSERT, _rows(segments))
    except sqlite3.IntegrityError as exc:
        raise InvalidSegmentFile(f"segments not stored: {exc}") from exc


def _rows(segments: Sequence[BorderSegment]) -> Iterator[SegmentRow]:
    for load_order, segment in enumerate(segments):
        try:
            yield segment_row(segment, load_order=load_order)
        except (TypeError, ValueError) as exc:
            raise InvalidSegmentFile(
                f"segment {segment.segment_id!r}: properties are not JSON values ({exc})"
            ) from exc


def list_segments(conn: sqlite3.Connection) -> list[BorderSegment]:
    return [segment_from_row(row) for row in conn.execute(_SELECT_IN_ORDER)]
