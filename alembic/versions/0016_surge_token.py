"""Surge detection's token (issue #19): one number, written with the series states by each
transaction that writes them. A store keeps the states it last wrote in memory while the stored
token is the one it wrote (service/storage/surge_cache.py): another process's write, or a
rolled-back one, leaves another token, and the states are read again.

The states are also stored uncompressed (STORAGE EXTERNAL): every fold rewrites ~5 KB for each
series it touched, and upserting 1,200 such states took about twice as long compressed (pglz) as
not, side by side on the loaded 2-core machine; uncompressed, 5,000 series take ~25 MB.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07
"""

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE surge_token (
            only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
            token    bigint NOT NULL
        )
        """
    )
    op.execute("INSERT INTO surge_token (token) VALUES (0)")
    op.execute("ALTER TABLE surge_series ALTER COLUMN state SET STORAGE EXTERNAL")


def downgrade() -> None:
    op.execute("ALTER TABLE surge_series ALTER COLUMN state SET STORAGE EXTENDED")
    op.execute("DROP TABLE surge_token")
