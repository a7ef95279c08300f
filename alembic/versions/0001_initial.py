"""Segments and reports, with GiST and keyset indexes.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from geoalchemy2 import Geometry
from sqlalchemy.dialects.postgresql import JSONB

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS postgis")
    op.create_table(
        "segments",
        sa.Column("segment_id", sa.Text, primary_key=True),
        sa.Column("load_order", sa.Integer, nullable=False),
        sa.Column("border", sa.Text, nullable=False),
        sa.Column("section", sa.Text, nullable=False),
        sa.Column("start_km", sa.Double, nullable=False),
        sa.Column("end_km", sa.Double, nullable=False),
        sa.Column("left_country", sa.CHAR(3), nullable=False),
        sa.Column("right_country", sa.CHAR(3), nullable=False),
        sa.Column("properties", JSONB, nullable=False),
        sa.Column("geom", Geometry("LINESTRING", srid=4326, spatial_index=False), nullable=False),
    )
    op.create_index("segments_geom_gist", "segments", ["geom"], postgresql_using="gist")
    op.create_table(
        "reports",
        # The client-generated id is the primary key: the database, not the application, decides
        # that a report is stored once, even under concurrent retries.
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("observed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("geom", Geometry("POINT", srid=4326, spatial_index=False), nullable=False),
        sa.Column("people_count", sa.Integer, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("direction", sa.CHAR(2)),
        sa.Column("accuracy_m", sa.Double),
        sa.Column("notes", sa.Text),
        sa.Column("device_id", sa.Text),
        sa.Column("content_hash", sa.LargeBinary, nullable=False),
        sa.Column("snap_status", sa.Text, nullable=False),
        sa.Column("segment_id", sa.Text),
        sa.Column("snap_distance_m", sa.Double),
        sa.Column("snap_geom", Geometry("POINT", srid=4326, spatial_index=False)),
        sa.Column("chainage_km", sa.Double),
        sa.Column("side", sa.CHAR(2)),
        sa.CheckConstraint("people_count >= 1", name="reports_people_count_positive"),
        sa.CheckConstraint(
            "snap_status IN ('snapped', 'beyond_max_distance')", name="reports_snap_status_known"
        ),
    )
    op.create_index("reports_geom_gist", "reports", ["geom"], postgresql_using="gist")
    op.create_index("reports_observed_id", "reports", ["observed_at", "id"])
    op.create_index("reports_segment_observed", "reports", ["segment_id", "observed_at"])


def downgrade() -> None:
    op.drop_table("reports")
    op.drop_table("segments")
