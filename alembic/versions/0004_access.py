"""Access control: API keys (only their hashes), the audit log, and which key posted a report.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE api_keys (
            key_id     text PRIMARY KEY,
            name       text NOT NULL,
            role       text NOT NULL,
            digest     bytea NOT NULL,
            created_at timestamptz NOT NULL,
            expires_at timestamptz,
            revoked_at timestamptz
        )
        """
    )
    op.execute(
        """
        CREATE TABLE audit_log (
            entry_no bigserial PRIMARY KEY,
            at       timestamptz NOT NULL,
            key_id   text,
            role     text NOT NULL,
            action   text NOT NULL,
            detail   jsonb NOT NULL
        )
        """
    )
    op.execute("CREATE INDEX audit_log_at ON audit_log (at)")
    # The key a report came in with: a reporter reads back its own reports, no one else's. A key
    # names a field team's app, not a person.
    op.execute("ALTER TABLE reports ADD COLUMN key_id text")
    op.execute(
        "CREATE INDEX reports_key_observed ON reports (key_id, observed_at) WHERE key_id IS NOT NULL"
    )


def downgrade() -> None:
    op.execute("ALTER TABLE reports DROP COLUMN key_id")
    op.execute("DROP TABLE audit_log")
    op.execute("DROP TABLE api_keys")
