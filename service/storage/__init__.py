"""Persistence. ``open_store`` picks the backend from the database URL."""

from __future__ import annotations

from service.settings import Settings
from service.storage.base import Store


def open_store(settings: Settings) -> Store:
    """Open (and for SQLite, create and migrate) the store the settings name."""
    if settings.is_sqlite:
        from service.domain.surges.watch import SurgeConfig
        from service.storage.sqlite.store import SqliteStore

        return SqliteStore.open(settings.database_url, surges=SurgeConfig.of(settings))
    from service.storage.postgis.store import PostgisStore

    return PostgisStore.open(settings)


def check_ready(store: Store, settings: Settings) -> None:
    """Raise StoreUnavailable unless the store answers now and its schema is this code's
    (SchemaNotCurrent when a PostGIS schema is behind; SQLite migrates itself on open)."""
    store.ping()
    if not settings.is_sqlite:
        from service.storage.postgis.store import PostgisStore

        if isinstance(store, PostgisStore):
            store.check_schema(settings.database_url)
