"""Alerts and webhook deliveries (issue #19): ``alerts`` (one row per episode of a series above
its threshold), ``webhooks`` (subscriptions and their signing secrets) and the outbox
``webhook_deliveries``, written in the transaction that writes the alert.

Secrets are kept as they are (not a digest): the service must sign with them. ``payload`` is the
exact body sent and signed. The outbox index serves the worker's claim: the due pending rows,
earliest first, taken with FOR UPDATE SKIP LOCKED.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07
"""

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE alerts (
            id             uuid PRIMARY KEY,
            state          text NOT NULL CHECK (state IN ('open', 'closed')),
            border         text NOT NULL,
            section        text,
            segment_id     text,
            kind           text,
            measure        text NOT NULL CHECK (measure IN ('reports', 'people')),
            opened_day     date NOT NULL,
            last_day       date NOT NULL,
            closed_day     date,
            days           integer NOT NULL,
            observed       double precision NOT NULL,
            expected       double precision NOT NULL,
            statistic      double precision NOT NULL,
            peak_statistic double precision NOT NULL,
            raised_at      timestamptz NOT NULL,
            updated_at     timestamptz NOT NULL,
            version        integer NOT NULL
        )
        """
    )
    op.execute("CREATE INDEX alerts_updated ON alerts (updated_at DESC, id DESC)")
    op.execute("CREATE INDEX alerts_border ON alerts (border, updated_at DESC)")
    op.execute("CREATE INDEX alerts_segment ON alerts (segment_id, updated_at DESC)")
    op.execute(
        """
        CREATE TABLE webhooks (
            id              text PRIMARY KEY,
            url             text NOT NULL,
            description     text NOT NULL DEFAULT '',
            filter          jsonb NOT NULL,
            secrets         jsonb NOT NULL,
            created_at      timestamptz NOT NULL,
            disabled_at     timestamptz,
            disabled_reason text
        )
        """
    )
    op.execute(
        """
        CREATE TABLE webhook_deliveries (
            id              text PRIMARY KEY,
            webhook_id      text NOT NULL REFERENCES webhooks (id),
            event_type      text NOT NULL,
            payload         text NOT NULL,
            state           text NOT NULL
                            CHECK (state IN ('pending', 'delivered', 'failed', 'gone')),
            attempts        integer NOT NULL DEFAULT 0,
            next_attempt_at timestamptz NOT NULL,
            last_status     integer,
            last_error      text,
            created_at      timestamptz NOT NULL,
            updated_at      timestamptz NOT NULL,
            delivered_at    timestamptz
        )
        """
    )
    op.execute(
        "CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)"
        " WHERE state = 'pending'"
    )
    op.execute(
        "CREATE INDEX webhook_deliveries_by_webhook"
        " ON webhook_deliveries (webhook_id, created_at DESC)"
    )


def downgrade() -> None:
    op.execute("DROP TABLE webhook_deliveries")
    op.execute("DROP TABLE webhooks")
    op.execute("DROP TABLE alerts")
