"""Segment persistence on PostGIS."""

from __future__ import annotations

import json
from collections.abc import Sequence

from geoalchemy2.functions import ST_AsGeoJSON
from sqlalchemy import Connection, delete, func, insert, select

from service.domain.segments import BorderSegment
from service.storage.postgis.tables import segments
from service.storage.rows import segment_of


def count_segments(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(segments)).scalar_one())


def border_version(conn: Connection, *, for_share: bool = False, for_update: bool = False) -> int:
    """The border's version (migration 0009); ``for_share`` holds it against a change until the
    transaction ends, ``for_update`` against a change by anyone else and against ingest."""
    lock = " FOR UPDATE" if for_update else " FOR SHARE" if for_share else ""
    return int(conn.exec_driver_sql(f"SELECT version FROM border_version{lock}").scalar_one())


def bump_border_version(conn: Connection) -> None:
    """Raise the border's version. Call it first in the transaction that changes the border,
    before any lock on reports, so that an ingest holding the version cannot deadlock with it."""
    conn.exec_driver_sql("UPDATE border_version SET version = version + 1")


def replace_segments(conn: Connection, batch: Sequence[BorderSegment]) -> None:
    bump_border_version(conn)
    conn.execute(delete(segments))
    rows = [
        {
            "segment_id": s.segment_id,
            "load_order": order,
            "border": s.border,
            "section": s.section,
            "start_km": s.start_km,
            "end_km": s.end_km,
            "left_country": s.left_country,
            "right_country": s.right_country,
            "properties": dict(s.properties),
            # EWKT from repr(): shortest round-trip decimal, so coordinates come back bit-equal.
            "geom": f"SRID=4326;LINESTRING({', '.join(f'{x!r} {y!r}' for x, y in s.coords)})",
        }
        for order, s in enumerate(batch)
    ]
    if rows:
        conn.execute(insert(segments), rows)


def list_segments(conn: Connection) -> list[BorderSegment]:
    stmt = select(
        segments.c.segment_id,
        segments.c.border,
        segments.c.start_km,
        segments.c.end_km,
        segments.c.left_country,
        segments.c.right_country,
        segments.c.properties,
        ST_AsGeoJSON(segments.c.geom, 15).label("geojson"),
    ).order_by(segments.c.load_order)
    out = []
    for row in conn.execute(stmt):
        coords = tuple((float(x), float(y)) for x, y, *_ in json.loads(row.geojson)["coordinates"])
        out.append(segment_of(row, coords, row.properties))
    return out
