"""The public release (service/domain/release.py): exact counts per UTC day, segment, kind,
direction and side, cut from the reports in the background; the public reads nothing else.

``release_info`` holds the one current cut's number and window; ``release_cells`` its cells. A
cut replaces both in one transaction, so a reader (one REPEATABLE READ transaction) sees one cut.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE release_info (
            only_row   boolean PRIMARY KEY DEFAULT true CHECK (only_row),
            release_id bigint NOT NULL,
            cut_at     timestamptz NOT NULL,
            through    date NOT NULL,
            first_day  date
        )
        """
    )
    op.execute(
        """
        CREATE TABLE release_cells (
            day        date NOT NULL,
            segment_id text,
            kind       text NOT NULL,
            direction  char(2),
            side       char(2),
            reports    integer NOT NULL,
            people     bigint NOT NULL
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE release_cells")
    op.execute("DROP TABLE release_info")
