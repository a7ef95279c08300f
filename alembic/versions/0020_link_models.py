"""The store's estimates of u and each segment's crowding for linking (issue #20,
docs/linking.md "Model in the stores"; SQLite schema step 12).

``link_models``: one row per estimate (a day-shifted random sample of the stored reports,
``crossings links estimate`` or the server's periodic job), the latest few kept: when and under
which border version it was made, from how many sampled reports and unrelated pairs, u and the
crowding per segment as JSON text. ``report_links.model_version``: the estimate a link was scored
with (0: the defaults), so that a new estimate rescores the proposed links scored before it, a
batch at a time, through the partial index.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-07
"""

from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE link_models (
            -- never used twice, even after every row is deleted: linkers cache a model by it
            version        integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            estimated_at   timestamptz NOT NULL,
            border_version integer NOT NULL,
            reports        integer NOT NULL,
            pairs          integer NOT NULL,
            u              text NOT NULL,
            crowding       text NOT NULL
        )
        """
    )
    # A constant default: no table rewrite (PostgreSQL 11+).
    op.execute("ALTER TABLE report_links ADD COLUMN model_version integer NOT NULL DEFAULT 0")
    op.execute(
        "CREATE INDEX report_links_rescore ON report_links (model_version) WHERE state = 'proposed'"
    )


def downgrade() -> None:
    op.execute("DROP INDEX report_links_rescore")
    op.execute("ALTER TABLE report_links DROP COLUMN model_version")
    op.execute("DROP TABLE link_models")
