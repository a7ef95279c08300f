"""Run the Alembic migrations in code, for `crossings db upgrade` and the tests."""

from __future__ import annotations

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from alembic import command
from service.resources import alembic_dir


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(alembic_dir()))
    # ConfigParser interpolation: a literal % in a password must be doubled.
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


def head(database_url: str) -> str | None:
    """The newest migration this code knows."""
    return ScriptDirectory.from_config(alembic_config(database_url)).get_current_head()


def pending(engine: Engine, database_url: str) -> bool:
    """Whether the database is behind the newest migration this code knows."""
    with engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
    return current != head(database_url)
