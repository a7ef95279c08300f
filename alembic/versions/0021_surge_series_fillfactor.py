"""Surge states updated in place where they can (issue #19, docs/surges.md, session 10):
``surge_series`` leaves half of each page free (fillfactor 50).

Every detection rewrites the state row of each series it touched (~1,200 a batch of 500
reports, ~1.4 KB each); with full pages (5 states to a page) every such update put the new row
version on another page and a new entry in the primary key's index. With room on the page the
update is a heap-only tuple (HOT): no index entry, and the old version is pruned from the page by
the next update. Only the ``series`` key is indexed and it never changes, so every update can be
HOT when its page has room. Rows already stored move to half-filled pages as they are updated.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-08
"""

from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE surge_series SET (fillfactor = 50)")


def downgrade() -> None:
    op.execute("ALTER TABLE surge_series RESET (fillfactor)")
