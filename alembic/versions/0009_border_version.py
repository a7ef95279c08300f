"""The border's version: one number, raised by every change of the segment set, so that a running
server finds out that ``crossings segments load`` (another process) changed the border, and no
report is stored snapped to a border that is no longer the stored one.

Ingest reads it FOR SHARE before it writes, in the same transaction (service/storage/postgis/
store.py); a border change raises it first, before it locks the reports (border.py). Either the
ingest commits first, or it waits and sees the new version: the report is then snapped again.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-28
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE border_version (
            only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
            version  bigint NOT NULL
        )
        """
    )
    op.execute("INSERT INTO border_version (version) VALUES (1)")


def downgrade() -> None:
    op.execute("DROP TABLE border_version")
