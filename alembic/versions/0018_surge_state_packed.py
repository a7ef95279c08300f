"""Surge detection's states packed (issue #19): ``surge_series.state`` becomes bytea, written as
series.state_to_bytes packs it (~1.5 KB a state, under PostgreSQL's TOAST threshold, where the
JSON text was ~5 KB and rewriting ~1,200 of them a fold was a third of detection on PostGIS), and
``episode_open`` says whether the state's last held day has an open episode (what closing the
quiet series' episodes reads, without parsing every state in SQL).

The states already stored stay as they are, their JSON text as bytes: the service reads both
(series.state_from_bytes) and packs each the next time it writes it. The downgrade writes every
state back as its JSON text.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07
"""

import orjson

from alembic import op
from service.domain.surges.series import state_from_bytes, state_to_dict

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE surge_series ADD COLUMN episode_open boolean NOT NULL DEFAULT false")
    op.execute(
        "UPDATE surge_series SET episode_open = true"
        " WHERE state::jsonb -> 'days' -> -1 -> 'episode' <> 'null'"
    )
    op.execute(
        "ALTER TABLE surge_series ALTER COLUMN state TYPE bytea USING convert_to(state, 'UTF8')"
    )
    # uncompressed, as 0016 had it: pglz gains little on packed floats and costs the write
    op.execute("ALTER TABLE surge_series ALTER COLUMN state SET STORAGE EXTERNAL")


def downgrade() -> None:
    conn = op.get_bind()
    rows = conn.exec_driver_sql("SELECT series, state FROM surge_series").all()
    op.execute("ALTER TABLE surge_series ALTER COLUMN state TYPE text USING ''")
    for series, state in rows:
        text = orjson.dumps(state_to_dict(state_from_bytes(bytes(state)))).decode()
        conn.exec_driver_sql(
            "UPDATE surge_series SET state = %(state)s WHERE series = %(series)s",
            {"state": text, "series": series},
        )
    op.execute("ALTER TABLE surge_series ALTER COLUMN state SET STORAGE EXTERNAL")
    op.execute("ALTER TABLE surge_series DROP COLUMN episode_open")
