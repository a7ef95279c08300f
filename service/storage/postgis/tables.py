"""Table definitions for queries. Alembic migrations (alembic/versions) create them; keep in step."""

from __future__ import annotations

from geoalchemy2 import Geometry
from sqlalchemy import (
    CHAR,
    Boolean,
    Column,
    DateTime,
    Double,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
    Uuid,
    false,
)
from sqlalchemy.dialects.postgresql import JSONB

metadata = MetaData()

segments = Table(
    "segments",
    metadata,
    Column("segment_id", Text, primary_key=True),
    Column("load_order", Integer, nullable=False),
    Column("border", Text, nullable=False),
    Column("section", Text, nullable=False),
    Column("start_km", Double, nullable=False),
    Column("end_km", Double, nullable=False),
    Column("left_country", CHAR(3), nullable=False),
    Column("right_country", CHAR(3), nullable=False),
    Column("properties", JSONB, nullable=False),
    Column("geom", Geometry("LINESTRING", srid=4326, spatial_index=False), nullable=False),
)

reports = Table(
    "reports",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("observed_at", DateTime(timezone=True), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("geom", Geometry("POINT", srid=4326, spatial_index=False), nullable=False),
    Column("people_count", Integer, nullable=False),
    Column("kind", Text, nullable=False),
    Column("direction", CHAR(2)),
    Column("accuracy_m", Double),
    Column("notes", Text),
    Column("device_id", Text),
    Column("content_hash", LargeBinary, nullable=False),
    Column("snap_status", Text, nullable=False),
    Column("segment_id", Text),
    Column("snap_distance_m", Double),
    Column("snap_geom", Geometry("POINT", srid=4326, spatial_index=False)),
    Column("chainage_km", Double),
    Column("side", CHAR(2)),
    Column("key_id", Text),
    Column("purged", Boolean, nullable=False, server_default=false()),
)
