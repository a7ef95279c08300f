"""Alembic environment: migrations run online against CROSSINGS_DATABASE_URL (or the URL given)."""

from __future__ import annotations

from sqlalchemy import create_engine, pool

from alembic import context
from service.settings import Settings

config = context.config
url = config.get_main_option("sqlalchemy.url") or Settings().database_url
if url.startswith("sqlite"):
    raise SystemExit(
        "Alembic migrations are for the PostGIS store; SQLite migrates itself on open."
    )

engine = create_engine(url, poolclass=pool.NullPool)
with engine.connect() as connection:
    context.configure(connection=connection, transaction_per_migration=True)
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
